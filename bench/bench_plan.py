"""AWS calls and wall time of a no-op plan for 1, 10, 50 and 200 clusters over 3 regions.

Runs the real engine against moto in server mode (our emulator, in-process server over HTTP).
Discovery is one tag-filtered, paginated describe per kind and region: the call count must not grow
with the number of clusters beyond pagination.

    python bench/bench_plan.py [--sizes 1,10,50,200]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGIONS = ("us-east-1", "eu-west-1", "us-west-2")


def config_text(n: int) -> str:
    lines = ["stack:", "  domain-name: example.com", "  ami: ami-1e749f67",
             "  image: ghcr.io/example/c3-llamacpp:b1", ""]
    for i in range(n):
        lines += [f"c{i:03d}:", f"  region: {REGIONS[i % len(REGIONS)]}", "  type: g5.xlarge",
                  "  hosts:", f"    - h{i:03d}.example.com", "  root_volume_gb: 100", "  model_config:",
                  "    api_name: m", "    model_repo: o/r", "    model_pattern: '*.gguf'", "    model_file: m.gguf", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,10,50,200")
    args = ap.parse_args()
    from provisioner.emulators.aws import AwsEmulator
    emu = AwsEmulator(port=0).start()
    os.environ.update(AWS_ENDPOINT_URL=emu.url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
                      AWS_SHARED_CREDENTIALS_FILE="/dev/null", HF_HUB_OFFLINE="1", PROVISION_RETRY_SCALE="0.05")
    from provisioner.app import RunOptions, run_apply
    from provisioner.aws.clients import Clients
    from provisioner.config import load_config
    from provisioner.engine import Engine
    print(f"{'clusters':>8} {'regions':>7} {'apply s':>8} {'plan calls':>10} {'plan s':>7}  calls by operation")
    try:
        for n in [int(x) for x in args.sizes.split(",")]:
            emu.reset()
            d = Path(tempfile.mkdtemp())
            p = d / "bench.asg.yaml"
            p.write_text(config_text(n))
            cfg = load_config(p, env={})
            t0 = time.monotonic()
            run_apply(cfg, RunOptions(state_dir=d / "state", yes=True, providers=[], echo=lambda m: None, err=lambda m: None))
            t_apply = time.monotonic() - t0
            clients = Clients()
            eng = Engine(cfg, clients)
            t0 = time.monotonic()
            plan = eng.plan()
            t_plan = time.monotonic() - t0
            assert plan.actions == [], [a.to_json() for a in plan.actions][:3]
            ops: dict[str, int] = {}
            for (svc, op), k in clients.calls.items():
                ops[op] = ops.get(op, 0) + k
            detail = " ".join(f"{op}={k}" for op, k in sorted(ops.items()))
            print(f"{n:>8} {len(cfg.regions):>7} {t_apply:>8.1f} {clients.total_calls():>10} {t_plan:>7.2f}  {detail}",
                  flush=True)
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
