"""The Cloudflare v4 emulator, driven by the real `cloudflare` SDK over HTTP."""
from __future__ import annotations

import time

import cloudflare
import pytest

from provisioner.emulators.cloudflare import RemoteCloudflare


@pytest.fixture
def cf(cloudflare_api):
    return cloudflare.Cloudflare(max_retries=0)


def test_sdk_reads_env_and_verifies_token(cloudflare_api, cf):
    assert str(cf.base_url).rstrip("/") == cloudflare_api.url
    assert cf.user.tokens.verify().status == "active"


def test_zone_lookup_by_name_and_id(cloudflare_api, cf):
    cloudflare_api.add_zone("other.org")
    zones = list(cf.zones.list(name="example.com"))
    assert [(z.id, z.name) for z in zones] == [(cloudflare_api.zone_id, "example.com")]
    assert cf.zones.get(zone_id=cloudflare_api.zone_id).name == "example.com"
    assert list(cf.zones.list(name="nope.net")) == []
    with pytest.raises(cloudflare.NotFoundError):
        cf.zones.get(zone_id="0" * 32)


def test_wrong_or_missing_token_is_403(cloudflare_api):
    bad = cloudflare.Cloudflare(api_token="wrong", max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError) as ei:
        bad.dns.records.list(zone_id=cloudflare_api.zone_id).result
    assert ei.value.status_code == 403
    assert cloudflare_api.calls[-1].status == 403


def test_pagination_ends_on_an_empty_page(cloudflare_api, cf):
    zid = cloudflare_api.zone_id
    for i in range(23):
        cloudflare_api.add_record(zid, name=f"h{i:02d}", type="A", content=f"192.0.2.{i}")
    got = list(cf.dns.records.list(zone_id=zid, per_page=10))
    assert sorted(r.name for r in got) == [f"h{i:02d}.example.com" for i in range(23)]
    pages = [c.query.get("page", "1") for c in cloudflare_api.calls]
    assert pages == ["1", "2", "3", "4"]  # the 4th is the empty page that stops the SDK
    first = cf.dns.records.list(zone_id=zid, per_page=10)
    assert (first.result_info.total_count, first.result_info.total_pages) == (23, 3)
    assert cf.dns.records.list(zone_id=zid, per_page=10, page=4).result == []


def test_filters(cloudflare_api, cf):
    zid = cloudflare_api.zone_id
    cloudflare_api.add_record(zid, name="a.example.com", type="A", content="192.0.2.1", comment="provision:s/dev/c1")
    cloudflare_api.add_record(zid, name="a.example.com", type="AAAA", content="2001:db8::1")
    cloudflare_api.add_record(zid, name="b.example.com", type="CNAME", content="elsewhere.example.net")
    cloudflare_api.add_record(zid, name="ab.example.com", type="TXT", content="hello")

    def names(**kw):
        return sorted((r.name, r.type) for r in cf.dns.records.list(zone_id=zid, **kw))

    assert names(name={"exact": "a.example.com"}) == [("a.example.com", "A"), ("a.example.com", "AAAA")]
    assert names(name={"exact": "a.example.com"}, type="AAAA") == [("a.example.com", "AAAA")]
    assert names(type="CNAME") == [("b.example.com", "CNAME")]
    assert names(comment={"startswith": "provision:s/dev/"}) == [("a.example.com", "A")]
    assert names(name={"endswith": "b.example.com"}) == [("ab.example.com", "TXT"), ("b.example.com", "CNAME")]
    assert names(name={"exact": "b.example.com"}, type="A", match="any") == [
        ("a.example.com", "A"), ("b.example.com", "CNAME")]
    q = cloudflare_api.calls[0].query
    assert q["name.exact"] == "a.example.com"


