"""The pure planner: desired + live resources -> actions. Imports no cloud SDK.

Each resource kind registers a `KindSpec` (its order in a run, which attributes force a
replace, which are sensitive). Another provider (DNS) adds its kinds with `register_kind`.

Execution order (`Action.step`): creates and updates by ascending kind order; deletes after them,
by descending kind order (so an Auto Scaling Group goes before its addresses, a DNS record before
the address it points at); an ASG update that lowers capacity goes after the address deletes of
its cluster (removing a host terminates that host's instance first, see aws/eip.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .actions import KNOWN_AFTER_APPLY, SENSITIVE, Action, Resource

DELETE_BASE = 200


@dataclass(frozen=True)
class KindSpec:
    name: str
    order: int  # creates ascending, deletes descending
    replace_on: frozenset[str] = frozenset()
    sensitive: frozenset[str] = frozenset()
    # a delete of this kind removes a cluster, a host or an address (reconcile refuses it)
    destructive: bool = True
    # among several live resources with one key: the one to keep (the rest are duplicates)
    keeper: Callable[[list[Resource]], Resource] | None = None


KINDS: dict[str, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    KINDS[spec.name] = spec
    return spec


def _keep_in_use_then_oldest(items: list[Resource]) -> Resource:
    return sorted(items, key=lambda r: (not r.in_use, r.data.get("created", ""), r.id or ""))[0]


register_kind(KindSpec("iam-role", 10))
register_kind(KindSpec("secret", 20, sensitive=frozenset({"value"}), destructive=False))
register_kind(KindSpec("security-group", 20, replace_on=frozenset({"vpc_id"})))
register_kind(KindSpec("launch-template", 30))
register_kind(KindSpec("eip", 40, keeper=_keep_in_use_then_oldest))
register_kind(KindSpec("asg", 50))


def spec_of(kind: str) -> KindSpec:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown resource kind {kind!r}") from None


def diff(desired: Resource, live: Resource, spec: KindSpec) -> dict[str, list[Any]]:
    changes: dict[str, list[Any]] = {}
    for attr, want in desired.attrs.items():
        have = live.attrs.get(attr)
        if want == KNOWN_AFTER_APPLY or have != want:
            if attr in spec.sensitive:
                changes[attr] = [SENSITIVE if have is not None else None, SENSITIVE]
            else:
                changes[attr] = [have, want]
    return changes


def _delete_step(spec: KindSpec) -> int:
    return DELETE_BASE - spec.order


def plan(desired: Iterable[Resource], live: Iterable[Resource], *, clusters: Iterable[str] = (),
         destroy: bool = False) -> list[Action]:
    """Actions that turn `live` into `desired`, in execution order.

    `clusters` are the clusters in the config: a delete of a resource of a cluster that is still
    there (a host removed) and of one that is gone (the cluster removed) are both destructive, a
    duplicate is not.
    """
    want: dict[tuple, Resource] = {}
    for r in desired:
        if r.key in want:
            raise ValueError(f"two desired resources share the key {r.key}")
        want[r.key] = r
    desired_regions = {k[1] for k in want}
    have: dict[tuple, list[Resource]] = {}
    for r in live:
        have.setdefault(r.key, []).append(r)

    actions: list[Action] = []
    for key in sorted(set(want) | set(have), key=lambda k: (spec_of(k[0]).order, k[1], k[2])):
        spec = spec_of(key[0])
        d = want.get(key)
        found = have.get(key, [])
        keeper: Resource | None = None
        if found:
            keeper = (spec.keeper or _keep_in_use_then_oldest)(found)
            for dup in found:
                if dup is keeper:
                    continue
                if dup.in_use:
                    continue  # never touch one an instance holds; reported by status
                actions.append(
                    Action("delete", spec.name, dup.name, dup.region, dup.cluster,
                           f"duplicate of {keeper.id} (unassociated, left by an interrupted create)",
                           {"id": [dup.id, None]}, step=_delete_step(spec), live=dup)
                )
        if d is not None and keeper is None:
            actions.append(Action("create", spec.name, d.name, d.region, d.cluster,
                                  "not found", {}, step=spec.order, desired=d))
        elif d is None and keeper is not None:
            gone = keeper.cluster is not None and keeper.cluster not in set(clusters)
            reason = ("destroy: the stack owns it" if destroy
                      else f"cluster '{keeper.cluster}' is no longer in the config" if gone
                      else "host no longer in the config" if spec.name in ("eip", "dns-record")
                      else "no longer in the config")
            # a secret dropped from the config may go; anything of a cluster or region that goes is refused
            region_gone = keeper.cluster is None and keeper.region not in desired_regions
            actions.append(Action("delete", spec.name, keeper.name, keeper.region, keeper.cluster,
                                  reason, {"id": [keeper.id, None]}, step=_delete_step(spec),
                                  destructive=spec.destructive or gone or region_gone, live=keeper))
        elif d is not None and keeper is not None:
            changes = diff(d, keeper, spec)
            if not changes:
                continue
            op = "replace" if set(changes) & spec.replace_on else "update"
            reason = "changed: " + ", ".join(changes)
            actions.append(Action(op, spec.name, d.name, d.region, d.cluster, reason, changes,
                                  step=spec.order, desired=d, live=keeper))
    _link_templates_to_groups(actions, want, have)
    _order_capacity_decrease(actions)
    actions.sort(key=lambda a: (a.step, a.region, a.cluster or "", a.kind, a.name))
    return actions


def _link_templates_to_groups(actions: list[Action], want: dict, have: dict) -> None:
    """A new launch template version is picked up by its group: show it in the group's action."""
    by_key = {(a.kind, a.region, a.name): a for a in actions if a.op != "delete"}
    for a in list(actions):
        if a.kind != "launch-template" or a.op not in ("update", "replace"):
            continue
        for key, d in want.items():
            if key[0] != "asg" or d.region != a.region or d.cluster != a.cluster:
                continue
            live = have.get(key)
            if not live:
                continue  # the group is created anyway
            act = by_key.get(key)
            old = live[0].attrs.get("launch_template_version")
            if act is None:
                act = Action("update", "asg", d.name, d.region, d.cluster, "", {},
                             step=spec_of("asg").order, desired=d, live=live[0])
                actions.append(act)
                by_key[key] = act
            act.changes["launch_template_version"] = [old, KNOWN_AFTER_APPLY]
            act.reason = "changed: " + ", ".join(act.changes)


def _order_capacity_decrease(actions: list[Action]) -> None:
    eip = spec_of("eip")
    for a in actions:
        if a.kind != "asg" or a.op != "update":
            continue
        old, new = a.changes.get("min_size", [0, 0])
        if isinstance(old, int) and isinstance(new, int) and new < old:
            a.step = _delete_step(eip) + 1
            a.destructive = True


def summary(actions: list[Action]) -> dict[str, int]:
    out = {"create": 0, "update": 0, "replace": 0, "delete": 0}
    for a in actions:
        out[a.op] += 1
    return out
