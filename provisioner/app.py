"""Command bodies behind the thin click layer (cli.py): one function per command.

Each takes the loaded Config and RunOptions, prints through opts.echo / opts.err, and returns the
process exit code (0, or 2 for "changes pending" / refused deletions). Errors are raised as
ProvisionError (exit 1); nothing here calls sys.exit.
"""
from __future__ import annotations

import contextlib

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import Config
from .errors import ProvisionError


@dataclass
class RunOptions:
    state_dir: Path
    profile: str | None = None
    debug: bool = False
    sandbox: bool = False
    output: str = "text"  # text | json
    yes: bool = False
    interactive: bool = False  # stdin and stdout are a TTY
    adopt_dns: bool = False
    allow_delete: bool = False
    refresh_ami: bool = False
    detailed_exitcode: bool = False
    show_secrets: bool = False
    echo: Callable[[str], None] = print  # stdout
    err: Callable[[str], None] = print  # stderr
    confirm: Callable[[str], bool] = field(default=lambda prompt: False)
    workers: int = 8  # parallel scopes (regions, clusters) in apply/destroy
    wait_timeout: float = 900.0  # seconds a wait (group deletion, address release) may last
    providers: list | None = None  # None: DNS + certificates; a list replaces them ([]: AWS alone)


# ---------------------------------------------------------------------------------------------
# helpers


