"""`python -m provisioner.emulators serve --dir DIR`: both emulators in one foreground process.

Binds 127.0.0.1 only. Prefers the ports given (so exported URLs survive a restart), falls back to
free ones when taken. When both answer, writes DIR/ports.json atomically (mode 0600):
{"pid", "aws_url", "cloudflare_url", "cloudflare_root", "token", "zones": {name: id}}.
Stops on SIGTERM/SIGINT, removing ports.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from .aws import AwsEmulator
from .cloudflare import DEFAULT_TOKEN, CloudflareEmulator


def _start(factory, port: int):
    try:
        return factory(port).start()
    except (OSError, SystemExit):  # preferred port taken (werkzeug says so and exits)
        return factory(0).start()


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def serve(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m provisioner.emulators serve")
    ap.add_argument("--dir", required=True, help="sandbox directory (ports.json is written there)")
    ap.add_argument("--aws-port", type=int, default=0)
    ap.add_argument("--cloudflare-port", type=int, default=0)
    ap.add_argument("--zone", action="append", default=[], help="zone to pre-create (repeatable)")
    ap.add_argument("--token", default=DEFAULT_TOKEN)
    args = ap.parse_args(argv)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    aws = _start(lambda p: AwsEmulator(port=p), args.aws_port)
    cf = _start(lambda p: CloudflareEmulator(port=p, token=args.token), args.cloudflare_port)
    zones = {z: cf.add_zone(z) for z in (args.zone or ["example.com"])}
    ports = d / "ports.json"
    write_json_atomic(ports, {"pid": os.getpid(), "aws_url": aws.url, "cloudflare_url": cf.url,
                              "cloudflare_root": cf.root_url, "token": args.token, "zones": zones})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"aws {aws.url} cloudflare {cf.url}", flush=True)
    while not stop.wait(3600):
        pass
    try:
        ports.unlink()
    except FileNotFoundError:
        pass
    cf.stop()
    aws.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "serve":
        print("usage: python -m provisioner.emulators serve --dir DIR [--aws-port N] "
              "[--cloudflare-port N] [--zone NAME]... [--token T]", file=sys.stderr)
        return 2
    return serve(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