def test_create_put_patch_delete(cloudflare_api, cf):
    zid = cloudflare_api.zone_id
    r = cf.dns.records.create(zone_id=zid, name="x.example.com", type="A", content="192.0.2.10", ttl=60,
                              proxied=False, comment="provision:s/dev/c1")
    assert (r.name, r.content, r.ttl, r.proxied, r.comment) == ("x.example.com", "192.0.2.10", 60, False,
                                                                "provision:s/dev/c1")
    u = cf.dns.records.update(dns_record_id=r.id, zone_id=zid, name="x.example.com", type="A",
                              content="192.0.2.11", ttl=120, proxied=False, comment="provision:s/dev/c1")
    assert (u.id, u.content, u.ttl) == (r.id, "192.0.2.11", 120)
    p = cf.dns.records.edit(dns_record_id=r.id, zone_id=zid, name="x.example.com", type="A",
                            content="192.0.2.12", ttl=120)
    assert (p.content, p.comment) == ("192.0.2.12", "provision:s/dev/c1")  # PATCH keeps the comment
    assert [x["content"] for x in cloudflare_api.records(zid)] == ["192.0.2.12"]
    assert cf.dns.records.delete(dns_record_id=r.id, zone_id=zid).id == r.id
    assert cloudflare_api.records(zid) == []
    with pytest.raises(cloudflare.NotFoundError):
        cf.dns.records.delete(dns_record_id=r.id, zone_id=zid)
    assert [(c.method, c.status) for c in cloudflare_api.calls] == [
        ("POST", 200), ("PUT", 200), ("PATCH", 200), ("DELETE", 200), ("DELETE", 404)]


def test_invalid_and_conflicting_records(cloudflare_api, cf):
    zid = cloudflare_api.zone_id
    cloudflare_api.add_record(zid, name="c.example.com", type="CNAME", content="t.example.net")
    cloudflare_api.add_record(zid, name="a.example.com", type="A", content="192.0.2.1")
    cases = [
        dict(name="c.example.com", type="A", content="192.0.2.2", ttl=60),
        dict(name="a.example.com", type="CNAME", content="t.example.net", ttl=60),
        dict(name="a.example.com", type="A", content="192.0.2.1", ttl=60),
        dict(name="d.example.com", type="A", content="not-an-ip", ttl=60),
        dict(name="d.example.com", type="A", content="192.0.2.1", ttl=5),
        dict(name="d.example.com", type="A", content="192.0.2.1", ttl=60, comment="x" * 101),
    ]
    for kw in cases:
        with pytest.raises(cloudflare.BadRequestError):
            cf.dns.records.create(zone_id=zid, **kw)
    codes = [c.status for c in cloudflare_api.calls]
    assert codes == [400] * len(cases)
    assert len(cloudflare_api.records(zid)) == 2


def test_injected_429_with_retry_after(cloudflare_api, cf):
    cloudflare_api.throttle(1, retry_after=7)
    with pytest.raises(cloudflare.RateLimitError) as ei:
        cf.zones.get(zone_id=cloudflare_api.zone_id)
    assert ei.value.response.headers["retry-after"] == "7"
    # the SDK's own retry honours Retry-After
    sdk = cloudflare.Cloudflare(max_retries=2)
    cloudflare_api.throttle(2, retry_after=0.3)
    t = time.monotonic()
    assert sdk.zones.get(zone_id=cloudflare_api.zone_id).name == "example.com"
    assert time.monotonic() - t >= 0.6
    assert [c.fault for c in cloudflare_api.calls] == ["throttle", "throttle", "throttle", None]


def test_http_control_api(cloudflare_api, cf):
    remote = RemoteCloudflare(cloudflare_api.url)
    assert remote.healthy()
    zid = remote.add_zone("remote.test")
    remote.add_record(zid, name="w.remote.test", type="A", content="192.0.2.9")
    assert [r.content for r in cf.dns.records.list(zone_id=zid)] == ["192.0.2.9"]
    remote.throttle(1, retry_after=1)
    with pytest.raises(cloudflare.RateLimitError):
        cf.zones.get(zone_id=zid)
    assert [c.fault for c in remote.calls][-1] == "throttle"
    remote.reset(keep_zones=["example.com"])
    assert [z["name"] for z in remote.zones()] == ["example.com"] and remote.calls == []
