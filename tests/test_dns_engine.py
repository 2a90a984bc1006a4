"""DNS inside the engine's discover / plan / execute loop: moto (the `aws` fixture) for the
addresses, the Cloudflare emulator for the records, the real boto3 and cloudflare SDKs."""
from __future__ import annotations

import boto3
import pytest

from provisioner.aws.clients import Clients
from provisioner.dns import DnsConflictError, DnsProvider, RetryPolicy
from provisioner.engine import Engine, phases
from provisioner.errors import CloudError
from tests.test_engine_common import fast, two_region_doc, write_config  # noqa: F401


def engine(cfg, adopt=False):
    return Engine(cfg, Clients(None), wait_timeout=30,
                  providers=[DnsProvider(adopt=adopt, policy=RetryPolicy(attempts=3, base=0.01))])


def apply(cfg, adopt=False):
    eng = engine(cfg, adopt)
    plan = eng.plan()
    results = eng.execute(plan)
    return plan, results


def addresses() -> dict[str, str]:
    out = {}
    for region in ("us-east-1", "eu-west-1"):
        for a in boto3.client("ec2", region_name=region).describe_addresses()["Addresses"]:
            host = {t["Key"]: t["Value"] for t in a.get("Tags", [])}.get("provision:host")
            out[host] = a["PublicIp"]
    return out


def a_records(emu) -> dict[str, tuple[str, str]]:
    return {r["name"]: (r["content"], r["comment"]) for r in emu.records(emu.zone_id) if r["type"] == "A"}


def test_apply_creates_records_at_the_addresses_then_noop_then_destroy(aws, cloudflare_api, fast, tmp_path):
    keep = cloudflare_api.add_record(cloudflare_api.zone_id, name="www.example.com", type="A", content="198.51.100.1")
    cfg = write_config(tmp_path, two_region_doc())
    plan, results = apply(cfg)
    assert all(r.result == "ok" for r in results), [(r.action.name, r.error) for r in results if r.result != "ok"]
    dns = [a for a in plan.actions if a.kind == "dns-record"]
    assert sorted((a.op, a.name, a.region) for a in dns) == [
        ("create", "a1.example.com", "us-east-1"), ("create", "a2.example.com", "us-east-1"),
        ("create", "b1.example.com", "eu-west-1")]
    ips = addresses()
    assert a_records(cloudflare_api) == {
        "a1.example.com": (ips["a1.example.com"], "provision:c3-llamacpp/dev/alpha"),
        "a2.example.com": (ips["a2.example.com"], "provision:c3-llamacpp/dev/alpha"),
        "b1.example.com": (ips["b1.example.com"], "provision:c3-llamacpp/dev/beta"),
        "www.example.com": ("198.51.100.1", None)}

    cloudflare_api.clear_calls()
    assert [a for a in engine(cfg).plan().actions if a.kind == "dns-record"] == []
    # discovery: the zone by name (no cloudflare-zone-id in this config), then one list of the zone
    assert [(c.method, c.path) for c in cloudflare_api.calls] == [
        ("GET", "/zones"), ("GET", f"/zones/{cloudflare_api.zone_id}/dns_records")]

    eng = engine(cfg)
    plan = eng.plan(destroy=True)
    order = [(a.kind, a.name) for phase in phases(plan.actions) for a in phase
             if a.kind in ("dns-record", "eip")]
    for host in ("a1.example.com", "a2.example.com", "b1.example.com"):
        assert order.index(("dns-record", host)) < order.index(("eip", host))  # records before addresses
    results = eng.execute(plan)
    assert all(r.result == "ok" for r in results)
    assert a_records(cloudflare_api) == {"www.example.com": ("198.51.100.1", None)}
    assert cloudflare_api.records(cloudflare_api.zone_id)[0]["id"] == keep["id"]


def test_interrupted_between_address_and_record_converges(aws, cloudflare_api, fast, tmp_path):
    cfg = write_config(tmp_path, two_region_doc())
    cloudflare_api.throttle(10_000, retry_after=0.01, path="dns_records")
    eng = engine(cfg)
    cloudflare_api.throttle(0)
    plan = eng.plan()
    cloudflare_api.throttle(10_000, retry_after=0.01, path="dns_records")  # DNS writes fail: the run stops there
    results = eng.execute(plan)
    failed = [r for r in results if r.result == "failed"]
    assert failed and all(r.action.kind == "dns-record" for r in failed)
    assert "still failing" in failed[0].error
    assert len(addresses()) == 3 and a_records(cloudflare_api) == {}
    cloudflare_api.clear_faults()
    plan, results = apply(cfg)
    assert all(r.result == "ok" for r in results)
    # the addresses are kept (no duplicate); the records are created, and the groups that the
    # failed scopes skipped (a record goes before its group: a booting instance finds its name)
    assert sorted((a.op, a.kind, a.name) for a in plan.actions if a.kind != "asg") == [
        ("create", "dns-record", "a1.example.com"), ("create", "dns-record", "a2.example.com"),
        ("create", "dns-record", "b1.example.com")]
    assert len(addresses()) == 3
    ips = addresses()
    assert {h: c for h, (c, _) in a_records(cloudflare_api).items()} == ips


def test_conflict_stops_plan_before_any_aws_change(aws, cloudflare_api, fast, tmp_path):
    cloudflare_api.add_record(cloudflare_api.zone_id, name="b1.example.com", type="CNAME", content="x.example.net")
    cfg = write_config(tmp_path, two_region_doc())
    with pytest.raises(DnsConflictError, match="CNAME b1.example.com -> x.example.net"):
        engine(cfg, adopt=True).plan()
    assert [c for c in aws.calls if c.mutating] == []


def test_bad_token_fails_in_discovery_before_any_aws_change(aws, cloudflare_api, fast, tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "wrong")
    cfg = write_config(tmp_path, two_region_doc())
    with pytest.raises(CloudError, match="refused the API token"):
        engine(cfg).plan()
    assert [c for c in aws.calls if c.mutating] == []
