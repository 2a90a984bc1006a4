"""Shared test helpers.

`need(name, why)`: a real component (llama-server, traefik, pebble, cloud-init, ...) is missing.
Locally that skips the test with the reason; in CI (CI=true) it fails it, since README's test
command installs every component and a silent skip would hide a broken install step.
"""
from __future__ import annotations

import os
import socket

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(name: str, why: str = "") -> None:
    msg = f"real component missing: {name}" + (f" ({why})" if why else "")
    if in_ci():
        pytest.fail(msg + " -- README's test command should have installed it", pytrace=False)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
