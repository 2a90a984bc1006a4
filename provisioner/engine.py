"""Orchestration: discover -> desired -> plan -> execute, for every registered provider.

A provider (AWS here; DNS plugs in the same way) contributes live resources, desired resources
and executors for its kinds (planner.register_kind + a `executors` mapping). Execution runs in
phases; inside a phase, scopes (a region, a cluster) run in parallel on a thread pool and the
actions of one scope in sequence (`Action.step` order):

    1 global creates/updates   2 region creates/updates   3 cluster actions (all ops)
    4 region deletes           5 global deletes
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from . import planner
from .actions import Action, Resource
from .aws import discovery, resolve
from .aws.base import Executor, RunContext
from .aws.clients import Clients
from .aws.executors import EXECUTORS
from .aws.policy import agent_policy, canonical
from .config import Config
from .desired import Facts, api_key_secret, desired_resources
from .errors import CloudError, ProvisionError


class Provider(Protocol):
    """What another resource provider (e.g. DNS) implements to plug into plan/apply."""

    kinds: tuple[str, ...]  # registered with planner.register_kind

    def live(self, engine: "Engine", inv: "Inventory") -> list[Resource]: ...

    def desired(self, engine: "Engine", inv: "Inventory") -> list[Resource]: ...

    def executor(self, kind: str) -> Executor: ...


@dataclass
class Inventory:
    regions: dict[str, discovery.RegionInventory] = field(default_factory=dict)
    global_resources: list[Resource] = field(default_factory=list)
    facts: Facts = field(default_factory=Facts)
    extra: list[Resource] = field(default_factory=list)  # from other providers

    def live(self) -> list[Resource]:
        out = list(self.global_resources)
        for r in self.regions.values():
            out.extend(r.resources)
        return out + self.extra


@dataclass
class Result:
    action: Action
    result: str  # ok | failed | refused | skipped
    error: str | None = None


@dataclass
class Plan:
    actions: list[Action]
    inventory: Inventory
    desired: list[Resource]


class Engine:
    def __init__(self, config: Config, clients: Clients | None = None, *, workers: int = 8,
                 refresh_ami: bool = False, extra_regions: Iterable[str] = (),
                 progress: Callable[[str], None] = lambda m: None, wait_timeout: float = 900.0,
                 providers: Iterable[Provider] = ()):
        self.config = config
        self.clients = clients or Clients()
        self.workers = max(1, workers)
        self.refresh_ami = refresh_ami
        self.extra_regions = set(extra_regions)
        self.progress = progress
        self.wait_timeout = wait_timeout
        self.providers = list(providers)
        self.stop = threading.Event()  # set on Ctrl-C: scopes stop between actions

    # ---- discovery
    def regions(self) -> list[str]:
        rs = list(self.config.regions)
        for r in sorted(self.extra_regions):
            if r not in rs:
                rs.append(r)
        return rs

    def discover(self, *, with_instances: bool = False) -> Inventory:
        inv = Inventory()
        compare = self.config.settings.api_key is not None or any(c.model.hf_token for c in self.config.clusters)
        regions = self.regions()
        with ThreadPoolExecutor(max_workers=min(self.workers, max(1, len(regions) + 1))) as pool:
            glob = pool.submit(discovery.discover_global, self.clients, self.config, self.config.home_region)
            futs = {r: pool.submit(discovery.discover_region, self.clients, self.config, r,
                                   with_instances=with_instances, compare_secrets=compare) for r in regions}
            inv.global_resources = glob.result()
            for r, f in futs.items():
                inv.regions[r] = f.result()
        for p in self.providers:
            inv.extra.extend(p.live(self, inv))
        return inv

    def facts(self, inv: Inventory) -> Facts:
        facts = Facts(agent_policy=canonical(agent_policy(self.config)))
        for region, ri in inv.regions.items():
            facts.regions[region] = ri.facts
            for cl, v in ri.lt_versions.items():
                if cl in {c.name for c in self.config.clusters if c.region == region}:
                    facts.lt_versions[cl] = v
        by_region: dict[str, list] = {}
        for c in self.config.clusters:
            by_region.setdefault(c.region, []).append(c)

        def one(region: str):
            ri = inv.regions[region]
            recorded = {k: v for k, v in ri.lt_recorded.items()}
            images = resolve.resolve_images(self.clients, self.config, region, by_region[region], recorded,
                                            refresh=self.refresh_ami)
            sizes = resolve.model_sizes(by_region[region], recorded, warn=self.progress)
            return images, sizes

        with ThreadPoolExecutor(max_workers=min(self.workers, max(1, len(by_region)))) as pool:
            for images, sizes in pool.map(one, list(by_region)):
                facts.images.update(images)
                facts.model_gb.update(sizes)
        return facts

    # ---- planning
    def plan(self, *, destroy: bool = False, inv: Inventory | None = None) -> Plan:
        inv = inv or self.discover()
        if destroy:
            desired: list[Resource] = []
        else:
            inv.facts = self.facts(inv)
            desired = desired_resources(self.config, inv.facts)
            for p in self.providers:
                desired.extend(p.desired(self, inv))
        clusters = () if destroy else [c.name for c in self.config.clusters]
        actions = planner.plan(desired, inv.live(), clusters=clusters, destroy=destroy)
        return Plan(actions, inv, desired)

    # ---- execution
    def executor(self, kind: str) -> Executor:
        for p in self.providers:
            if kind in p.kinds:
                return p.executor(kind)
        return EXECUTORS[kind]

    def run_context(self, inv: Inventory) -> RunContext:
        rc = RunContext(self.config, self.clients, progress=self.progress, wait_timeout=self.wait_timeout)
        key_name = api_key_secret(self.config)
        regions_with_key = []
        for region, ri in inv.regions.items():
            if ri.facts.security_group_id:
                rc.put(("security-group", region), ri.facts.security_group_id)
            if any(r.kind == "secret" and r.name == key_name for r in ri.resources):
                regions_with_key.append(region)
        rc.put(("api-key", "regions"), regions_with_key)
        return rc

    def execute(self, plan: Plan, *, skip: Callable[[Action], bool] = lambda a: False,
                on_result: Callable[[Result], None] = lambda r: None) -> list[Result]:
        rc = self.run_context(plan.inventory)
        results: list[Result] = []
        lock = threading.Lock()

        def record(res: Result) -> None:
            with lock:
                results.append(res)
            on_result(res)

        def run_scope(actions: list[Action]) -> None:
            failed = False
            for a in actions:
                if self.stop.is_set():
                    record(Result(a, "skipped", "interrupted"))
                    continue
                if skip(a):
                    record(Result(a, "refused"))
                    continue
                if failed:
                    record(Result(a, "skipped", "an earlier action of this scope failed"))
                    continue
                t0 = time.monotonic()
                try:
                    self.executor(a.kind).run(rc, a)
                except ProvisionError as e:
                    failed = True
                    record(Result(a, "failed", e.message + (f" ({e.hint})" if e.hint else "")))
                    continue
                except Exception as e:  # noqa: BLE001 - reported per action; the run goes on
                    failed = True
                    record(Result(a, "failed", f"{type(e).__name__}: {e}"))
                    continue
                self.progress(f"{a.op} {a.kind} {a.name} ({a.region}): done in {time.monotonic() - t0:.1f}s")
                record(Result(a, "ok"))

        try:
            for phase in phases(plan.actions):
                groups: dict[tuple, list[Action]] = {}
                for a in phase:
                    groups.setdefault(a.scope, []).append(a)
                if len(groups) == 1 or self.workers == 1:
                    for g in groups.values():
                        run_scope(g)
                else:
                    pool = ThreadPoolExecutor(max_workers=min(self.workers, len(groups)))
                    try:
                        for f in [pool.submit(run_scope, g) for g in groups.values()]:
                            f.result()
                    finally:
                        pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:
            # Ctrl-C: every scope stops after the call it is in; the next run converges
            self.stop.set()
            raise
        return results


def phases(actions: list[Action]) -> list[list[Action]]:
    glob_up, reg_up, clus, reg_del, glob_del = [], [], [], [], []
    for a in sorted(actions, key=lambda a: (a.step, a.region, a.cluster or "", a.kind, a.name)):
        scope = a.scope[0]
        deleting = a.op == "delete"
        if scope == "cluster":
            clus.append(a)
        elif scope == "region":
            (reg_del if deleting else reg_up).append(a)
        else:
            (glob_del if deleting else glob_up).append(a)
    return [p for p in (glob_up, reg_up, clus, reg_del, glob_del) if p]


def failures_message(results: list[Result]) -> str:
    bad = [r for r in results if r.result == "failed"]
    lines = [f"{len(bad)} action(s) failed; run the command again to converge (what succeeded is kept):"]
    for r in bad[:10]:
        a = r.action
        lines.append(f"  {a.op} {a.kind} {a.name} ({a.region}): {r.error}")
    return "\n".join(lines)


__all__ = ["Engine", "Inventory", "Plan", "Provider", "Result", "phases", "failures_message", "CloudError"]
