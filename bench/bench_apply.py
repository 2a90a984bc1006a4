"""Apply of 20 clusters over 4 regions with 100 ms of latency injected per AWS call: parallel
(regions and clusters on a thread pool) against a single worker, as a ratio from one run.

    python bench/bench_apply.py [--clusters 20] [--latency 0.1] [--workers 8]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-1")


def config_text(n: int) -> str:
    lines = ["stack:", "  domain-name: example.com", "  ami: ami-1e749f67",
             "  image: ghcr.io/example/c3-llamacpp:b1", ""]
    for i in range(n):
        lines += [f"c{i:03d}:", f"  region: {REGIONS[i % len(REGIONS)]}", "  type: [g5.xlarge, g6.xlarge]",
                  "  hosts:", f"    - h{i:03d}a.example.com", f"    - h{i:03d}b.example.com", "  root_volume_gb: 100",
                  "  model_config:", "    api_name: m", "    model_repo: o/r", "    model_pattern: '*.gguf'",
                  "    model_file: m.gguf", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    import subprocess
    from provisioner.emulators.aws import RemoteAws
    from tests.support import free_port
    # the emulator runs in its own process, so its CPU does not share our interpreter's lock
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from provisioner.emulators.aws import AwsEmulator; "
                               f"AwsEmulator(port={port}).serve_forever()"], cwd=Path(__file__).resolve().parents[1])
    emu = RemoteAws(f"http://127.0.0.1:{port}")
    for _ in range(300):
        try:
            if emu.healthy():
                break
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.1)
    os.environ.update(AWS_ENDPOINT_URL=emu.url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
                      AWS_SHARED_CREDENTIALS_FILE="/dev/null", HF_HUB_OFFLINE="1")
    from provisioner.aws.clients import Clients
    from provisioner.config import load_config
    from provisioner.engine import Engine
    d = Path(tempfile.mkdtemp())
    p = d / "bench.asg.yaml"
    p.write_text(config_text(args.clusters))
    cfg = load_config(p, env={})
    timings = {}
    try:
        for label, workers in (("parallel", args.workers), ("single", 1)):
            emu.reset()
            emu.faults.latency(args.latency)
            clients = Clients()
            eng = Engine(cfg, clients, workers=workers)
            t0 = time.monotonic()
            plan = eng.plan()
            t_plan = time.monotonic() - t0
            results = eng.execute(plan)
            elapsed = time.monotonic() - t0
            bad = [r for r in results if r.result != "ok"]
            assert not bad, [(r.action.to_json(), r.error) for r in bad[:3]]
            emu.faults.clear()
            assert Engine(cfg, Clients()).plan().actions == []
            timings[label] = elapsed
            print(f"{label:>8}: workers={workers:<2} actions={len(plan.actions)} calls={clients.total_calls()} "
                  f"mutating={clients.mutating_calls()} wall={elapsed:.1f}s (plan {t_plan:.1f}s)", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"clusters={args.clusters} regions={len(cfg.regions)} latency={args.latency * 1000:.0f}ms/call: "
          f"single/parallel = {timings['single'] / timings['parallel']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