def _aws_errors(fn):
    """An AWS error nothing retried away becomes one clear CloudError (exit 1, no traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        from .errors import CloudError
        try:
            return fn(*args, **kwargs)
        except NoCredentialsError:
            raise CloudError("no AWS credentials found",
                             hint="set AWS_PROFILE (or --profile), or use --sandbox for the local emulators") from None
        except ClientError as e:
            op = e.operation_name
            err = e.response.get("Error", {})
            raise CloudError(f"AWS {op} failed: {err.get('Code')}: {err.get('Message')}",
                             hint="run the command again; what succeeded is kept and the next run converges") from None
        except BotoCoreError as e:
            raise CloudError(f"AWS call failed: {e}", hint="check AWS_ENDPOINT_URL / network and run again") from None
    return wrapper


def _engine(config: Config, opts: RunOptions, extra_regions=()):
    from .aws.clients import Clients
    from .engine import Engine

    return Engine(config, Clients(opts.profile), workers=opts.workers, refresh_ami=opts.refresh_ami,
                  extra_regions=extra_regions, progress=opts.err, wait_timeout=opts.wait_timeout,
                  providers=_providers(config, opts))


@contextlib.contextmanager
def _locked_run(config: Config, opts: RunOptions):
    """An engine under the stack's lock, looking at every region the stack has used.

    Yields (engine, lock, regions); the lock is released on the way out (after a destroy has set
    `lock.drop_table`, with its table)."""
    from .lock import StackLock

    engine = _engine(config, opts)
    lock = StackLock(engine.clients, config, opts.state_dir).acquire()
    try:
        regions = _known_regions(config, opts, engine) | set(config.regions)
        engine.extra_regions = regions
        yield engine, lock, regions
    finally:
        lock.release()


def _providers(config: Config, opts: RunOptions) -> list:
    """The providers beside AWS that plug into plan/apply: DNS records (Cloudflare) and TLS
    certificates. `opts.providers` (a list) replaces them, e.g. [] for AWS alone."""
    if opts.providers is not None:
        return list(opts.providers)
    from .certs.provider import CertificateProvider
    from .dns import DnsProvider

    return [DnsProvider(adopt=opts.adopt_dns), CertificateProvider()]


def _known_regions(config: Config, opts: RunOptions, engine) -> set[str]:
    from .lock import known_regions
    from .state import load_state

    regions = set(load_state(opts.state_dir, config.stack).get("regions", []))
    regions |= known_regions(engine.clients, config)
    return regions


def _show_plan(config: Config, opts: RunOptions, actions) -> None:
    from .actions import plan_json, render_text

    if opts.output == "json":
        opts.echo(plan_json(actions, config.stack))
    else:
        opts.echo(render_text(actions, config.stack))


def _save(config: Config, opts: RunOptions, engine, regions: set[str], lock=None) -> None:
    """Refresh the state cache from a fresh discovery (reads only; no secrets). A region no longer
    in the config where nothing of the stack is left is forgotten (the lock table's record too)."""
    from .state import save_state

    inv = engine.discover()
    empty = {r for r in regions - set(config.regions) if r in inv.regions and not inv.regions[r].resources}
    if empty and lock is not None:
        lock.forget_regions(empty)
        regions = regions - empty
    outputs = _outputs_from(config, inv)
    save_state(opts.state_dir, config.stack, {
        "stack": config.stack, "slug": config.slug, "regions": sorted(regions),
        "config_hash": config.fingerprint(), "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ids": {f"{r.kind}/{r.region}/{r.name}": r.id for r in inv.live()},
        "outputs": outputs,
    })


def _outputs_from(config: Config, inv) -> dict:
    ips: dict[tuple[str, str], str] = {}
    for r in inv.live():
        if r.kind == "eip":
            ips[(r.cluster or "", r.name)] = r.data.get("public_ip")
    clusters = {}
    for c in config.clusters:
        hosts = {h: ips.get((c.name, h)) for h in c.hosts}
        clusters[c.name] = {"region": c.region, "hosts": hosts, "ips": [ip for ip in hosts.values() if ip]}
    return {"hostnames": list(config.hosts), "clusters": clusters}


def _need_consent(opts: RunOptions, command: str) -> None:
    if not opts.yes and not opts.interactive:
        raise ProvisionError(f"'provision {command}' needs --yes when not run on a terminal; nothing was changed.",
                             hint=f"review 'provision plan' first, then run 'provision {command} FILE --yes'")


def _execute(engine, plan, opts: RunOptions, *, skip=lambda a: False, on_result=None):
    from .engine import failures_message

    results = engine.execute(plan, skip=skip, on_result=on_result or (lambda r: None))
    failed = [r for r in results if r.result == "failed"]
    return results, (failures_message(results) if failed else None)


# ---------------------------------------------------------------------------------------------
# commands


@_aws_errors
def run_plan(config: Config, opts: RunOptions) -> int:
    engine = _engine(config, opts)
    engine.extra_regions = _known_regions(config, opts, engine)
    plan = engine.plan()
    _show_plan(config, opts, plan.actions)
    return 2 if (opts.detailed_exitcode and plan.actions) else 0


@_aws_errors
def run_apply(config: Config, opts: RunOptions) -> int:
    _need_consent(opts, "apply")
    with _locked_run(config, opts) as (engine, lock, regions):
        plan = engine.plan()
        if not plan.actions:
            if opts.output == "json":
                opts.echo(json.dumps({"stack": config.stack, "actions": []}))
            else:
                opts.echo(f"No changes. Stack '{config.stack}' matches its configuration.")
            _save(config, opts, engine, regions, lock)
            return 0
        if opts.output != "json":
            _show_plan(config, opts, plan.actions)
        if not opts.yes and not opts.confirm(f"Apply these {len(plan.actions)} action(s) to stack '{config.stack}'?"):
            opts.err("Apply cancelled; nothing was changed.")
            return 1
        lock.record_regions(set(config.regions))
        results, failure = _execute(engine, plan, opts)
        if opts.output == "json":
            opts.echo(json.dumps({"stack": config.stack,
                                  "actions": [dict(r.action.to_json(), result=r.result,
                                                   **({"error": r.error} if r.error else {})) for r in results]}))
        _save(config, opts, engine, regions, lock)
        if failure:
            raise ProvisionError(failure)
        if opts.output != "json":
            counts = {}
            for r in results:
                counts[r.action.op] = counts.get(r.action.op, 0) + 1
            done = {"create": "created", "update": "updated", "replace": "replaced", "delete": "deleted"}
            opts.echo("Apply complete: " + ", ".join(f"{n} {done[op]}" for op, n in sorted(counts.items())) + ".")
        return 0


@_aws_errors
def run_destroy(config: Config, opts: RunOptions) -> int:
    from .state import remove_state

    _need_consent(opts, "destroy")
    with _locked_run(config, opts) as (engine, lock, _):
        plan = engine.plan(destroy=True)
        if plan.actions:
            _show_plan(config, opts, plan.actions)
            if not opts.yes and not opts.confirm(f"Destroy everything stack '{config.stack}' owns "
                                                 f"({len(plan.actions)} action(s))?"):
                opts.err("Destroy cancelled; nothing was changed.")
                return 1
            results, failure = _execute(engine, plan, opts)
            if failure:
                raise ProvisionError(failure)
        lock.drop_table = True
        remove_state(opts.state_dir, config.stack)
        opts.echo(f"Stack '{config.stack}' destroyed: nothing left.")
        return 0


@_aws_errors
def run_reconcile(config: Config, opts: RunOptions) -> int:
    with _locked_run(config, opts) as (engine, lock, regions):
        plan = engine.plan()
        if not plan.actions:
            return 0
        lock.record_regions(set(config.regions))

        def line(r) -> None:
            d = dict(r.action.to_json(), result="failed" if r.result == "skipped" else r.result)
            if r.error:
                d["error"] = r.error
            opts.echo(json.dumps(d))

        results, failure = _execute(engine, plan, opts,
                                    skip=lambda a: a.destructive and not opts.allow_delete, on_result=line)
        _save(config, opts, engine, regions, lock)
        if failure:
            raise ProvisionError(failure)
        refused = [r for r in results if r.result == "refused"]
        if refused:
            opts.err(f"{len(refused)} deletion(s) refused (clusters, hosts or addresses): "
                     "run 'provision reconcile FILE --allow-delete' or 'provision apply' to remove them.")
            return 2
        return 0


@_aws_errors
def run_status(config: Config, opts: RunOptions) -> int:
    from .aws.discovery import tagdict

    engine = _engine(config, opts)
    inv = engine.discover(with_instances=True)
    dns: dict[str, list] = {}
    for p in engine.providers:
        if hasattr(p, "host_records"):
            dns = p.host_records(config)
    rows = []
    for c in config.clusters:
        ri = inv.regions.get(c.region)
        instances = {i["InstanceId"]: i for i in (ri.instances if ri else [])}
        group = next((r for r in (ri.resources if ri else []) if r.kind == "asg" and r.cluster == c.name), None)
        health = {i["InstanceId"]: i for i in (group.data.get("instances", []) if group else [])}
        addrs = {r.name: r for r in (ri.resources if ri else []) if r.kind == "eip" and r.cluster == c.name}
        for h in c.hosts:
            a = addrs.get(h)
            iid = a.data.get("instance_id") if a else None
            inst = instances.get(iid or "", {})
            t = tagdict(inst.get("Tags"))
            rows.append({
                "cluster": c.name, "host": h, "region": c.region,
                "eip": a.data.get("public_ip") if a else None,
                "instance": iid,
                "market": ("spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand") if inst else None,
                "az": inst.get("Placement", {}).get("AvailabilityZone") if inst else None,
                "dns": ", ".join(r.content for r in dns.get(h.lower(), [])) or None,
                "phase": t.get("provision:phase") if inst else None,
                "health": health.get(iid or "", {}).get("HealthStatus") if iid else None,
            })
        spare = [i for i in instances.values()
                 if tagdict(i.get("Tags")).get("provision:cluster") == c.name
                 and i["InstanceId"] not in {r["instance"] for r in rows}]
        for i in spare:
            rows.append({"cluster": c.name, "host": None, "region": c.region, "eip": None,
                         "instance": i["InstanceId"],
                         "market": "spot" if i.get("InstanceLifecycle") == "spot" else "on-demand",
                         "az": i.get("Placement", {}).get("AvailabilityZone"), "dns": None,
                         "phase": tagdict(i.get("Tags")).get("provision:phase"),
                         "health": health.get(i["InstanceId"], {}).get("HealthStatus")})
    if opts.output == "json":
        opts.echo(json.dumps({"stack": config.stack, "hosts": rows}))
    else:
        cols = ("cluster", "host", "instance", "market", "az", "eip", "dns", "phase", "health")
        table = [cols] + [tuple(str(r[k] if r[k] is not None else "-") for k in cols) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
        for row in table:
            opts.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


@_aws_errors
def run_output(config: Config, opts: RunOptions, name: str | None) -> int:
    from .aws.retry import call, error_code
    from .desired import api_key_secret

    engine = _engine(config, opts)
    inv = engine.discover()
    outputs = _outputs_from(config, inv)
    key = None
    for region in ([config.home_region] + list(config.regions)) if config.regions else []:
        try:
            key = call(engine.clients.client("secretsmanager", region), "get_secret_value",
                       SecretId=api_key_secret(config))["SecretString"]
            break
        except Exception as e:  # noqa: BLE001
            if error_code(e) not in ("ResourceNotFoundException", "InvalidRequestException"):
                raise
    if key is not None:
        outputs["api-key"] = key if opts.show_secrets else "[secret]"
    if name is not None:
        if name in outputs:
            value = outputs[name]
        elif name in outputs["clusters"]:
            value = outputs["clusters"][name]
        else:
            raise ProvisionError(f"no output named '{name}' in stack '{config.stack}'",
                                 hint="outputs: " + ", ".join(list(outputs) + list(outputs["clusters"])))
        opts.echo(value if isinstance(value, str) else json.dumps(value, indent=None if opts.output == "json" else 2))
        return 0
    if opts.output == "json":
        opts.echo(json.dumps(outputs))
    else:
        for k, v in outputs.items():
            opts.echo(f"{k}: {v if isinstance(v, str) else json.dumps(v)}")
    return 0


def run_userdata(config: Config, opts: RunOptions, cluster: str) -> int:
    from .desired import render_user_data

    try:
        c = config.cluster(cluster)
    except KeyError:
        raise ProvisionError(f"{config.path}: no cluster named '{cluster}'",
                             hint="clusters: " + ", ".join(x.name for x in config.clusters)) from None
    opts.echo(render_user_data(config, c).rstrip("\n"))
    return 0
