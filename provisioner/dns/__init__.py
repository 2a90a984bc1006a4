"""Cloudflare DNS: one owned A record per host, pointing at its Elastic IP (issue 4).

records.py  pure: DesiredRecord, LiveRecord, plan_dns, DnsConflictError, ownership comments
client.py   the SDK client, cf_call (429 waits Retry-After), zone lookup, discovery (one list)
provider.py DnsProvider / DnsExecutor: the engine's Provider for kind "dns-record"
"""
from .client import RetryPolicy, cf_call, find_zone, list_records, make_client
from .provider import DnsExecutor, DnsProvider, desired_records
from .records import (KIND, DesiredRecord, DnsConflictError, LiveRecord, classify, engine_resources,
                      owner_comment, owner_prefix, plan_dns)

__all__ = ["KIND", "DesiredRecord", "DnsConflictError", "DnsExecutor", "DnsProvider", "LiveRecord",
           "RetryPolicy", "cf_call", "classify", "desired_records", "engine_resources", "find_zone",
           "list_records", "make_client", "owner_comment", "owner_prefix", "plan_dns"]
