"""Cloudflare calls of a no-op DNS plan: 200 hosts in a zone of 1,000 foreign records.

    python bench/bench_dns.py [--hosts 200] [--foreign 1000]

Runs the Cloudflare emulator in this process and the real `cloudflare` SDK against it; prints
the number of API calls (and wall time) of: the first apply, a no-op plan with the zone id given,
a no-op plan with the zone looked up by domain-name, and, for comparison, the SDK's own
auto-pagination at its default page size (which also fetches an empty page to stop).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provisioner.dns import (DesiredRecord, DnsExecutor, DnsProvider, find_zone, list_records,  # noqa: E402
                             make_client, owner_comment, owner_prefix, plan_dns)
from provisioner.dns.records import CONFLICT_TYPES  # noqa: E402
from provisioner.emulators.cloudflare import CloudflareEmulator  # noqa: E402


class _Rc:
    config = clients = None

    @staticmethod
    def progress(msg: str) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--foreign", type=int, default=1000)
    args = ap.parse_args()
    emu = CloudflareEmulator().start()
    try:
        os.environ["CLOUDFLARE_BASE_URL"], os.environ["CLOUDFLARE_API_TOKEN"] = emu.url, emu.token
        zid = emu.add_zone("example.com")
        kinds = ("A", "AAAA", "TXT", "CNAME", "MX")
        for i in range(args.foreign):
            t = kinds[i % len(kinds)]
            content = {"A": f"198.51.{i // 256 % 256}.{i % 256}", "AAAA": f"2001:db8::{i:x}", "TXT": f"t{i}",
                       "CNAME": f"c{i}.example.net", "MX": "mail.example.com"}[t]
            emu.add_record(zid, name=f"f{i}.example.com", type=t, content=content)
        prefix = owner_prefix("c3-llamacpp", "bench")
        desired = [DesiredRecord(f"h{i}.example.com", f"192.0.{2 + i // 250}.{i % 250}", 60,
                                 owner_comment("c3-llamacpp", "bench", "c1"), "c1", "us-east-1", zid)
                   for i in range(args.hosts)]
        client = make_client()
        prov = DnsProvider(client=client)
        prov.zone_id = zid

        def plan(lookup: bool):
            z = find_zone(client, "example.com") if lookup else zid
            return plan_dns(desired, list_records(client, z, types=CONFLICT_TYPES), prefix)

        def measure(label: str, fn):
            emu.clear_calls()
            t = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t
            print(f"{label:58s} {len(emu.calls):5d} calls  {dt * 1000:8.1f} ms")
            return out

        print(f"zone: {args.foreign} foreign records + {args.hosts} of ours; hosts: {args.hosts}")
        ex = DnsExecutor(prov)
        measure("first apply (discovery + one POST per host)",
                lambda: [ex.run(_Rc, a) for a in plan(False)])
        acts = measure("no-op plan, cloudflare-zone-id given", lambda: plan(False))
        assert acts == [], acts
        acts = measure("no-op plan, zone looked up by domain-name", lambda: plan(True))
        assert acts == [], acts
        measure("(comparison) SDK auto-pagination, default per_page",
                lambda: list(client.dns.records.list(zone_id=zid)))
        desired[0] = DesiredRecord(desired[0].name, "203.0.113.9", 60, desired[0].comment, "c1", "us-east-1", zid)
        measure("one address changed: plan + PUT in place", lambda: [ex.run(_Rc, a) for a in plan(False)])
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
