"""Resources and actions: the data the planner works on (pure: no cloud SDK here).

A `Resource` is one thing a stack owns, desired (from the config) or live (from discovery).
An `Action` is what an apply would do to one resource: create, update, replace or delete.
`Action.to_json()` is the ACTION object of CONTRACT §2; `render_text()` prints a plan the way
`terraform plan` does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

OPS = ("create", "update", "replace", "delete")
SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}
KNOWN_AFTER_APPLY = "(known after apply)"
SENSITIVE = "(sensitive)"


@dataclass
class Resource:
    """One resource, desired or live. `attrs` are compared by the planner; `data` is not."""

    kind: str
    name: str
    region: str  # "global" for IAM
    cluster: str | None = None
    id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    in_use: bool = False  # e.g. an Elastic IP an instance holds: never deleted as a duplicate

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.region, self.name)


@dataclass
class Action:
    op: str
    kind: str
    name: str
    region: str
    cluster: str | None
    reason: str
    changes: dict[str, list[Any]] = field(default_factory=dict)
    # internal (not part of the JSON contract)
    step: int = 0  # execution order inside a scope
    destructive: bool = False  # removes a cluster, a host or an address: reconcile refuses it
    desired: Resource | None = None
    live: Resource | None = None

    @property
    def scope(self) -> tuple[str, ...]:
        """Actions of one scope run in sequence; different scopes of one phase run in parallel."""
        if self.region == "global":
            return ("global",)
        if self.cluster:
            return ("cluster", self.region, self.cluster)
        return ("region", self.region)

    @property
    def id(self) -> str | None:
        return self.live.id if self.live else None

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "kind": self.kind,
            "name": self.name,
            "region": self.region,
            "cluster": self.cluster,
            "reason": self.reason,
            "changes": {k: list(v) for k, v in self.changes.items()},
        }


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if value != KNOWN_AFTER_APPLY and value != SENSITIVE else value
    return json.dumps(value, sort_keys=True)


def render_text(actions: list[Action], stack: str) -> str:
    """A terraform-like plan: one block per action, then a summary line."""
    if not actions:
        return f"No changes. Stack '{stack}' matches its configuration."
    lines = [f"Stack '{stack}' plan ({len(actions)} action(s)):", ""]
    for a in actions:
        where = a.region if not a.cluster else f"{a.region}, cluster {a.cluster}"
        lines.append(f"  {SYMBOL[a.op]} {a.kind} {a.name} ({where})")
        lines.append(f"      # {a.reason}")
        for attr, (old, new) in a.changes.items():
            lines.append(f"      {attr}: {_fmt(old)} -> {_fmt(new)}")
    counts = {op: sum(1 for a in actions if a.op == op) for op in OPS}
    lines.append("")
    lines.append(
        "Plan: {create} to create, {update} to update, {replace} to replace, {delete} to delete.".format(
            **counts
        )
    )
    return "\n".join(lines)


def plan_json(actions: list[Action], stack: str) -> str:
    return json.dumps({"stack": stack, "actions": [a.to_json() for a in actions]}, sort_keys=False)
