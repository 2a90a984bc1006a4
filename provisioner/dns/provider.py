"""DNS as one more resource kind of the engine: a Provider (live / desired / executor).

    from provisioner.dns import DnsProvider
    engine = Engine(config, providers=[DnsProvider(adopt=opts.adopt_dns)])

- live(): one paginated list of the zone (zone from stack.cloudflare-zone-id, else looked up by
  domain-name); returns our records (comment `provision:{slug}/{stack}/{cluster}`) and, with
  adopt, the foreign A records to take over. A missing or refused token fails here, in
  discovery, before any AWS change. No domain-name and no zone id: DNS is skipped.
- desired(): one A record per host, content = its Elastic IP (known after apply when not yet
  allocated), TTL dns_ttl, never proxied. Raises DnsConflictError (nothing changed, AWS
  included) when a host name has a foreign A/AAAA/CNAME record (A only adoptable).
- executor: create (POST), update (PUT in place: an address change is never delete+create),
  delete (DELETE; destroy removes only ours, before the addresses: kind order 45 < eip 40's
  delete step). An address not known at plan time is read from EC2 (its provision:host tag)
  when the record is written. Every call goes through cf_call (429 waits Retry-After).
"""
from __future__ import annotations

from typing import Any

from ..actions import KNOWN_AFTER_APPLY, Action, Resource
from ..errors import CloudError, ProvisionError
from .. import planner
from .client import RetryPolicy, cf_call, find_zone, list_records, make_client
from .records import (CONFLICT_TYPES, KIND, ORDER, DesiredRecord, DnsConflictError, LiveRecord, classify,
                      engine_resources, owner_comment, owner_prefix)

planner.register_kind(planner.KindSpec(KIND, ORDER))


def desired_records(config: Any, zone_id: str, addresses: dict[tuple[str, str], str | None]) -> list[DesiredRecord]:
    """One DesiredRecord per host; `addresses` maps (region, host) to the EIP's public IP."""
    out = []
    for c in config.clusters:
        for host in c.hosts:
            out.append(DesiredRecord(name=host.lower(), content=addresses.get((c.region, host.lower())),
                                     ttl=c.dns_ttl, comment=owner_comment(config.slug, config.stack, c.name),
                                     cluster=c.name, region=c.region, zone_id=zone_id))
    return out


def _addresses(inv: Any) -> tuple[dict[tuple[str, str], str | None], dict[str, str]]:
    ips: dict[tuple[str, str], str | None] = {}
    regions: dict[str, str] = {}
    for r in inv.live():
        if r.kind == "eip":
            host = r.name.lower()
            regions.setdefault(host, r.region)
            if r.data.get("public_ip") and (r.in_use or (r.region, host) not in ips):
                ips[(r.region, host)] = r.data["public_ip"]
    return ips, regions


class DnsProvider:
    kinds = (KIND,)

    def __init__(self, adopt: bool = False, client: Any = None, policy: RetryPolicy | None = None):
        self.adopt = adopt
        self._client = client
        self.policy = policy or RetryPolicy()
        self.zone_id: str | None = None
        self.records: list[LiveRecord] = []

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client()
        return self._client

    @staticmethod
    def enabled(config: Any) -> bool:
        s = config.settings
        return bool(s.domain_name or s.cloudflare_zone_id)

    def zone(self, config: Any) -> str:
        if self.zone_id is None:
            s = config.settings
            self.zone_id = s.cloudflare_zone_id or find_zone(self.client, s.domain_name, self.policy)
        return self.zone_id

    def live(self, engine: Any, inv: Any) -> list[Resource]:
        config = engine.config
        if not self.enabled(config):
            if config.hosts:
                raise ProvisionError(f"{config.path}: stack.domain-name is required when clusters have hosts",
                                     hint="add `domain-name:` under `stack:` (the Cloudflare zone of the hosts)")
            return []
        zid = self.zone(config)
        self.records = list_records(self.client, zid, self.policy, types=CONFLICT_TYPES)
        ips, regions = _addresses(inv)
        want = desired_records(config, zid, ips)
        _d, have = engine_resources(want, self.records, owner_prefix(config.slug, config.stack), self.adopt,
                                    regions=regions, check_conflicts=False)
        return have

    def desired(self, engine: Any, inv: Any) -> list[Resource]:
        config = engine.config
        if not self.enabled(config):
            return []
        ips, _regions = _addresses(inv)
        want = desired_records(config, self.zone(config), ips)
        c = classify(want, self.records, owner_prefix(config.slug, config.stack), self.adopt)
        if c.conflicts:
            raise DnsConflictError(c.conflicts)
        wanted, _h = engine_resources(want, self.records, owner_prefix(config.slug, config.stack), self.adopt,
                                      check_conflicts=False)
        return wanted

    def host_records(self, config: Any) -> dict[str, list[LiveRecord]]:
        """For `status`: every host of the config -> its A/AAAA/CNAME records (ours or not), from
        one list of the zone. Empty when the stack has no DNS."""
        if not self.enabled(config):
            return {}
        zid = self.zone(config)
        if not self.records:
            self.records = list_records(self.client, zid, self.policy, types=CONFLICT_TYPES)
        out: dict[str, list[LiveRecord]] = {h.lower(): [] for h in config.hosts}
        for r in self.records:
            if r.name in out:
                out[r.name].append(r)
        return out

    def executor(self, kind: str) -> "DnsExecutor":
        return DnsExecutor(self)


