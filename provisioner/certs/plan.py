"""TLS certificates as resources (pure: no cloud SDK here).

A stack needs few certificates, independent of its host count: a wildcard `*.P` for every parent
name P that has hosts directly under it (`*.example.com` covers `a.example.com`, not
`x.a.example.com`), plus the bare name of a host that is the domain itself (a wildcard does not
cover its apex), packed into SAN certificates of at most 100 names. A 500-host stack in one domain
needs one certificate.

Each certificate lives in Secrets Manager (JSON: certificate chain, private key, names, not_after)
in every region that has hosts under it. What the planner compares comes from the secret's tags, so
a plan never reads key material:
  provision:kind=certificate, provision:cert-names (digest of the names), provision:cert-first,
  provision:cert-count, provision:not-after (ISO 8601, UTC).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from ..actions import Resource
from ..config import Config
from ..planner import KindSpec, register_kind

CERT_KIND = "certificate"
ACCOUNT_KIND = "acme-account"
MAX_NAMES = 100
RENEW_DAYS = 30
NOT_DUE = "not due"

TAG_KIND = "provision:kind"
TAG_NAMES = "provision:cert-names"
TAG_FIRST = "provision:cert-first"
TAG_COUNT = "provision:cert-count"
TAG_NOT_AFTER = "provision:not-after"
TAG_DIRECTORY = "provision:acme-directory"

register_kind(KindSpec(ACCOUNT_KIND, 15, replace_on=frozenset({"directory"}), destructive=False))
register_kind(KindSpec(CERT_KIND, 25, destructive=False))


@dataclass(frozen=True)
class DesiredCert:
    cert_name: str  # e.g. wildcard-example-com
    names: tuple[str, ...]  # sorted
    regions: tuple[str, ...]


def names_digest(names) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]


def names_summary(first: str, count: int, digest: str) -> str:
    more = f" (+{count - 1} more)" if count > 1 else ""
    return f"{first}{more}, digest {digest}"


def cert_name_for(name: str) -> str:
    return name.replace("*", "wildcard").replace(".", "-")


def secret_name(config: Config, cert_name: str) -> str:
    return f"{config.slug}/{config.stack}/tls/{cert_name}"


def account_secret_name(config: Config) -> str:
    return f"{config.slug}/{config.stack}/acme-account"


def name_for_host(host: str, domain: str | None) -> str:
    """The certificate name that covers host: `*.parent`, or the host itself at the domain's apex."""
    labels = host.split(".")
    parent = ".".join(labels[1:])
    if domain and host == domain or len(labels) <= 2:
        return host
    return f"*.{parent}"


def covers(name: str, host: str) -> bool:
    if name.startswith("*."):
        return host.count(".") == name.count(".") and host.endswith(name[1:])
    return name == host


def desired_certs(config: Config) -> list[DesiredCert]:
    regions_of: dict[str, set[str]] = {}
    for c in config.clusters:
        for h in c.hosts:
            regions_of.setdefault(name_for_host(h, config.settings.domain_name), set()).add(c.region)
    names = sorted(regions_of)
    out = []
    for i in range(0, len(names), MAX_NAMES):
        chunk = tuple(names[i:i + MAX_NAMES])
        regions = sorted(set().union(*(regions_of[n] for n in chunk)))
        out.append(DesiredCert(cert_name_for(chunk[0]), chunk, tuple(regions)))
    return out


def certs_for_cluster(config: Config, cluster_name: str) -> list[str]:
    """Secret names of the certificates covering a cluster's hosts (what its instances read)."""
    cluster = config.cluster(cluster_name)
    out = []
    for cert in desired_certs(config):
        if any(covers(n, h) for n in cert.names for h in cluster.hosts):
            out.append(secret_name(config, cert.cert_name))
    return out


def renewal_state(not_after: str | None, now: dt.datetime) -> str:
    if not not_after:
        return "due: expiry unknown"
    try:
        when = dt.datetime.fromisoformat(not_after.replace("Z", "+00:00"))
    except ValueError:
        return "due: expiry unknown"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    days = (when - now).total_seconds() / 86400
    if days > RENEW_DAYS:
        return NOT_DUE
    return f"due: expires {when:%Y-%m-%d} ({max(days, 0):.0f} days left)"


def desired_resources(config: Config) -> list[Resource]:
    certs = desired_certs(config)
    if not certs:
        return []
    out = [Resource(ACCOUNT_KIND, account_secret_name(config), config.home_region,
                    attrs={"directory": config.settings.acme_directory})]
    for cert in certs:
        summary = names_summary(cert.names[0], len(cert.names), names_digest(cert.names))
        for region in cert.regions:
            out.append(Resource(CERT_KIND, secret_name(config, cert.cert_name), region,
                                attrs={"names": summary, "renewal": NOT_DUE},
                                data={"names": cert.names, "cert": cert.cert_name, "regions": cert.regions}))
    return out


def live_resource(name: str, region: str, arn: str, tags: dict[str, str], now: dt.datetime) -> Resource | None:
    """A Secrets Manager secret of ours (already owned) as a certificate or account resource."""
    kind = tags.get(TAG_KIND)
    if kind == ACCOUNT_KIND:
        return Resource(ACCOUNT_KIND, name, region, id=arn, attrs={"directory": tags.get(TAG_DIRECTORY, "")})
    if kind == CERT_KIND:
        try:
            count = int(tags.get(TAG_COUNT, "0"))
        except ValueError:
            count = 0
        summary = names_summary(tags.get(TAG_FIRST, "?"), count, tags.get(TAG_NAMES, "?"))
        renewal = renewal_state(tags.get(TAG_NOT_AFTER), now)
        return Resource(CERT_KIND, name, region, id=arn, attrs={"names": summary, "renewal": renewal},
                        data={"digest": tags.get(TAG_NAMES), "fresh": renewal == NOT_DUE})
    return None


def cert_tags(names, not_after: dt.datetime) -> dict[str, str]:
    return {
        TAG_KIND: CERT_KIND,
        TAG_NAMES: names_digest(names),
        TAG_FIRST: sorted(names)[0],
        TAG_COUNT: str(len(names)),
        TAG_NOT_AFTER: not_after.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
