"""The sandbox: local emulators of AWS (moto + our fault layer) and Cloudflare, in ONE background
process (`python -m provisioner.emulators serve`), so every command can run with no cloud account.

Files in the sandbox directory (default ~/.cache/provision/sandbox, or PROVISION_SANDBOX_DIR):
  sandbox.pid   the emulator process id
  ports.json    written by that process once both emulators answer (URLs, token, zone ids)
  sandbox.log   its stdout/stderr
  services.json pids of extra services started through `register_service` hooks (pebble, later)

API (what `provision sandbox up|down|env` and `--sandbox` call):
  up(sandbox_dir=None, timeout=90) -> str        start if not running (idempotent); a summary line
  down(sandbox_dir=None) -> str                   stop it and its extra services; a summary line
  env(sandbox_dir=None) -> dict[str, str]         the variables, for a running sandbox
  env_exports(sandbox_dir=None) -> str            `export K=V` lines (starts the sandbox if needed)
  ensure_running(sandbox_dir=None) -> dict        up() then env()
  status(sandbox_dir=None) -> dict | None         ports.json of a healthy sandbox, else None
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from .errors import ProvisionError

SANDBOX_ZONE = "example.com"
AWS_REGION = "us-east-1"
PREFERRED_AWS_PORT = 45660
PREFERRED_CLOUDFLARE_PORT = 45661

# Hook for extra services (the ACME server comes with the certificates work): a starter gets the
# sandbox directory, starts its process (in its own session), and returns (pid, env additions).
ServiceStarter = Callable[[Path], "tuple[int, dict[str, str]] | None"]
_SERVICES: dict[str, ServiceStarter] = {}
BUILTIN_SERVICE_MODULES = ("pebble",)  # provisioner/emulators/<name>.py with a `sandbox_start`


def register_service(name: str, starter: ServiceStarter) -> None:
    """Start `starter` with the sandbox from now on; its env joins env(); down() stops its pid."""
    _SERVICES[name] = starter


def sandbox_dir(path: str | os.PathLike[str] | None = None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get("PROVISION_SANDBOX_DIR")
    return Path(env) if env else Path.home() / ".cache" / "provision" / "sandbox"


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(d / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _read_pid(d: Path) -> int | None:
    try:
        return int((d / "sandbox.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_provision/health", timeout=3) as r:
            return json.loads(r.read()).get("ok") is True
    except (OSError, ValueError):
        return False


def status(path: str | os.PathLike[str] | None = None) -> dict | None:
    """The ports.json of a running, answering sandbox; None when it is not running."""
    d = sandbox_dir(path)
    pid = _read_pid(d)
    if pid is None or not _pid_alive(pid):
        return None
    try:
        info = json.loads((d / "ports.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("pid") != pid:
        return None
    if not (_healthy(info["aws_url"]) and _healthy(info["cloudflare_root"])):
        return None
    return info


def _log_tail(d: Path, n: int = 15) -> str:
    try:
        return "\n".join((d / "sandbox.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop_pid(pid: int, timeout: float = 10) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)  # the process leads its own session
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _summary(info: dict) -> str:
    zones = ", ".join(f"{z} ({i})" for z, i in info.get("zones", {}).items())
    return (f"sandbox running (pid {info['pid']}): AWS {info['aws_url']}, Cloudflare "
            f"{info['cloudflare_url']}, zone {zones}. Use: eval \"$(provision sandbox env)\"")


def up(path: str | os.PathLike[str] | None = None, timeout: float = 90) -> str:
    """Start the emulators in the background unless they run already. Returns a summary line."""
    d = sandbox_dir(path)
    with _locked(d):
        info = status(d)
        if info is not None:
            return _summary(info)
        old = _read_pid(d)
        if old is not None and _pid_alive(old):  # alive but not answering: replace it
            _stop_pid(old)
        for f in ("sandbox.pid", "ports.json"):
            with contextlib.suppress(FileNotFoundError):
                (d / f).unlink()
        log = open(d / "sandbox.log", "ab")
        cmd = [sys.executable, "-m", "provisioner.emulators", "serve", "--dir", str(d),
               "--aws-port", str(PREFERRED_AWS_PORT), "--cloudflare-port", str(PREFERRED_CLOUDFLARE_PORT),
               "--zone", SANDBOX_ZONE]
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, close_fds=True)
        log.close()
        (d / "sandbox.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while True:
            info = status(d)
            if info is not None:
                break
            if proc.poll() is not None:
                raise ProvisionError(f"sandbox: the emulator process exited with {proc.returncode}; "
                                     f"log {d / 'sandbox.log'}:\n{_log_tail(d)}",
                                     hint="check that moto[server] is installed: pip install 'provision[sandbox]'")
            if time.monotonic() > deadline:
                _stop_pid(proc.pid)
                raise ProvisionError(f"sandbox: the emulators did not answer within {timeout:.0f}s; "
                                     f"log {d / 'sandbox.log'}:\n{_log_tail(d)}")
            time.sleep(0.2)
        _start_services(d)
        return _summary(info)


def _builtin_services() -> dict[str, ServiceStarter]:
    """Services shipped in the package: a module of provisioner.emulators that defines
    `sandbox_start(sandbox_dir: Path) -> (pid, env) | None` (None: not available here) joins."""
    import importlib

    out: dict[str, ServiceStarter] = {}
    for name in BUILTIN_SERVICE_MODULES:
        try:
            mod = importlib.import_module(f"provisioner.emulators.{name}")
        except ImportError:
            continue
        start = getattr(mod, "sandbox_start", None)
        if callable(start):
            out[name] = start
    return out


def _start_services(d: Path) -> None:
    services: dict[str, dict] = {}
    for name, starter in {**_builtin_services(), **_SERVICES}.items():
        got = starter(d)
        if got is None:
            continue
        pid, extra_env = got
        services[name] = {"pid": pid, "env": extra_env}
    (d / "services.json").write_text(json.dumps(services, indent=2))


def _services(d: Path) -> dict[str, dict]:
    try:
        return json.loads((d / "services.json").read_text())
    except (OSError, ValueError):
        return {}


def down(path: str | os.PathLike[str] | None = None) -> str:
    """Stop the emulators and extra services (their state is lost). Returns a summary line."""
    d = sandbox_dir(path)
    if not d.exists():
        return "sandbox not running"
    with _locked(d):
        pid = _read_pid(d)
        stopped = []
        for name, svc in _services(d).items():
            if svc.get("pid") and _pid_alive(int(svc["pid"])):
                _stop_pid(int(svc["pid"]))
                stopped.append(name)
        if pid is not None and _pid_alive(pid):
            _stop_pid(pid)
            stopped.insert(0, f"emulators (pid {pid})")
        for f in ("sandbox.pid", "ports.json", "services.json"):
            with contextlib.suppress(FileNotFoundError):
                (d / f).unlink()
    return "sandbox stopped: " + ", ".join(stopped) if stopped else "sandbox not running"


def env(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The environment that points boto3, the aws CLI and the Cloudflare SDK at a running sandbox."""
    d = sandbox_dir(path)
    info = status(d)
    if info is None:
        raise ProvisionError(f"sandbox is not running (directory {d})", hint="run 'provision sandbox up'")
    out = {
        "AWS_ENDPOINT_URL": info["aws_url"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": AWS_REGION,
        "CLOUDFLARE_BASE_URL": info["cloudflare_url"],
        "CLOUDFLARE_API_TOKEN": info["token"],
    }
    for svc in _services(d).values():
        out.update(svc.get("env") or {})
    return out


def ensure_running(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Start the sandbox if needed; return the variables to use it (for `--sandbox`).

    The caller also drops AWS_PROFILE / AWS_SESSION_TOKEN from its environment if set, so that
    a real profile never mixes with the sandbox's throwaway keys; this function returns only
    what to set.
    """
    up(path)
    return env(path)


def env_exports(path: str | os.PathLike[str] | None = None) -> str:
    """`export` lines for a shell (`eval "$(provision sandbox env)"`); starts the sandbox if needed."""
    values = ensure_running(path)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    lines.append("unset AWS_PROFILE AWS_SESSION_TOKEN")
    return "\n".join(lines)
