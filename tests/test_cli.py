"""The command line's outside (CONTRACT §2): commands, common options, help with examples, sandbox."""
from __future__ import annotations

import subprocess
import sys

import pytest

from provisioner.cli import cli, main

COMMANDS = ["validate", "plan", "apply", "destroy", "reconcile", "status", "output", "userdata"]
COMMON = ["--stack", "--state-dir", "--profile", "--debug", "--sandbox"]


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_every_contract_command_exists(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name in COMMANDS + ["sandbox"]:
        assert f"  {name} " in out


@pytest.mark.parametrize("name", COMMANDS)
def test_common_options_and_example(name, capsys):
    code, out, _ = run([name, "--help"], capsys)
    assert code == 0
    for opt in COMMON:
        assert opt in out, f"{name} lacks {opt}"
    assert "Example" in out


@pytest.mark.parametrize("name,opts", [
    ("plan", ["--detailed-exitcode", "--output"]),
    ("apply", ["--yes", "--adopt-dns", "--output"]),
    ("destroy", ["--yes"]),
    ("reconcile", ["--allow-delete"]),
    ("status", ["--output"]),
    ("output", ["--show-secrets"]),
])
def test_command_specific_options(name, opts, capsys):
    _, out, _ = run([name, "--help"], capsys)
    for opt in opts:
        assert opt in out


def test_sandbox_up_env_down_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROVISION_SANDBOX_DIR", str(tmp_path / "sb"))
    try:
        code, out, err = run(["sandbox", "up"], capsys)
        assert code == 0 and "sandbox running" in out, err
        code, out, _ = run(["sandbox", "env"], capsys)
        assert code == 0 and "export AWS_ENDPOINT_URL=http://127.0.0.1:" in out
        assert "export CLOUDFLARE_API_TOKEN=" in out
        # the exports work for the aws CLI's library, in another process
        script = f'eval "$({sys.executable} -m provisioner sandbox env)"; {sys.executable} -c ' \
                 '"import boto3; print(len(boto3.client(\'ec2\').describe_addresses()[\'Addresses\']))"'
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                              env={**__import__("os").environ})
        assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr
    finally:
        code, out, _ = run(["sandbox", "down"], capsys)
    assert code == 0 and "stopped" in out


