"""Cloudflare DNS (issue 4): the pure planner, and discovery + executor with the real `cloudflare`
SDK against the emulator."""
from __future__ import annotations

import types

import pytest

from provisioner import planner
from provisioner.actions import KNOWN_AFTER_APPLY
from provisioner.dns import (DesiredRecord, DnsConflictError, DnsExecutor, DnsProvider, LiveRecord, RetryPolicy,
                             engine_resources, find_zone, list_records, make_client, owner_comment, owner_prefix,
                             plan_dns)
from provisioner.dns.records import CONFLICT_TYPES
from provisioner.errors import CloudError, ProvisionError

SLUG, STACK = "c3", "dev"
PREFIX = owner_prefix(SLUG, STACK)


def want(host, ip, cluster="c1", region="us-east-1", ttl=60, zone=""):
    return DesiredRecord(host, ip, ttl, owner_comment(SLUG, STACK, cluster), cluster, region, zone)


def live(host, ip, rid, type_="A", comment=None, ttl=60):
    return LiveRecord(rid, host, type_, ip, ttl, False, comment)


# ------------------------------------------------------------------ pure planner (no network)

def test_plan_create_noop_update_delete():
    ours = owner_comment(SLUG, STACK, "c1")
    acts = plan_dns([want("a.example.com", "192.0.2.1"), want("b.example.com", None)], [], PREFIX)
    assert [(a.op, a.name, a.kind) for a in acts] == [("create", "a.example.com", "dns-record"),
                                                       ("create", "b.example.com", "dns-record")]
    assert acts[1].desired.attrs["content"] == KNOWN_AFTER_APPLY
    assert plan_dns([want("a.example.com", "192.0.2.1")], [live("a.example.com", "192.0.2.1", "r1", comment=ours)],
                    PREFIX) == []
    acts = plan_dns([want("a.example.com", "192.0.2.9")], [live("a.example.com", "192.0.2.1", "r1", comment=ours),
                                                          live("gone.example.com", "192.0.2.2", "r2", comment=ours)],
                    PREFIX)
    assert [(a.op, a.name, a.changes) for a in acts] == [
        ("update", "a.example.com", {"content": ["192.0.2.1", "192.0.2.9"]}),
        ("delete", "gone.example.com", {"id": ["r2", None]})]
    assert acts[1].destructive and acts[1].reason == "host no longer in the config"
    assert acts[0].step < acts[1].step


def test_plan_conflicts_and_adoption_rules():
    d = [want("a.example.com", "192.0.2.1")]
    for rec in (live("a.example.com", "198.51.100.1", "f1"),
                live("a.example.com", "2001:db8::1", "f1", "AAAA"),
                live("a.example.com", "x.example.net", "f1", "CNAME"),
                live("a.example.com", "198.51.100.1", "f1", comment="provision:c3/prod/c1")):  # another stack
        with pytest.raises(DnsConflictError) as ei:
            plan_dns(d, [rec], PREFIX)
        assert rec.content in ei.value.message and "a.example.com" in ei.value.message
    # adopt: a single foreign A only
    acts = plan_dns(d, [live("a.example.com", "198.51.100.1", "f1", comment="hand-made")], PREFIX, adopt=True)
    assert [(a.op, a.live.id) for a in acts] == [("update", "f1")]
    assert acts[0].changes["comment"] == ["hand-made", owner_comment(SLUG, STACK, "c1")]
    for recs in ([live("a.example.com", "2001:db8::1", "f1", "AAAA")],
                 [live("a.example.com", "x.example.net", "f1", "CNAME")],
                 [live("a.example.com", "198.51.100.1", "f1"), live("a.example.com", "198.51.100.2", "f2")]):
        with pytest.raises(DnsConflictError):
            plan_dns(d, recs, PREFIX, adopt=True)
    # other names and other types are never conflicts
    assert [a.op for a in plan_dns(d, [live("a.example.com", "v=spf1", "t", "TXT"),
                                       live("b.example.com", "198.51.100.1", "f")], PREFIX)] == ["create"]


def test_engine_planner_gives_the_same_actions():
    ours1, ours2 = owner_comment(SLUG, STACK, "c1"), owner_comment(SLUG, STACK, "c2")
    desired = [want("a.example.com", "192.0.2.1"), want("b.example.com", "192.0.2.2"), want("c.example.com", None),
               want("d.example.com", "192.0.2.4")]
    lv = [live("a.example.com", "192.0.2.1", "r1", comment=ours1), live("b.example.com", "192.0.2.99", "r2", comment=ours1),
          live("x.example.com", "192.0.2.5", "r3", comment=ours2), live("d.example.com", "198.51.100.4", "f4"),
          live("z.example.com", "198.51.100.9", "f9")]
    mine = plan_dns(desired, lv, PREFIX, adopt=True, clusters=["c1"])
    d, h = engine_resources(desired, lv, PREFIX, adopt=True)
    theirs = planner.plan(d, h, clusters=["c1"])
    assert sorted((a.op, a.name) for a in mine) == sorted((a.op, a.name) for a in theirs) == [
        ("create", "c.example.com"), ("delete", "x.example.com"), ("update", "b.example.com"),
        ("update", "d.example.com")]
    assert [a.reason for a in mine if a.op == "delete"] == ["cluster 'c2' is no longer in the config"]