class DnsExecutor:
    kind = KIND
    permissions = {"create": ("ec2:DescribeAddresses",), "update": ("ec2:DescribeAddresses",), "delete": ()}

    def __init__(self, provider: DnsProvider):
        self.p = provider

    def run(self, rc: Any, action: Action) -> None:
        getattr(self, action.op if action.op != "replace" else "update")(rc, action)

    # -- helpers
    def _content(self, rc: Any, a: Action) -> str:
        want = a.desired.attrs["content"] if a.desired else KNOWN_AFTER_APPLY
        if want != KNOWN_AFTER_APPLY:
            return want
        from ..aws.eip import public_ip_key
        from ..aws.retry import call
        from ..desired import TAG_HOST, TAG_SLUG, TAG_STACK
        allocated = rc.get(public_ip_key(a.region, a.name))
        if allocated:  # allocated earlier in this run: no need to ask EC2 again
            return allocated
        ec2 = rc.clients.client("ec2", a.region)
        got = call(ec2, "describe_addresses", Filters=[
            {"Name": f"tag:{TAG_SLUG}", "Values": [rc.config.slug]},
            {"Name": f"tag:{TAG_STACK}", "Values": [rc.config.stack]},
            {"Name": f"tag:{TAG_HOST}", "Values": [a.name]}]).get("Addresses", [])
        held = [x for x in got if x.get("AssociationId") or x.get("InstanceId")] or got
        if not held or not held[0].get("PublicIp"):
            raise CloudError(f"dns-record {a.name}: no Elastic IP tagged provision:host={a.name} in {a.region}",
                             hint="run apply again: the address is created before its record")
        return held[0]["PublicIp"]

    def _body(self, rc: Any, a: Action) -> dict[str, Any]:
        d = a.desired
        assert d is not None
        return {"name": a.name, "type": "A", "content": self._content(rc, a), "ttl": int(d.attrs["ttl"]),
                "proxied": False, "comment": d.attrs["comment"]}

    def _zone(self, a: Action) -> str:
        res = a.desired or a.live
        zid = (res.data.get("zone_id") if res else None) or self.p.zone_id
        if not zid:
            raise CloudError(f"dns-record {a.name}: zone unknown")
        return zid

    def _existing(self, zid: str, body: dict[str, Any]) -> Any:
        """Our record with this name and content, if a lost answer created it after all."""
        page = cf_call(f"the check of {body['name']}", self.p.client.dns.records.list, zone_id=zid,
                       name={"exact": body["name"]}, type="A", policy=self.p.policy)
        for r in page.result or []:
            if r.content == body["content"] and (r.comment or "") == body["comment"]:
                return r
        return None

    # -- operations
    def create(self, rc: Any, a: Action) -> None:
        zid = self._zone(a)
        body = self._body(rc, a)
        rc.progress(f"DNS: create A {a.name} -> {body['content']}")
        cf_call(f"the creation of A {a.name}", self.p.client.dns.records.create, zone_id=zid, policy=self.p.policy,
                before_retry=lambda: self._existing(zid, body), **body)

    def update(self, rc: Any, a: Action) -> None:
        zid = self._zone(a)
        body = self._body(rc, a)
        assert a.live is not None and a.live.id
        rc.progress(f"DNS: update A {a.name} -> {body['content']} (in place)")
        cf_call(f"the update of A {a.name}", self.p.client.dns.records.update, dns_record_id=a.live.id,
                zone_id=zid, policy=self.p.policy, **body)

    def delete(self, rc: Any, a: Action) -> None:
        import cloudflare

        zid = self._zone(a)
        assert a.live is not None and a.live.id
        rc.progress(f"DNS: delete A {a.name} ({a.live.id})")
        try:
            cf_call(f"the deletion of A {a.name}", self.p.client.dns.records.delete, dns_record_id=a.live.id,
                    zone_id=zid, policy=self.p.policy)
        except CloudError as e:
            if "HTTP 404" in e.message:
                return  # already gone
            raise
        except cloudflare.NotFoundError:
            return
