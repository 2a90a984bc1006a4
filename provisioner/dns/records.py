"""DNS records: the pure part (no SDK, no network). One owned A record per host.

A record is ours when its comment starts with `provision:{slug}/{stack}/` (the full comment is
`provision:{slug}/{stack}/{cluster}`, docs/internals.md). Any other A, AAAA or CNAME record at a
host's name is foreign: a conflict, unless `adopt` and it is a single A record (taken over in
place with a PUT). AAAA and CNAME records are never adopted. Records of other names and other
types are never looked at twice.

`plan_dns(desired, live, owner_comment_prefix, adopt)` -> list of `Action` (kind "dns-record", the
engine's Action type), or raises `DnsConflictError` naming every conflicting record.
`engine_resources(...)` gives the same decisions as desired/live `Resource`s for the engine's
generic planner, which then produces the same actions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..actions import KNOWN_AFTER_APPLY, Action, Resource
from ..errors import ProvisionError

KIND = "dns-record"
ORDER = 45  # after the Elastic IP it points at (40); deleted before it (planner: deletes descending)
CONFLICT_TYPES = ("A", "AAAA", "CNAME")


def owner_prefix(slug: str, stack: str) -> str:
    return f"provision:{slug}/{stack}/"


def owner_comment(slug: str, stack: str, cluster: str) -> str:
    return f"{owner_prefix(slug, stack)}{cluster}"


@dataclass(frozen=True)
class DesiredRecord:
    """The A record one host should have. `content` None: the address is not allocated yet."""

    name: str
    content: str | None
    ttl: int
    comment: str
    cluster: str
    region: str
    zone_id: str = ""


@dataclass(frozen=True)
class LiveRecord:
    id: str
    name: str
    type: str
    content: str
    ttl: int = 1
    proxied: bool = False
    comment: str | None = None
    zone_id: str = ""

    def describe(self) -> str:
        c = f", comment {self.comment!r}" if self.comment else ""
        return f"{self.type} {self.name} -> {self.content} (id {self.id}{c})"


class DnsConflictError(ProvisionError):
    """Names of the stack already have records that are not ours. Raised before any change."""

    def __init__(self, conflicts: list[tuple[str, list[LiveRecord], str]]):
        self.conflicts = conflicts
        lines = [f"DNS conflict: {len(conflicts)} host name(s) already have records this stack does not own; "
                 "nothing was changed:"]
        for name, recs, why in conflicts:
            lines.append(f"  {name}: {why}")
            lines.extend(f"    {r.describe()}" for r in recs)
        adoptable = any(all(r.type == "A" for r in recs) and len(recs) == 1 for _n, recs, _w in conflicts)
        hint = ("delete or rename those records in Cloudflare, or remove the hosts from the config"
                + ("; --adopt-dns takes over a single foreign A record (never AAAA or CNAME)" if adoptable else ""))
        super().__init__("\n".join(lines), hint=hint)


@dataclass
class Classified:
    """What the planner decided about the live records (shared by plan_dns and engine_resources)."""

    ours: dict[str, list[LiveRecord]] = field(default_factory=dict)  # by name, A records we own
    adopted: dict[str, LiveRecord] = field(default_factory=dict)  # by name
    conflicts: list[tuple[str, list[LiveRecord], str]] = field(default_factory=list)


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


def classify(desired: Iterable[DesiredRecord], live: Iterable[LiveRecord], owner_comment_prefix: str,
             adopt: bool) -> Classified:
    want = {_norm(d.name) for d in desired}
    out = Classified()
    foreign: dict[str, list[LiveRecord]] = {}
    for r in live:
        name = _norm(r.name)
        if r.type == "A" and (r.comment or "").startswith(owner_comment_prefix):
            out.ours.setdefault(name, []).append(r)
        elif r.type in CONFLICT_TYPES and name in want:
            foreign.setdefault(name, []).append(r)
    for name in sorted(foreign):
        recs = foreign[name]
        types = {r.type for r in recs}
        if types - {"A"}:
            bad = sorted(types - {"A"})
            out.conflicts.append((name, recs, f"has {'/'.join(bad)} record(s) it does not own"
                                  + (" (AAAA and CNAME records are never adopted)" if adopt else "")))
        elif not adopt:
            out.conflicts.append((name, recs, "has an A record it does not own (--adopt-dns takes it over)"))
        elif len(recs) > 1:
            out.conflicts.append((name, recs, f"has {len(recs)} foreign A records; --adopt-dns takes over one"))
        elif name in out.ours:
            out.conflicts.append((name, recs, "has a foreign A record next to ours; delete it in Cloudflare"))
        else:
            out.adopted[name] = recs[0]
    return out


def _attrs(content: Any, ttl: int, proxied: bool, comment: str | None) -> dict[str, Any]:
    return {"content": content, "ttl": ttl, "proxied": proxied, "comment": comment}


def _keeper(records: list[LiveRecord], want: DesiredRecord | None) -> LiveRecord:
    """Among several records of ours with one name: the one whose content matches, else the first id."""
    return sorted(records, key=lambda r: (not (want and r.content == want.content), r.id))[0]


def desired_resource(d: DesiredRecord) -> Resource:
    return Resource(KIND, _norm(d.name), d.region, d.cluster,
                    attrs=_attrs(d.content if d.content is not None else KNOWN_AFTER_APPLY, d.ttl, False, d.comment),
                    data={"zone_id": d.zone_id})


def live_resource(r: LiveRecord, region: str, cluster: str | None, adopted: bool = False) -> Resource:
    return Resource(KIND, _norm(r.name), region, cluster, id=r.id,
                    attrs=_attrs(r.content, r.ttl, r.proxied, r.comment),
                    data={"zone_id": r.zone_id, "type": r.type, "adopted": adopted, "created": r.id})


def cluster_of(comment: str | None, owner_comment_prefix: str) -> str | None:
    if comment and comment.startswith(owner_comment_prefix):
        return comment[len(owner_comment_prefix):] or None
    return None


def plan_dns(desired: list[DesiredRecord], live: list[LiveRecord], owner_comment_prefix: str,
             adopt: bool = False, *, regions: dict[str, str] | None = None,
             clusters: Iterable[str] | None = None, destroy: bool = False) -> list[Action]:
    """Actions that make the zone hold exactly `desired` among the records we own.

    `regions` maps a host to the region of its address, for records of hosts no longer desired
    (so their delete runs with that address's cluster, before the address goes); default "global".
    `clusters`: the clusters still in the config (a record of another cluster is "cluster removed").
    Raises DnsConflictError before returning any action when a desired name has foreign records.
    """
    if destroy:
        desired = []
    c = classify(desired, live, owner_comment_prefix, adopt)
    if c.conflicts:
        raise DnsConflictError(c.conflicts)
    regions = regions or {}
    alive = set(clusters) if clusters is not None else {d.cluster for d in desired}
    actions: list[Action] = []
    seen: set[str] = set()
    for d in sorted(desired, key=lambda d: _norm(d.name)):
        name = _norm(d.name)
        if name in seen:
            raise ValueError(f"two desired DNS records for {name}")
        seen.add(name)
        want = desired_resource(d)
        ours = c.ours.get(name, [])
        if ours:
            keep = _keeper(ours, d)
            for dup in ours:
                if dup is not keep:
                    actions.append(Action("delete", KIND, name, d.region, d.cluster,
                                          f"duplicate of {keep.id}", {"id": [dup.id, None]},
                                          step=200 - ORDER, destructive=False,
                                          live=live_resource(dup, d.region, d.cluster)))
            have = live_resource(keep, d.region, cluster_of(keep.comment, owner_comment_prefix))
            changes = {k: [have.attrs[k], v] for k, v in want.attrs.items()
                       if v == KNOWN_AFTER_APPLY or have.attrs[k] != v}
            if changes:
                actions.append(Action("update", KIND, name, d.region, d.cluster,
                                      "changed: " + ", ".join(changes), changes, step=ORDER,
                                      desired=want, live=have))
        elif name in c.adopted:
            r = c.adopted[name]
            have = live_resource(r, d.region, None, adopted=True)
            changes = {k: [have.attrs[k], v] for k, v in want.attrs.items()
                       if v == KNOWN_AFTER_APPLY or have.attrs[k] != v}
            actions.append(Action("update", KIND, name, d.region, d.cluster,
                                  f"adopt the existing A record {r.id} (--adopt-dns)", changes,
                                  step=ORDER, desired=want, live=have))
        else:
            actions.append(Action("create", KIND, name, d.region, d.cluster, "not found", {}, step=ORDER,
                                  desired=want))
    for name in sorted(set(c.ours) - seen):
        for r in sorted(c.ours[name], key=lambda r: r.id):
            cluster = cluster_of(r.comment, owner_comment_prefix)
            region = regions.get(name, "global")
            reason = ("destroy: the stack owns it" if destroy
                      else f"cluster '{cluster}' is no longer in the config" if cluster not in alive
                      else "host no longer in the config")
            actions.append(Action("delete", KIND, name, region, cluster, reason, {"id": [r.id, None]},
                                  step=200 - ORDER, destructive=True,
                                  live=live_resource(r, region, cluster)))
    actions.sort(key=lambda a: (a.step, a.region, a.cluster or "", a.name))
    return actions


def engine_resources(desired: list[DesiredRecord], live: list[LiveRecord], owner_comment_prefix: str,
                     adopt: bool = False, *, regions: dict[str, str] | None = None,
                     check_conflicts: bool = True) -> tuple[list[Resource], list[Resource]]:
    """(desired, live) Resources for the engine's generic planner: the live ones are our records
    plus adopted ones, in the region of the desired record of their name (else `regions`)."""
    c = classify(desired, live, owner_comment_prefix, adopt)
    if check_conflicts and c.conflicts:
        raise DnsConflictError(c.conflicts)
    regions = regions or {}
    where = {_norm(d.name): d.region for d in desired}
    want = [desired_resource(d) for d in desired]
    have: list[Resource] = []
    for name, recs in c.ours.items():
        region = where.get(name) or regions.get(name, "global")
        have.extend(live_resource(r, region, cluster_of(r.comment, owner_comment_prefix)) for r in recs)
    for name, r in c.adopted.items():
        have.append(live_resource(r, where[name], None, adopted=True))
    return want, have
