"""TLS certificates: grouping (pure) and issuance through the real ACME protocol against Debian's
pebble, with DNS-01 records in the Cloudflare emulator (real SDK) and secrets in moto (over HTTP).

pebble runs with PEBBLE_VA_ALWAYS_VALID (its own setting): the emulated DNS is not resolvable, so
pebble does not look the TXT records up; the tests check the records were written and removed.
"""
from __future__ import annotations

import datetime as dt
import json
import os

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from provisioner.certs import plan as P
from provisioner.certs.provider import CertificateProvider
from provisioner.emulators.pebble import Pebble, pebble_binary
from provisioner.engine import Engine
from provisioner.errors import CloudError
from tests.support import need
from tests.test_engine_common import AMI, cluster, fast, write_config  # noqa: F401

# ---- pure ------------------------------------------------------------------------------------


def cfg_with_hosts(tmp_path, hosts_by_region, domain="example.com", **stack):
    doc = {"stack": {"domain-name": domain, "ami": AMI, "image": "ghcr.io/example/c3:b1", **stack}}
    for i, (region, hosts) in enumerate(hosts_by_region):
        doc[f"c{i}"] = cluster(region, hosts)
    return write_config(tmp_path, doc)


def test_300_hosts_in_one_domain_need_one_certificate(tmp_path):
    cfg = cfg_with_hosts(tmp_path, [("us-east-1", [f"h{i}.example.com" for i in range(300)])])
    certs = P.desired_certs(cfg)
    assert [(c.cert_name, c.names) for c in certs] == [("wildcard-example-com", ("*.example.com",))]


def test_wildcard_per_parent_and_apex(tmp_path):
    cfg = cfg_with_hosts(tmp_path, [("us-east-1", ["a.example.com", "example.com"]),
                                    ("eu-west-1", ["x.eu.example.com", "y.eu.example.com"])])
    [cert] = P.desired_certs(cfg)
    assert cert.names == ("*.eu.example.com", "*.example.com", "example.com")
    assert cert.regions == ("eu-west-1", "us-east-1")
    assert P.covers("*.example.com", "a.example.com") and not P.covers("*.example.com", "x.a.example.com")
    assert P.certs_for_cluster(cfg, "c1") == ["c3-llamacpp/dev/tls/wildcard-eu-example-com"]


def test_more_than_100_names_split_into_certificates(tmp_path):
    hosts = [f"h.p{i}.example.com" for i in range(150)]
    cfg = cfg_with_hosts(tmp_path, [("us-east-1", hosts)])
    certs = P.desired_certs(cfg)
    assert [len(c.names) for c in certs] == [100, 50]
    assert len({n for c in certs for n in c.names}) == 150


@pytest.mark.parametrize("days,expected", [(90, P.NOT_DUE), (31, P.NOT_DUE), (29, "due: expires"), (-1, "due: expires")])
def test_renewal_due_under_30_days(days, expected):
    now = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc)
    state = P.renewal_state((now + dt.timedelta(days=days)).isoformat(), now)
    assert state.startswith(expected)


# ---- against pebble ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pebble(tmp_path_factory):
    if pebble_binary() is None:
        need("pebble", "Debian package pebble")
    p = Pebble(tmp_path_factory.mktemp("pebble")).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def acme_env(pebble, aws, cloudflare_api, fast, monkeypatch):
    monkeypatch.setenv("PROVISION_ACME_CA_BUNDLE", str(pebble.ca_bundle))
    return pebble


def engine_for(cfg, **provider_kw):
    return Engine(cfg, providers=[CertificateProvider(**provider_kw)], wait_timeout=30)


def apply(engine):
    plan = engine.plan()
    results = engine.execute(plan)
    failed = [r for r in results if r.result != "ok"]
    return plan, failed


def cert_actions(plan):
    return [a for a in plan.actions if a.kind in (P.CERT_KIND, P.ACCOUNT_KIND)]


def stored(region, name):
    sm = boto3.client("secretsmanager", region_name=region)
    return json.loads(sm.get_secret_value(SecretId=name)["SecretString"])


