"""Benchmark: `validate` of a 200-cluster file, in process and through the CLI.

Prints absolute figures and ratios measured in this one run (the machine is shared and noisy):
200 clusters against 1 cluster, and the CLI's start-up share.
    python bench/bench_validate.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from provisioner.config import load_config

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"]


def config_text(n: int) -> str:
    doc = {"stack": {"domain-name": "example.com", "image": "ghcr.io/example/c3-llamacpp:b1"}}
    for i in range(n):
        doc[f"cluster-{i:03d}"] = {
            "region": REGIONS[i % len(REGIONS)],
            "type": ["g5.xlarge", "g6.xlarge"],
            "on-demand": 1,
            "hosts": [f"h{i}-{j}.example.com" for j in range(3)],
            "model_config": {
                "api_name": f"model-{i}",
                "model_repo": "unsloth/DeepSeek-R1-0528-Qwen3-8B-GGUF",
                "model_pattern": "*Q4_0.gguf",
                "model_file": "DeepSeek-R1-0528-Qwen3-8B-Q4_0.gguf",
                "ctx_size": 8192,
                "flash_attn": True,
            },
        }
    return yaml.safe_dump(doc, sort_keys=False)


def timed(fn, reps: int) -> float:
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        small = Path(d, "one.asg.yaml")
        big = Path(d, "big.asg.yaml")
        small.write_text(config_text(1))
        big.write_text(config_text(200))
        load_config(small, env={})  # warm caches (schema, region list)
        t1 = timed(lambda: load_config(small, env={}), 20)
        t200 = timed(lambda: load_config(big, env={}), 10)
        cli = lambda p: subprocess.run([sys.executable, "-m", "provisioner", "validate", str(p)],  # noqa: E731
                                       check=True, capture_output=True)
        c1 = timed(lambda: cli(small), 5)
        c200 = timed(lambda: cli(big), 5)
        print(f"file size, 200 clusters (600 hosts): {big.stat().st_size / 1024:.0f} KiB")
        print(f"load_config  1 cluster : {t1 * 1000:8.1f} ms (median)")
        print(f"load_config 200 clusters: {t200 * 1000:8.1f} ms (median)  ratio 200/1 = {t200 / t1:.1f}x, "
              f"{t200 / 200 * 1000:.2f} ms per cluster")
        print(f"provision validate (CLI)  1 cluster : {c1 * 1000:8.1f} ms")
        print(f"provision validate (CLI) 200 clusters: {c200 * 1000:8.1f} ms  ratio 200/1 = {c200 / c1:.2f}x")


if __name__ == "__main__":
    main()