# ------------------------------------------------------------------ with the SDK and the emulator

class _Rc:
    config = clients = None

    def __init__(self):
        self.log = []

    def progress(self, msg):
        self.log.append(msg)


def converge(zone, desired, adopt=False, destroy=False, clusters=None, policy=None):
    client = make_client()
    prov = DnsProvider(client=client, policy=policy or RetryPolicy(base=0.01))
    prov.zone_id = zone
    records = list_records(client, zone, prov.policy, types=CONFLICT_TYPES)
    actions = plan_dns(desired, records, PREFIX, adopt, destroy=destroy, clusters=clusters)
    ex, rc = DnsExecutor(prov), _Rc()
    for a in actions:
        ex.run(rc, a)
    return actions


def writes(emu):
    return [(c.method, c.path.rsplit("/", 1)[-1]) for c in emu.calls if c.method != "GET"]


def test_create_then_noop_then_ip_change_in_place(cloudflare_api):
    z = cloudflare_api.zone_id
    d = [want("a.example.com", "192.0.2.1", zone=z), want("b.example.com", "192.0.2.2", ttl=120, zone=z)]
    acts = converge(z, d)
    assert [a.op for a in acts] == ["create", "create"]
    recs = cloudflare_api.records(z)
    assert [(r["name"], r["type"], r["content"], r["ttl"], r["proxied"], r["comment"]) for r in recs] == [
        ("a.example.com", "A", "192.0.2.1", 60, False, "provision:c3/dev/c1"),
        ("b.example.com", "A", "192.0.2.2", 120, False, "provision:c3/dev/c1")]
    assert [c.method for c in cloudflare_api.calls] == ["GET", "POST", "POST"]

    cloudflare_api.clear_calls()
    assert converge(z, d) == []
    assert [c.method for c in cloudflare_api.calls] == ["GET"]  # a no-op plan is one call

    cloudflare_api.clear_calls()
    d[0] = want("a.example.com", "192.0.2.50", zone=z)
    acts = converge(z, d)
    assert [(a.op, a.changes) for a in acts] == [("update", {"content": ["192.0.2.1", "192.0.2.50"]})]
    assert writes(cloudflare_api) == [("PUT", recs[0]["id"])]  # in place: never delete + create
    assert cloudflare_api.records(z)[0]["id"] == recs[0]["id"]
    assert cloudflare_api.records(z)[0]["content"] == "192.0.2.50"


def test_host_removed_cluster_removed_and_foreign_records_untouched(cloudflare_api):
    z = cloudflare_api.zone_id
    foreign = [cloudflare_api.add_record(z, **kw) for kw in (
        dict(name="www.example.com", type="A", content="198.51.100.1"),
        dict(name="a.example.com", type="TXT", content="keep me"),
        dict(name="example.com", type="MX", content="mail.example.com"),
        dict(name="other.example.com", type="A", content="198.51.100.2", comment="provision:c3/prod/c1"),
        dict(name="api.example.com", type="CNAME", content="lb.example.net"))]
    before = {r["id"]: r for r in cloudflare_api.records(z) if r["id"] in {f["id"] for f in foreign}}
    converge(z, [want("a.example.com", "192.0.2.1", zone=z), want("b.example.com", "192.0.2.2", zone=z),
                 want("c.example.com", "192.0.2.3", cluster="c2", zone=z)])
    acts = converge(z, [want("a.example.com", "192.0.2.1", zone=z)], clusters=["c1"])
    assert [(a.op, a.name, a.reason) for a in acts] == [
        ("delete", "b.example.com", "host no longer in the config"),
        ("delete", "c.example.com", "cluster 'c2' is no longer in the config")]
    acts = converge(z, [], destroy=True)
    assert [(a.op, a.name) for a in acts] == [("delete", "a.example.com")]
    after = {r["id"]: r for r in cloudflare_api.records(z)}
    assert after == before  # only foreign records are left, unchanged
    touched = {c.path.rsplit("/", 1)[-1] for c in cloudflare_api.calls if c.method != "GET"}
    assert not touched & set(before)


@pytest.mark.parametrize("rtype,content", [("A", "198.51.100.7"), ("AAAA", "2001:db8::7"),
                                           ("CNAME", "elsewhere.example.net")])
@pytest.mark.parametrize("adopt", [False, True])
def test_conflict_stops_before_any_change(cloudflare_api, rtype, content, adopt):
    z = cloudflare_api.zone_id
    cloudflare_api.add_record(z, name="a.example.com", type=rtype, content=content, comment="by hand")
    d = [want("a.example.com", "192.0.2.1", zone=z), want("b.example.com", "192.0.2.2", zone=z)]
    if adopt and rtype == "A":
        acts = converge(z, d, adopt=True)
        assert [(a.op, a.name) for a in acts] == [("update", "a.example.com"), ("create", "b.example.com")] or \
            sorted((a.op, a.name) for a in acts) == [("create", "b.example.com"), ("update", "a.example.com")]
        rec = [r for r in cloudflare_api.records(z) if r["name"] == "a.example.com"]
        assert [(r["content"], r["comment"]) for r in rec] == [("192.0.2.1", "provision:c3/dev/c1")]
        assert converge(z, d) == []  # adopted: ours from now on
        return
    with pytest.raises(DnsConflictError) as ei:
        converge(z, d, adopt=adopt)
    assert f"{rtype} a.example.com -> {content}" in ei.value.message
    assert writes(cloudflare_api) == []
    assert len(cloudflare_api.records(z)) == 1