def cfg_two_regions(tmp_path, pebble, extra_hosts=()):
    return cfg_with_hosts(tmp_path, [("us-east-1", ["a1.example.com", "a2.example.com", *extra_hosts]),
                                     ("eu-west-1", ["b1.example.com"])], acme_directory=pebble.directory)


SECRET = "c3-llamacpp/dev/tls/wildcard-example-com"


def test_issue_store_verify_then_noop(acme_env, tmp_path, capsys):
    cfg = cfg_two_regions(tmp_path, acme_env)
    plan, failed = apply(engine_for(cfg))
    assert not failed, failed
    ops = sorted((a.op, a.kind, a.region) for a in cert_actions(plan))
    assert ops == [("create", "acme-account", "us-east-1"), ("create", "certificate", "eu-west-1"),
                   ("create", "certificate", "us-east-1")]
    east, west = stored("us-east-1", SECRET), stored("eu-west-1", SECRET)
    assert east == west  # issued once, the same certificate in both regions
    assert east["names"] == ["*.example.com"]
    chain = x509.load_pem_x509_certificates(east["certificate"].encode())
    leaf = chain[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == ["*.example.com"]
    # the chain verifies up to pebble's root: each certificate signed by the next, the last by the root
    root = x509.load_pem_x509_certificate(acme_env.root_pem().encode())
    for child, parent in zip(chain, chain[1:] + [root]):
        child.verify_directly_issued_by(parent)
    # tags carry what the planner compares; the key is never in them
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=SECRET)["Tags"]}
    assert tags["provision:kind"] == "certificate" and tags["provision:stack"] == "dev"
    assert tags["provision:not-after"].startswith(str(leaf.not_valid_after_utc.year))
    # challenge records were removed
    assert not [r for r in acme_env_records() if r["type"] == "TXT"]
    # second plan: nothing to do for certificates
    again = engine_for(cfg).plan()
    assert cert_actions(again) == []
    # no key material in what was printed
    out, err = capsys.readouterr()
    assert "PRIVATE KEY" not in out + err


def acme_env_records():
    import cloudflare

    cf = cloudflare.Cloudflare()
    zone = next(iter(cf.zones.list(name="example.com").result))
    return [r.model_dump() for r in cf.dns.records.list(zone_id=zone.id)]


def test_renews_when_fewer_than_30_days_remain(acme_env, tmp_path):
    cfg = cfg_two_regions(tmp_path, acme_env)
    assert not apply(engine_for(cfg))[1]
    first = stored("us-east-1", SECRET)
    not_after = dt.datetime.fromisoformat(first["not_after"].replace("Z", "+00:00"))
    later = lambda: not_after - dt.timedelta(days=10)  # noqa: E731 - 10 days before expiry
    plan = engine_for(cfg, now=later).plan()
    upd = cert_actions(plan)
    assert sorted((a.op, a.region) for a in upd) == [("update", "eu-west-1"), ("update", "us-east-1")]
    assert "renewal" in upd[0].changes and upd[0].changes["renewal"][0].startswith("due: expires")
    # the renewal itself runs now (pebble only issues fresh certificates)
    assert not apply(engine_for(cfg, now=later))[1]
    second = stored("us-east-1", SECRET)
    assert second["certificate"] != first["certificate"]
    assert stored("eu-west-1", SECRET) == second


def test_host_added_and_removed(acme_env, tmp_path):
    cfg = cfg_two_regions(tmp_path, acme_env)
    assert not apply(engine_for(cfg))[1]
    # a host under a new parent: the certificate's names change -> re-issued in every region
    cfg2 = cfg_two_regions(tmp_path, acme_env, extra_hosts=["z.lab.example.com"])
    plan = engine_for(cfg2).plan()
    assert sorted((a.op, a.region) for a in cert_actions(plan)) == [("update", "eu-west-1"), ("update", "us-east-1")]
    assert not apply(engine_for(cfg2))[1]
    assert stored("eu-west-1", SECRET)["names"] == ["*.example.com", "*.lab.example.com"]
    # the eu cluster removed: its region's copy goes, nothing else changes
    doc_only_east = cfg_with_hosts(tmp_path, [("us-east-1", ["a1.example.com", "a2.example.com", "z.lab.example.com"])],
                                   acme_directory=acme_env.directory)
    plan = Engine(doc_only_east, providers=[CertificateProvider()], extra_regions=["eu-west-1"]).plan()
    assert [(a.op, a.region) for a in cert_actions(plan)] == [("delete", "eu-west-1")]


