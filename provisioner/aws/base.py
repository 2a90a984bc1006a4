"""What every executor shares: the run context and the Executor interface.

An executor carries out the actions of one kind. It declares, per operation, every IAM action it
calls, including those AWS checks on the way (Cloud Custodian style); docs/iam-policy.json is
generated from these declarations (policy.py) and a test checks each call against them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ..actions import Action
from ..config import Config
from ..errors import CloudError
from .clients import Clients


@dataclass
class RunContext:
    config: Config
    clients: Clients
    progress: Callable[[str], None] = lambda msg: None
    wait_timeout: float = 900.0
    shared: dict[str, Any] = field(default_factory=dict)  # ids learnt during the run
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, key: tuple, value: Any) -> None:
        with self.lock:
            self.shared[key] = value

    def get(self, key: tuple, default: Any = None) -> Any:
        with self.lock:
            return self.shared.get(key, default)


class Executor:
    kind: str = ""
    # op ("create" | "update" | "delete") -> IAM actions the operation may call
    permissions: dict[str, tuple[str, ...]] = {}

    def run(self, rc: RunContext, action: Action) -> None:
        op = action.op
        if op == "replace":
            self.delete(rc, action)
            self.create(rc, action)
        else:
            getattr(self, op)(rc, action)

    def create(self, rc: RunContext, action: Action) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, rc: RunContext, action: Action) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def delete(self, rc: RunContext, action: Action) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_spec(resource_type: str, tags: dict[str, str]) -> dict:
    return {"ResourceType": resource_type, "Tags": tag_list(tags)}


def fail(action: Action, what: str, hint: str | None = None) -> CloudError:
    where = action.region if not action.cluster else f"{action.region}, cluster {action.cluster}"
    return CloudError(f"{action.kind} {action.name} ({where}): {what}", hint=hint)
