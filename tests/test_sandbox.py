"""The sandbox: both emulators in one background process, driven by boto3 and the Cloudflare SDK."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request

import boto3
import cloudflare
import pytest

from provisioner import sandbox
from provisioner.emulators.aws import RemoteAws
from provisioner.emulators.pebble import pebble_binary
from provisioner.errors import ProvisionError
from tests.support import in_ci, need


@pytest.fixture
def sbdir(tmp_path, monkeypatch):
    d = tmp_path / "sandbox"
    monkeypatch.setenv("PROVISION_SANDBOX_DIR", str(d))
    yield d
    sandbox.down(d)  # never leave a process behind


def test_up_env_up_again_down(sbdir, monkeypatch):
    assert sandbox.status() is None
    summary = sandbox.up()
    assert "sandbox running" in summary and "example.com" in summary
    pid = int((sbdir / "sandbox.pid").read_text())
    env = sandbox.ensure_running()  # idempotent: the same process
    assert int((sbdir / "sandbox.pid").read_text()) == pid
    assert sandbox.up() == summary
    expected = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION", "CLOUDFLARE_BASE_URL", "CLOUDFLARE_API_TOKEN"}
    if pebble_binary() is not None:  # the sandbox's ACME server (provisioner/emulators/pebble.py)
        expected |= {"PROVISION_ACME_DIRECTORY", "PROVISION_ACME_CA_BUNDLE"}
        ca = env["PROVISION_ACME_CA_BUNDLE"]
        ctx = ssl.create_default_context(cafile=ca)
        with urllib.request.urlopen(env["PROVISION_ACME_DIRECTORY"], context=ctx, timeout=10) as r:
            assert "newOrder" in json.loads(r.read())
    elif in_ci():
        need("pebble")
    assert set(env) == expected
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["CLOUDFLARE_BASE_URL"].startswith("http://127.0.0.1:")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    # boto3 works against it, and the call is recorded in the sandbox process
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="sandbox-test", SecretString="v")
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == ["sandbox-test"]
    assert ("secretsmanager", "CreateSecret") in [(c.service, c.action) for c in RemoteAws(env["AWS_ENDPOINT_URL"]).calls]

    # the Cloudflare SDK finds the pre-created zone and can write records in it
    cf = cloudflare.Cloudflare(max_retries=0)
    zones = list(cf.zones.list(name="example.com"))
    assert len(zones) == 1
    rec = cf.dns.records.create(zone_id=zones[0].id, name="h.example.com", type="A", content="192.0.2.1", ttl=60)
    assert [r.id for r in cf.dns.records.list(zone_id=zones[0].id, name={"exact": "h.example.com"})] == [rec.id]

    # the export lines evaluate in a shell to the same values
    out = subprocess.run(["bash", "-c", f'eval "$({sys.executable} -c "from provisioner import sandbox; '
                          f'print(sandbox.env_exports())")"; echo $AWS_ENDPOINT_URL; echo $CLOUDFLARE_API_TOKEN'],
                         capture_output=True, text=True, timeout=60, check=True,
                         env=dict(os.environ, PROVISION_SANDBOX_DIR=str(sbdir)))
    assert out.stdout.split() == [env["AWS_ENDPOINT_URL"], env["CLOUDFLARE_API_TOKEN"]]

    assert sandbox.down().startswith("sandbox stopped")
    assert not sandbox._pid_alive(pid)
    assert not (sbdir / "sandbox.pid").exists() and not (sbdir / "ports.json").exists()
    assert sandbox.status() is None
    assert sandbox.down() == "sandbox not running"
    with pytest.raises(ProvisionError, match="not running"):
        sandbox.env()


def test_stale_pid_file_is_replaced(sbdir):
    sbdir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (sbdir / "sandbox.pid").write_text(f"{dead.pid}\n")
    sandbox.up()
    assert int((sbdir / "sandbox.pid").read_text()) != dead.pid
    assert sandbox.status() is not None


def test_extra_service_hook(sbdir, monkeypatch):
    started = []

    def starter(d):
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        started.append(p)
        return p.pid, {"PROVISION_EXTRA_URL": "http://127.0.0.1:1"}

    monkeypatch.setitem(sandbox._SERVICES, "extra", starter)
    sandbox.up()
    assert sandbox.env()["PROVISION_EXTRA_URL"] == "http://127.0.0.1:1"
    assert "extra" in sandbox.down()
    assert started[0].wait(timeout=10) is not None
