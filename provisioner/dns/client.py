"""Cloudflare calls: the SDK client, a 429-aware retry, zone lookup and discovery.

The SDK's own retries are off (max_retries=0): `cf_call` is the one policy. A 429 waits what its
Retry-After says (capped), a 5xx or a connection error backs off exponentially; a 401/403 is a
clear error at once ("the token ..."), any other 4xx too, with Cloudflare's own messages.

Discovery is one paginated list per zone with no filter: the API takes one `type` per call, and
we need A, AAAA and CNAME (conflicts) plus our own records, so one unfiltered list of up to
PER_PAGE records a page is fewer calls than three filtered lists. Pages stop at `total_pages`
from result_info (the SDK's auto-pagination would add one more call for an empty page).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ..errors import CloudError, ProvisionError
from .records import LiveRecord

PER_PAGE = 5000
MAX_RETRY_AFTER = 60.0  # never sleep longer than this on one 429
T = TypeVar("T")


@dataclass
class RetryPolicy:
    attempts: int = 8  # per call, 429s and server errors together
    max_wait: float = 300.0  # total seconds of waiting per call
    base: float = 0.5  # first backoff of a 5xx / connection error
    sleep: Callable[[float], None] = time.sleep
    waited: list[float] = field(default_factory=list)  # every wait, for tests and figures


def _scale() -> float:
    try:
        return float(os.environ.get("PROVISION_RETRY_SCALE", "1"))
    except ValueError:
        return 1.0


def token_from_env() -> str:
    token = os.environ.get("CLOUDFLARE_API_TOKEN", "").strip()
    if not token:
        raise ProvisionError("CLOUDFLARE_API_TOKEN is not set: the stack has hosts, and their DNS records "
                             "live in Cloudflare",
                             hint="export CLOUDFLARE_API_TOKEN with a token that has Zone:DNS:Edit on the zone "
                                  "of domain-name (or use --sandbox)")
    return token


def make_client(token: str | None = None, base_url: str | None = None) -> Any:
    """A Cloudflare SDK client from the environment (CLOUDFLARE_API_TOKEN, CLOUDFLARE_BASE_URL)."""
    import cloudflare

    return cloudflare.Cloudflare(api_token=token or token_from_env(), base_url=base_url, max_retries=0,
                                 timeout=30.0)


def _errors_of(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("errors"):
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in body["errors"] if isinstance(e, dict))
    return str(exc)


def _retry_after(exc: Any) -> float | None:
    resp = getattr(exc, "response", None)
    if resp is None:
        return None
    for h, div in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        v = resp.headers.get(h)
        if v is not None:
            try:
                return max(0.0, float(v) / div)
            except ValueError:
                continue
    return None


def cf_call(what: str, fn: Callable[..., T], *args: Any, policy: RetryPolicy | None = None,
            before_retry: Callable[[], T | None] | None = None, **kwargs: Any) -> T:
    """fn(*args, **kwargs) under the retry policy. `what` names the call in errors.

    `before_retry`, when given, runs before each retry that follows a server error or a lost
    connection (the call may have been applied): a non-None result is taken as the call's.
    """
    import cloudflare

    pol = policy or RetryPolicy()
    waited = 0.0
    for attempt in range(1, pol.attempts + 1):
        lost = False
        try:
            return fn(*args, **kwargs)
        except cloudflare.RateLimitError as e:
            ra = _retry_after(e)
            delay = min(MAX_RETRY_AFTER, ra if ra is not None else pol.base * _scale() * 2 ** attempt)
            last: Exception = e
        except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as e:
            raise CloudError(f"Cloudflare refused the API token for {what} (HTTP {e.status_code}: {_errors_of(e)})",
                             hint="check CLOUDFLARE_API_TOKEN: it needs Zone:DNS:Edit (and Zone:Read) on the zone") from None
        except cloudflare.InternalServerError as e:
            delay, last, lost = pol.base * _scale() * 2 ** (attempt - 1) * (0.5 + random.random()), e, True
        except (cloudflare.APIConnectionError,) as e:  # includes timeouts
            delay, last, lost = pol.base * _scale() * 2 ** (attempt - 1) * (0.5 + random.random()), e, True
        except cloudflare.APIStatusError as e:
            raise CloudError(f"Cloudflare rejected {what} (HTTP {e.status_code}: {_errors_of(e)})") from None
        if attempt == pol.attempts or waited + delay > pol.max_wait:
            break
        pol.sleep(delay)
        pol.waited.append(delay)
        waited += delay
        if lost and before_retry is not None:
            done = before_retry()
            if done is not None:
                return done
    status = getattr(last, "status_code", None)
    raise CloudError(f"Cloudflare {what} still failing after {attempt} attempt(s) and {waited:.0f}s of waiting "
                     f"({'HTTP ' + str(status) + ': ' if status else ''}{_errors_of(last)})",
                     hint="Cloudflare is rate limiting or failing; run the command again later")


def find_zone(client: Any, domain: str, policy: RetryPolicy | None = None) -> str:
    """The id of the zone named `domain` (GET /zones?name=)."""
    domain = domain.lower().rstrip(".")
    page = cf_call(f"the lookup of zone {domain}", client.zones.list, name=domain, policy=policy)
    zones = [z for z in (page.result or []) if (z.name or "").lower() == domain]
    if not zones:
        raise ProvisionError(f"Cloudflare has no zone named '{domain}' that this token can see",
                             hint="set stack.cloudflare-zone-id, or give the token Zone:Read on that zone")
    return zones[0].id


def to_live(r: Any, zone_id: str) -> LiveRecord:
    ttl = getattr(r, "ttl", 1)
    return LiveRecord(id=r.id, name=(r.name or "").lower().rstrip("."), type=r.type, content=str(r.content),
                      ttl=int(ttl) if ttl is not None else 1, proxied=bool(getattr(r, "proxied", False)),
                      comment=getattr(r, "comment", None), zone_id=zone_id)


def list_records(client: Any, zone_id: str, policy: RetryPolicy | None = None,
                 per_page: int = PER_PAGE, types: tuple[str, ...] | None = None) -> list[LiveRecord]:
    """Every record of the zone (of `types`, filtered on our side), one paginated list."""
    out: list[LiveRecord] = []
    page_no = 1
    while True:
        page = cf_call(f"the list of DNS records of zone {zone_id}", client.dns.records.list, zone_id=zone_id,
                       page=page_no, per_page=per_page, policy=policy)
        rows = page.result or []
        out.extend(to_live(r, zone_id) for r in rows if types is None or r.type in types)
        info = page.result_info
        total_pages = getattr(info, "total_pages", None) if info is not None else None
        if not rows or (total_pages is not None and page_no >= int(total_pages)) or \
                (total_pages is None and len(rows) < per_page):
            return out
        page_no += 1