def test_zone_of_1000_foreign_records(cloudflare_api):
    z = cloudflare_api.zone_id
    for i in range(1000):
        cloudflare_api.add_record(z, name=f"f{i}.example.com", type=("A", "AAAA", "TXT", "CNAME")[i % 4],
                                  content=(f"198.51.{i // 256}.{i % 256}", f"2001:db8::{i:x}", f"t{i}",
                                           f"c{i}.example.net")[i % 4])
    d = [want(f"h{i}.example.com", f"192.0.2.{i % 250}", zone=z) for i in range(200)]
    assert len(converge(z, d)) == 200
    cloudflare_api.clear_calls()
    assert converge(z, d) == []
    assert len(cloudflare_api.calls) == 1
    # small pages still see everything
    client = make_client()
    assert len(list_records(client, z, per_page=100)) == 1200
    assert [c.query.get("page") for c in cloudflare_api.calls[1:]] == [str(p) for p in range(1, 13)]


def test_429_storm_waits_retry_after(cloudflare_api):
    z = cloudflare_api.zone_id
    cloudflare_api.throttle(6, retry_after=0.05)
    pol = RetryPolicy(base=0.01)
    acts = converge(z, [want("a.example.com", "192.0.2.1", zone=z)], policy=pol)
    assert [a.op for a in acts] == ["create"]
    assert pol.waited == [0.05] * 6
    assert [c.fault for c in cloudflare_api.calls].count("throttle") == 6
    assert [r["name"] for r in cloudflare_api.records(z)] == ["a.example.com"]
    # a storm that does not end: a clear error after the attempts
    cloudflare_api.throttle(100, retry_after=0.01)
    with pytest.raises(CloudError, match="still failing after 3 attempt"):
        converge(z, [], policy=RetryPolicy(attempts=3))


def test_lost_answer_of_a_create_makes_no_duplicate(cloudflare_api):
    z = cloudflare_api.zone_id
    cloudflare_api.lose_answer(1)
    converge(z, [want("a.example.com", "192.0.2.1", zone=z)])
    assert [r["content"] for r in cloudflare_api.records(z)] == ["192.0.2.1"]
    assert [c.method for c in cloudflare_api.calls] == ["GET", "POST", "GET"]


def test_wrong_or_missing_token(cloudflare_api, monkeypatch):
    z = cloudflare_api.zone_id
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "wrong")
    with pytest.raises(CloudError, match="refused the API token") as ei:
        converge(z, [want("a.example.com", "192.0.2.1", zone=z)])
    assert "HTTP 403" in ei.value.message
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    with pytest.raises(ProvisionError, match="CLOUDFLARE_API_TOKEN is not set"):
        make_client()
    assert writes(cloudflare_api) == []


def test_zone_lookup_by_name(cloudflare_api):
    client = make_client()
    assert find_zone(client, "Example.com.") == cloudflare_api.zone_id
    with pytest.raises(ProvisionError, match="no zone named 'nope.org'"):
        find_zone(client, "nope.org")


def test_no_domain_and_no_hosts_skips_dns(cloudflare_api, monkeypatch):
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")  # not even needed
    settings = types.SimpleNamespace(domain_name=None, cloudflare_zone_id=None)
    eng = types.SimpleNamespace(config=types.SimpleNamespace(settings=settings, hosts=(), clusters=(), slug=SLUG,
                                                             stack=STACK, path="dev.asg.yaml"))
    prov = DnsProvider()
    assert prov.live(eng, None) == [] and prov.desired(eng, None) == []
    assert cloudflare_api.calls == []
    eng.config.hosts = ("a.example.com",)
    with pytest.raises(ProvisionError, match="domain-name is required"):
        prov.live(eng, None)


def test_host_records_for_status(cloudflare_api):
    z = cloudflare_api.zone_id
    cloudflare_api.add_record(z, name="a.example.com", type="A", content="192.0.2.1", comment="provision:c3/dev/c1")
    cloudflare_api.add_record(z, name="zzz.example.com", type="A", content="192.0.2.2")
    settings = types.SimpleNamespace(domain_name="example.com", cloudflare_zone_id=z)
    cfg = types.SimpleNamespace(settings=settings, hosts=("a.example.com", "b.example.com"))
    got = DnsProvider().host_records(cfg)
    assert {h: [(r.content, r.comment) for r in rs] for h, rs in got.items()} == {
        "a.example.com": [("192.0.2.1", "provision:c3/dev/c1")], "b.example.com": []}
    assert len(cloudflare_api.calls) == 1
