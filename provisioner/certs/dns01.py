"""DNS-01 challenge records in the stack's Cloudflare zone, through the official SDK.

Each record carries the comment `provision:{slug}/{stack}/acme`, so records a crashed run left
behind are found (one filtered list) and removed before the next issuance.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

from ..config import Config
from ..errors import CloudError


def _client():
    import cloudflare

    if not os.environ.get("CLOUDFLARE_API_TOKEN"):
        raise CloudError("CLOUDFLARE_API_TOKEN is not set: certificates are proven through DNS-01 in the "
                         "Cloudflare zone", hint="export CLOUDFLARE_API_TOKEN (Zone:DNS:Edit on the zone)")
    return cloudflare.Cloudflare(max_retries=0)


def _with_retry(fn: Callable[[], Any], attempts: int = 8) -> Any:
    """Cloudflare answers 429 with Retry-After; 5xx are transient too."""
    import cloudflare

    for i in range(attempts):
        try:
            return fn()
        except cloudflare.RateLimitError as exc:
            wait = float(exc.response.headers.get("retry-after", "1") or 1)
        except cloudflare.InternalServerError:
            wait = min(2 ** i * 0.2, 5)
        except cloudflare.AuthenticationError:
            raise CloudError("Cloudflare rejected CLOUDFLARE_API_TOKEN (403)",
                             hint="use a token with Zone:DNS:Edit on the stack's zone") from None
        if i == attempts - 1:
            break
        time.sleep(min(wait, 30))
    raise CloudError("Cloudflare kept answering 429/5xx; retry later")


class CloudflareTxt:
    def __init__(self, config: Config):
        self.config = config
        self.comment = f"provision:{config.slug}/{config.stack}/acme"
        self.cf = _client()
        self.zone_id = config.settings.cloudflare_zone_id or self._zone_by_name()

    def _zone_by_name(self) -> str:
        domain = self.config.settings.domain_name
        if not domain:
            raise CloudError("certificates need stack.domain-name (the Cloudflare zone)")
        labels = domain.split(".")
        for i in range(len(labels) - 1):  # the zone may be a parent of domain-name
            name = ".".join(labels[i:])
            page = _with_retry(lambda: self.cf.zones.list(name=name))
            for zone in page.result or []:
                if zone.name == name:
                    return zone.id
        raise CloudError(f"no Cloudflare zone found for domain-name {domain!r}",
                         hint="set stack.cloudflare-zone-id, or give the token Zone:Read")

    def cleanup(self) -> None:
        stale = _with_retry(lambda: list(self.cf.dns.records.list(
            zone_id=self.zone_id, type="TXT", comment={"exact": self.comment})))
        for rec in stale:
            self.remove(rec.id)

    def add(self, name: str, value: str) -> str:
        rec = _with_retry(lambda: self.cf.dns.records.create(
            zone_id=self.zone_id, type="TXT", name=name, content=f'"{value}"', ttl=60, comment=self.comment))
        return rec.id

    def remove(self, record_id: str) -> None:
        import cloudflare

        try:
            _with_retry(lambda: self.cf.dns.records.delete(dns_record_id=record_id, zone_id=self.zone_id))
        except cloudflare.NotFoundError:
            pass
