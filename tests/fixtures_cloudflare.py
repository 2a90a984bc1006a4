"""Fixtures for the Cloudflare v4 API emulator.

Usage (conftest.py loads this plugin):
    def test_x(cloudflare_api):            # fresh state; CLOUDFLARE_BASE_URL / _API_TOKEN are set
        zid = cloudflare_api.zone_id       # the zone example.com exists in every test
        cloudflare_api.add_record(zid, name="www.example.com", type="A", content="192.0.2.1")
        client = cloudflare.Cloudflare()   # the real SDK, from the environment
        client.dns.records.list(zone_id=zid, name={"exact": "www.example.com"})
        cloudflare_api.throttle(3, retry_after=0.1)   # next 3 calls: 429 + Retry-After
        cloudflare_api.calls               # [CfCall(method, path, query, status, fault)]
        cloudflare_api.records(zid)        # the zone's records, sorted (not recorded as calls)
`cloudflare_emulator` (session scope) is the running server.
"""
from __future__ import annotations

import pytest

from provisioner.emulators.cloudflare import CloudflareEmulator

ZONE = "example.com"


@pytest.fixture(scope="session")
def cloudflare_emulator():
    emu = CloudflareEmulator(port=0).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def cloudflare_api(cloudflare_emulator, monkeypatch):
    emu = cloudflare_emulator
    emu.reset()
    emu.zone_id = emu.add_zone(ZONE)
    for var in ("CLOUDFLARE_API_KEY", "CLOUDFLARE_EMAIL", "CLOUDFLARE_API_USER_SERVICE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", emu.url)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", emu.token)
    yield emu
    emu.clear_faults()
