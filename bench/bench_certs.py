"""Benchmark: certificates for 20 hosts (2 regions, 2 parent names) through ACME DNS-01 against
pebble, and the calls of a no-op plan with certificates.

Counts ACME HTTP requests (by wrapping the acme client's request sender: instrumentation only),
Cloudflare calls (the emulator's log) and AWS calls (the fault layer's log).
    python bench/bench_certs.py
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from acme import client as acme_client

from provisioner.certs import plan as P
from provisioner.certs.provider import CertificateProvider
from provisioner.config import load_config
from provisioner.emulators.aws import AwsEmulator
from provisioner.emulators.cloudflare import CloudflareEmulator
from provisioner.emulators.pebble import Pebble
from provisioner.engine import Engine

ACME = Counter()
_orig = acme_client.ClientNetwork._send_request


def _counting(self, method, url, *args, **kwargs):
    ACME[method] += 1
    return _orig(self, method, url, *args, **kwargs)


acme_client.ClientNetwork._send_request = _counting


def config(folder: Path, directory: str):
    doc = {"stack": {"domain-name": "example.com", "ami": "ami-1e749f67", "image": "ghcr.io/example/c3:b1",
                     "acme_directory": directory}}
    for i, region in enumerate(["us-east-1", "eu-west-1"]):
        hosts = [f"h{j}.example.com" for j in range(i * 5, i * 5 + 5)]
        hosts += [f"h{j}.lab.example.com" for j in range(i * 5, i * 5 + 5)]
        doc[f"c{i}"] = {"region": region, "type": "g5.xlarge", "hosts": hosts, "root_volume_gb": 100,
                        "model_config": {"api_name": "m", "model_repo": "o/r", "model_pattern": "*.gguf",
                                         "model_file": "m.gguf"}}
    p = folder / "bench.asg.yaml"
    p.write_text(yaml.safe_dump(doc))
    return load_config(p, env={})


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        aws = AwsEmulator(port=0).start()
        cf = CloudflareEmulator(port=0).start()
        pebble = Pebble(Path(d, "pebble")).start()
        try:
            cf.add_zone("example.com")
            os.environ.update(AWS_ENDPOINT_URL=aws.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                              AWS_DEFAULT_REGION="us-east-1", CLOUDFLARE_BASE_URL=cf.url,
                              CLOUDFLARE_API_TOKEN=cf.token, PROVISION_ACME_CA_BUNDLE=str(pebble.ca_bundle),
                              HF_HUB_OFFLINE="1", PROVISION_RETRY_SCALE="0.01")
            cfg = config(Path(d), pebble.directory)
            certs = P.desired_certs(cfg)
            # everything but certificates first, so the timing below is the certificates' alone
            Engine(cfg).execute(Engine(cfg).plan())
            ACME.clear()
            n_cf = len(cf.calls)
            eng = Engine(cfg, providers=[CertificateProvider()])
            t = time.perf_counter()
            results = eng.execute(eng.plan())
            issue_s = time.perf_counter() - t
            assert all(r.result == "ok" for r in results), [r.error for r in results if r.result != "ok"]
            acme_calls = sum(ACME.values())
            acme_by_method = dict(ACME)
            cf_calls = len(cf.calls) - n_cf
            ACME.clear()
            aws.clear_calls()
            n_cf = len(cf.calls)
            t = time.perf_counter()
            noop = Engine(cfg, providers=[CertificateProvider()]).plan()
            plan_s = time.perf_counter() - t
            assert not noop.actions, [a.to_json() for a in noop.actions]
            by_action = Counter(f"{c.service}:{c.action}" for c in aws.calls)
            print(f"hosts: 20 in 2 regions; certificates needed: {len(certs)} "
                  f"({', '.join(n for c in certs for n in c.names)})")
            print(f"issue + store in 2 regions: {issue_s:.2f} s wall, {acme_calls} ACME requests "
                  f"(by method {acme_by_method}), {cf_calls} Cloudflare calls (challenge records add/remove/cleanup)")
            print(f"no-op plan with certificates: {plan_s:.2f} s, {len(aws.calls)} AWS calls, "
                  f"{sum(ACME.values())} ACME requests, {len(cf.calls) - n_cf} Cloudflare calls")
            print(f"  of which secretsmanager:ListSecrets = {by_action['secretsmanager:ListSecrets']} "
                  f"(the certificate kind's one list per region)")
        finally:
            pebble.stop()
            cf.stop()
            aws.stop()


if __name__ == "__main__":
    main()
