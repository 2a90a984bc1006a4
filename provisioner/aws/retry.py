"""The one retry policy: transient AWS error codes, jittered exponential backoff, bounded.

`call(client, "operation", **params)` retries throttling and server errors always, the NotFound of
eventual consistency only when `after_create=True`, DependencyViolation / ResourceInUse only when
`draining=True`. Anything else is raised at once.
"""
from __future__ import annotations

import os

from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, EndpointConnectionError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "ProvisionedThroughputExceededException", "SlowDown",
})
SERVER = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "InternalServiceError",
                    "InternalServerError", "ServiceUnavailableException", "Unavailable"})
DRAINING = frozenset({"DependencyViolation", "ResourceInUse", "ResourceInUseFault", "ScalingActivityInProgress",
                      "ScalingActivityInProgressFault", "InvalidIPAddress.InUse"})


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "") or ""
    return ""


def http_status(exc: BaseException) -> int:
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_transient(exc: BaseException, *, after_create: bool = False, draining: bool = False) -> bool:
    if isinstance(exc, (BotoConnectionError, EndpointConnectionError)):
        return True
    code = error_code(exc)
    if not code and not isinstance(exc, ClientError):
        return False
    if code in THROTTLING or code in SERVER or http_status(exc) >= 500:
        return True
    if after_create and ("NotFound" in code or code == "NoSuchEntity"):
        return True
    if after_create and code in ("InvalidParameterValue", "ValidationError") and "profile" in str(exc).lower():
        return True  # a brand-new instance profile is not yet visible to EC2 / Auto Scaling
    if draining and code in DRAINING:
        return True
    return False


def _scale() -> float:
    try:
        return float(os.environ.get("PROVISION_RETRY_SCALE", "1"))
    except ValueError:
        return 1.0


def retrying(*, after_create: bool = False, draining: bool = False, attempts: int | None = None) -> Retrying:
    scale = _scale()
    max_attempts = attempts or (40 if draining else 10)
    return Retrying(
        retry=retry_if_exception(lambda e: is_transient(e, after_create=after_create, draining=draining)),
        wait=wait_random_exponential(multiplier=0.25 * scale, max=(15 if draining else 8) * scale),
        stop=stop_after_attempt(max_attempts) | stop_after_delay(600 if draining else 120),
        reraise=True,
    )


def call(client, operation: str, *, after_create: bool = False, draining: bool = False, **params):
    """client.<operation>(**params) under the retry policy (operation in snake_case)."""
    fn = getattr(client, operation)
    for attempt in retrying(after_create=after_create, draining=draining):
        with attempt:
            return fn(**params)
    raise AssertionError("unreachable")


def paginate(client, operation: str, key: str, **params) -> list:
    """All items of a paginated list/describe call; each page under the retry policy."""
    out: list = []
    token_in, token_out = _token_names(client, operation)
    token = None
    while True:
        p = dict(params)
        if token:
            p[token_in] = token
        page = call(client, operation, **p)
        out.extend(page.get(key, []))
        token = page.get(token_out)
        if not token:
            return out


def _token_names(client, operation: str) -> tuple[str, str]:
    pager = client.meta.service_model.operation_model(client.meta.method_to_api_mapping[operation])
    names = set(pager.input_shape.members) if pager.input_shape else set()
    if "NextToken" in names:
        return "NextToken", "NextToken"
    if "Marker" in names:
        return "Marker", "Marker" if "Marker" in pager.output_shape.members else "NextMarker"
    return "NextToken", "NextToken"
