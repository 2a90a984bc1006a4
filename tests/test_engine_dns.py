"""The DNS kind plugged into the engine's plan/apply loop (moto server + the Cloudflare emulator,
both over HTTP, the real boto3 and cloudflare SDKs)."""
from __future__ import annotations

import copy
import json

import boto3

from provisioner.app import run_apply, run_destroy, run_plan, run_reconcile, run_status
from provisioner.dns import DnsProvider
from tests.test_engine_common import fast, options, two_region_doc, write_config  # noqa: F401


def addresses() -> dict[str, str]:
    out = {}
    for r in ("us-east-1", "eu-west-1"):
        for a in boto3.client("ec2", region_name=r).describe_addresses()["Addresses"]:
            t = {x["Key"]: x["Value"] for x in a["Tags"]}
            out[t["provision:host"]] = a["PublicIp"]
    return out


def a_records(cf) -> dict[str, tuple[str, str]]:
    return {r["name"]: (r["content"], r.get("comment") or "") for r in cf.records(cf.zone_id) if r["type"] == "A"}


def opts_dns(path, **kw):
    return options(path, providers=[DnsProvider()], **kw)


def test_records_follow_addresses_and_go_first(aws, cloudflare_api, fast, tmp_path):
    cf = cloudflare_api
    cf.add_record(cf.zone_id, name="foreign.example.com", type="A", content="192.0.2.9")
    cfg = write_config(tmp_path, two_region_doc())
    opts, cap = opts_dns(tmp_path / "s", output="json")
    assert run_plan(cfg, opts) == 0
    kinds = [a["kind"] for a in json.loads(cap.stdout)["actions"]]
    assert kinds.count("dns-record") == 3 and kinds.index("dns-record") > kinds.index("eip")
    opts, _ = opts_dns(tmp_path / "s")
    assert run_apply(cfg, opts) == 0
    ips = addresses()
    recs = a_records(cf)
    for host, ip in ips.items():
        assert recs[host][0] == ip and recs[host][1].startswith("provision:c3-llamacpp/dev/")
    # in sync, across both providers
    opts, _ = opts_dns(tmp_path / "s", detailed_exitcode=True)
    assert run_plan(cfg, opts) == 0
    opts, cap = opts_dns(tmp_path / "s", output="json")
    assert run_status(cfg, opts) == 0
    rows = {r["host"]: r for r in json.loads(cap.stdout)["hosts"] if r["host"]}
    assert rows["b1.example.com"]["dns"] == ips["b1.example.com"]

    # a record changed by hand: drift, restored in place by reconcile
    import cloudflare
    client = cloudflare.Cloudflare()
    rec = [r for r in client.dns.records.list(zone_id=cf.zone_id, name={"exact": "b1.example.com"})][0]
    client.dns.records.update(dns_record_id=rec.id, zone_id=cf.zone_id, name="b1.example.com", type="A",
                              content="192.0.2.77", ttl=60, comment=rec.comment)
    opts, _ = opts_dns(tmp_path / "s", detailed_exitcode=True)
    assert run_plan(cfg, opts) == 2
    opts, cap = opts_dns(tmp_path / "s", yes=False)
    assert run_reconcile(cfg, opts) == 0
    assert [(json.loads(x)["kind"], json.loads(x)["result"]) for x in cap.out] == [("dns-record", "ok")]
    assert a_records(cf)["b1.example.com"][0] == ips["b1.example.com"]

    # host removal: the record goes before the address is released
    doc = copy.deepcopy(two_region_doc())
    doc["alpha"]["hosts"].remove("a2.example.com")
    cfg2 = write_config(tmp_path, doc)
    opts, cap = opts_dns(tmp_path / "s", output="json")
    run_plan(cfg2, opts)
    acts = [(a["op"], a["kind"], a["name"]) for a in json.loads(cap.stdout)["actions"]]
    assert acts.index(("delete", "dns-record", "a2.example.com")) < acts.index(("delete", "eip", "a2.example.com"))
    opts, _ = opts_dns(tmp_path / "s")
    assert run_apply(cfg2, opts) == 0
    assert "a2.example.com" not in a_records(cf)

    # destroy: only our records go, the foreign one stays
    opts, _ = opts_dns(tmp_path / "s")
    assert run_destroy(cfg2, opts) == 0
    assert a_records(cf) == {"foreign.example.com": ("192.0.2.9", "")}
    assert addresses() == {}
