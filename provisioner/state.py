"""The state cache `state/{stack}.json`: IDs, regions used, last applied config hash, outputs.

A cache only (CONTRACT §4): AWS tags are the truth and deleting the file loses nothing. Never a
secret. Mode 0600, replaced atomically (write a temporary file, fsync, rename).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def state_path(state_dir: Path, stack: str) -> Path:
    return Path(state_dir) / f"{stack}.json"


def load_state(state_dir: Path, stack: str) -> dict[str, Any]:
    p = state_path(state_dir, stack)
    try:
        data = json.loads(p.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or unreadable: rediscover


def save_state(state_dir: Path, stack: str, data: dict[str, Any]) -> Path:
    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    p = state_path(d, stack)
    fd, tmp = tempfile.mkstemp(prefix=f".{stack}.", suffix=".tmp", dir=d)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def remove_state(state_dir: Path, stack: str) -> None:
    try:
        state_path(state_dir, stack).unlink()
    except FileNotFoundError:
        pass
