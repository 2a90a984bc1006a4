"""boto3 client factory: one Session per profile, one client per (service, region).

botocore's own retries are off (total_max_attempts=1): the single retry policy in retry.py decides
what is transient. AWS_ENDPOINT_URL (boto3's own variable) is honoured by boto3 itself.
Every API call is counted (service, operation) so benches and tests can report call counts.
"""
from __future__ import annotations

import threading
from collections import Counter

import boto3
from botocore.config import Config as BotoConfig

BOTO_CONFIG = BotoConfig(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=10,
    read_timeout=60,
    max_pool_connections=32,
)


class Clients:
    def __init__(self, profile: str | None = None):
        self.profile = profile
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None
        self._clients: dict[tuple[str, str], object] = {}
        self.calls: Counter = Counter()  # (service, operation) -> number of requests sent

    @property
    def session(self) -> boto3.session.Session:
        with self._lock:
            if self._session is None:
                self._session = boto3.session.Session(profile_name=self.profile)
            return self._session

    def client(self, service: str, region: str):
        key = (service, region)
        with self._lock:
            c = self._clients.get(key)
        if c is not None:
            return c
        session = self.session
        with self._lock:
            c = self._clients.get(key)
            if c is None:
                c = session.client(service, region_name=region, config=BOTO_CONFIG)
                c.meta.events.register("before-call.*.*", self._count)
                self._clients[key] = c
            return c

    def _count(self, model=None, **_kw) -> None:
        if model is not None:
            with self._lock:
                self.calls[(model.service_model.service_name, model.name)] += 1

    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def mutating_calls(self) -> int:
        with self._lock:
            return sum(n for (_s, op), n in self.calls.items() if not op.startswith(READ_PREFIXES))


READ_PREFIXES = ("Describe", "List", "Get", "BatchGet")