def test_failed_issuance_names_the_names_and_keeps_the_old_one(acme_env, tmp_path):
    cfg = cfg_two_regions(tmp_path, acme_env)
    assert not apply(engine_for(cfg))[1]
    before = stored("us-east-1", SECRET)
    broken = cfg_with_hosts(tmp_path, [("us-east-1", ["a1.example.com", "z.lab.example.com"]),
                                       ("eu-west-1", ["b1.example.com"])],
                            acme_directory="https://127.0.0.1:9/dir")  # nothing listens there
    plan, failed = apply(engine_for(broken))
    assert failed and all(r.action.kind == P.CERT_KIND for r in failed)
    assert "*.example.com, *.lab.example.com" in failed[0].error
    assert stored("us-east-1", SECRET) == before  # the old certificate keeps serving


def test_interrupted_issuance_converges(acme_env, aws, cloudflare_api, tmp_path):
    """A run dies after issuing but before storing (every CreateSecret fails), and an earlier crash
    left a challenge record behind: the re-run converges, one secret per region, no record left."""
    cfg = cfg_two_regions(tmp_path, acme_env)
    cloudflare_api.add_record(cloudflare_api.zone_id, name="_acme-challenge.example.com", type="TXT",
                              content='"left-by-a-crash"', comment="provision:c3-llamacpp/dev/acme")
    cloudflare_api.add_record(cloudflare_api.zone_id, name="_acme-challenge.example.com", type="TXT",
                              content='"someone-elses"')
    aws.faults.fail_mutating(1, action="CreateSecret", n=1000)
    _, failed = apply(engine_for(cfg))
    assert failed
    aws.faults.clear()
    _, failed = apply(engine_for(cfg))
    assert not failed, failed
    assert cert_actions(engine_for(cfg).plan()) == []
    for region in ("us-east-1", "eu-west-1"):
        names = [s["Name"] for s in boto3.client("secretsmanager", region_name=region).list_secrets()["SecretList"]]
        assert names.count(SECRET) == 1
    txt = [r for r in acme_env_records() if r["type"] == "TXT"]
    assert [r["content"] for r in txt] == ['"someone-elses"']  # ours removed, the foreign one untouched


def test_no_key_material_in_state_or_plan_output(acme_env, tmp_path):
    from provisioner.app import RunOptions, run_apply, run_plan

    cfg = cfg_two_regions(tmp_path, acme_env)
    out: list[str] = []
    opts = RunOptions(state_dir=tmp_path / "state", yes=True, echo=out.append, err=out.append)
    opts.wait_timeout = 30
    run_apply(cfg, opts)
    run_plan(cfg, RunOptions(state_dir=tmp_path / "state", output="json", echo=out.append, err=out.append))
    text = "\n".join(out)
    for path in (tmp_path / "state").glob("*"):
        text += path.read_text()
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


def test_cloudflare_token_missing_is_a_clear_error(acme_env, tmp_path, monkeypatch):
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    cfg = cfg_two_regions(tmp_path, acme_env)
    _, failed = apply(engine_for(cfg))
    assert failed and "CLOUDFLARE_API_TOKEN is not set" in failed[0].error


def test_certificate_key_is_ecdsa(acme_env, tmp_path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    cfg = cfg_two_regions(tmp_path, acme_env)
    assert not apply(engine_for(cfg))[1]
    key = load_pem_private_key(stored("us-east-1", SECRET)["private_key"].encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert os.environ.get("PROVISION_ACME_CA_BUNDLE")
