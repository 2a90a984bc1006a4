"""Benchmark: installed size of the package with and without the `sandbox` extra.

Builds two fresh virtual environments (pip, from this checkout; dependencies from the package
index or pip's cache) and prints the size of each, and their ratio.
    python bench/bench_install_size.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = Path(dirpath, f)
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def venv_size(spec: str, where: Path) -> tuple[int, int]:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = where / "bin" / "pip"
    base = du(where)
    subprocess.run([str(pip), "install", "-q", "--disable-pip-version-check", spec], check=True)
    n = subprocess.run([str(pip), "list", "--format=freeze"], check=True, capture_output=True, text=True)
    return du(where) - base, len(n.stdout.splitlines())


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        plain, n_plain = venv_size(str(ROOT), Path(d, "plain"))
        sandbox, n_sandbox = venv_size(f"{ROOT}[sandbox]", Path(d, "sandbox"))
    mib = 1024 * 1024
    print(f"pip install provision           : {plain / mib:7.1f} MiB, {n_plain} packages")
    print(f"pip install provision[sandbox]  : {sandbox / mib:7.1f} MiB, {n_sandbox} packages")
    print(f"sandbox extra adds {(sandbox - plain) / mib:.1f} MiB; ratio sandbox/plain = {sandbox / plain:.2f}x")


if __name__ == "__main__":
    main()
