"""AWS emulator: moto in server mode behind a WSGI layer of ours.

The layer
- records every call as (service, action): the service from the SigV4 credential scope, the action
  from the X-Amz-Target header (JSON protocols) or the Action form/query parameter (query protocols);
- injects faults on demand: throttle the next N calls of an action (answered in the service's own
  protocol: `RequestLimitExceeded` for EC2, `Throttling` for query APIs, `ThrottlingException` for
  JSON APIs, HTTP 400), fail the k-th mutating call before moto sees it (500 InternalError), "lose the
  answer" of the k-th mutating call (moto applies it, the client gets 500), throttle a seeded random
  fraction of all calls, add latency per call;
- answers the autoscaling actions moto does not implement (CompleteLifecycleAction,
  RecordLifecycleActionHeartbeat, StartInstanceRefresh, DescribeInstanceRefreshes,
  CancelInstanceRefresh) with valid XML, and records them with their parameters.

Python API: `AwsEmulator(port=0).start()`, `.url`, `.calls`, `.faults.throttle(...)`, `.reset()`,
`.stop()`. HTTP control API on the same port (JSON), so another process can drive it:
`GET /_provision/calls`, `DELETE /_provision/calls`, `GET|POST|DELETE /_provision/faults`,
`POST /_provision/reset` (moto state + faults + calls). `RemoteAws(url)` is the client of that API.
"""
from __future__ import annotations

import io
import json
import random
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from ._server import BackgroundServer

MUTATING_EXEMPT_PREFIXES = ("Describe", "List", "Get")
CONTROL_PREFIX = "/_provision/"
DEFAULT_ACCOUNT = "123456789012"


def is_mutating(action: str | None) -> bool:
    """A mutating call is one whose action does not start with Describe/List/Get."""
    if not action or " " in action:  # unknown or REST ("GET /path"): count it as a read
        return False
    return not action.startswith(MUTATING_EXEMPT_PREFIXES)


@dataclass
class Call:
    """One recorded call."""

    service: str
    action: str
    region: str = ""
    status: int = 0
    fault: str | None = None  # None | "throttle" | "fail" | "lose" | "emulated"
    params: dict[str, str] = field(default_factory=dict)  # query-protocol form params only
    t: float = 0.0

    @property
    def mutating(self) -> bool:
        return is_mutating(self.action)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["mutating"] = self.mutating
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Call":
        d = dict(d)
        d.pop("mutating", None)
        return cls(**d)


@dataclass
class Rule:
    """A fault rule. It watches the calls that match it (service/action/mutating), lets `skip`
    of them through, then applies `kind` to the next `count` of them."""

    kind: str  # "throttle" | "fail" | "lose"
    action: str | None = None
    service: str | None = None
    mutating_only: bool = False
    skip: int = 0
    count: int = 1
    code: str | None = None  # error code override

    def matches(self, service: str, action: str) -> bool:
        if self.action is not None and self.action != action:
            return False
        if self.service is not None and self.service != service:
            return False
        if self.mutating_only and not is_mutating(action):
            return False
        return True


class FaultsBase:
    """The fault-arming API. `_send(spec)` is where a spec goes (local state or HTTP)."""

    def _send(self, spec: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def throttle(self, action: str | None = None, n: int = 1, *, service: str | None = None,
                 code: str | None = None) -> None:
        """Throttle the next `n` calls of `action` (any action when None)."""
        self._send({"rules": [dict(kind="throttle", action=action, service=service, count=n, code=code)]})

    def fail_mutating(self, k: int = 1, *, action: str | None = None, service: str | None = None,
                      n: int = 1) -> None:
        """Answer 500 InternalError to the k-th mutating call from now (1-based) without applying it."""
        self._send({"rules": [dict(kind="fail", action=action, service=service, mutating_only=True,
                                   skip=k - 1, count=n)]})

    def lose_answer(self, k: int = 1, *, action: str | None = None, service: str | None = None,
                    n: int = 1) -> None:
        """Let moto apply the k-th mutating call from now, then answer 500 InternalError."""
        self._send({"rules": [dict(kind="lose", action=action, service=service, mutating_only=True,
                                   skip=k - 1, count=n)]})

    def throttle_rate(self, fraction: float, seed: int = 0, actions: Iterable[str] | None = None) -> None:
        """Throttle a seeded random fraction of all calls (or of `actions`)."""
        self._send({"throttle_rate": fraction, "seed": seed,
                    "rate_actions": list(actions) if actions is not None else None})

    def latency(self, seconds: float) -> None:
        """Add `seconds` of latency to every call."""
        self._send({"latency": seconds})

    def clear(self) -> None:
        self._send({"clear": True})


class FaultState(FaultsBase):
    """The fault state of one emulator (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def _send(self, spec: dict[str, Any]) -> None:
        self.apply_spec(spec)

    def apply_spec(self, spec: dict[str, Any]) -> None:
        with self._lock:
            if spec.get("clear"):
                self.rules: list[Rule] = []
                self.rate = 0.0
                self.rate_actions: set[str] | None = None
                self.rng = random.Random(0)
                self.delay = 0.0
            for r in spec.get("rules") or []:
                r = {k: v for k, v in r.items() if v is not None or k in ("action", "service", "code")}
                self.rules.append(Rule(**r))
            if "throttle_rate" in spec:
                self.rate = float(spec["throttle_rate"])
                self.rng = random.Random(spec.get("seed", 0))
                ra = spec.get("rate_actions")
                self.rate_actions = set(ra) if ra is not None else None
            if "latency" in spec:
                self.delay = float(spec["latency"])

    def clear(self) -> None:  # type: ignore[override]
        self.apply_spec({"clear": True})

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"rules": [asdict(r) for r in self.rules if r.count > 0], "throttle_rate": self.rate,
                    "rate_actions": sorted(self.rate_actions) if self.rate_actions is not None else None,
                    "latency": self.delay}

    def decide(self, service: str, action: str) -> tuple[str | None, str | None, float]:
        """-> (fault kind or None, code override, delay seconds) for one call."""
        chosen: tuple[str | None, str | None] = (None, None)
        with self._lock:
            for r in self.rules:
                if r.count <= 0 or not r.matches(service, action):
                    continue
                if r.skip > 0:
                    r.skip -= 1
                    continue
                if chosen[0] is None:
                    chosen = (r.kind, r.code)
                    r.count -= 1
            self.rules = [r for r in self.rules if r.count > 0]
            if chosen[0] is None and self.rate > 0 and (
                    self.rate_actions is None or action in self.rate_actions):
                if self.rng.random() < self.rate:
                    chosen = ("throttle", None)
            return chosen[0], chosen[1], self.delay


# ---------------------------------------------------------------------------------------------
# request parsing and protocol-correct error answers


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        n = 0
    body = environ["wsgi.input"].read(n) if n > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _scope(environ: dict[str, Any]) -> tuple[str, str]:
    """(service, region) from the SigV4 credential scope."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:
        cred = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
        _key, _date, region, service, _term = cred.split("/")
        return service.lower(), region
    except (IndexError, ValueError):
        return "unknown", ""


def classify(environ: dict[str, Any], body: bytes) -> tuple[str, str, str, str, dict[str, str]]:
    """-> (service, region, action, protocol, form params). protocol: ec2 | query | json | rest."""
    service, region = _scope(environ)
    target = environ.get("HTTP_X_AMZ_TARGET")
    params: dict[str, str] = {}
    if target:
        return service, region, target.rsplit(".", 1)[-1], "json", params
    path = environ.get("PATH_INFO", "")
    if "/operation/" in path:  # smithy rpc-v2 (cbor)
        return service, region, path.rstrip("/").rsplit("/", 1)[-1], "json", params
    ctype = environ.get("CONTENT_TYPE", "")
    if ctype.startswith("application/x-www-form-urlencoded") and body:
        params = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                             keep_blank_values=True).items()}
    qs = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    action = params.get("Action") or (qs.get("Action") or [None])[0]
    if action:
        return service, region, action, ("ec2" if service == "ec2" else "query"), params
    return service, region, f"{environ.get('REQUEST_METHOD', 'GET')} {path}", "rest", {}


THROTTLE_CODES = {"ec2": "RequestLimitExceeded", "query": "Throttling", "json": "ThrottlingException",
                  "rest": "SlowDown"}


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_response(protocol: str, status: int, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    rid = str(uuid.uuid4())
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", rid),
                   ("x-amzn-ErrorType", code)]
    elif protocol == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{_xml_escape(message)}</Message></Error></Errors><RequestID>{rid}</RequestID>"
                f"</Response>").encode()
        headers = [("Content-Type", "text/xml")]
    else:
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>"
                f"{'Sender' if status < 500 else 'Receiver'}</Type><Code>{code}</Code><Message>"
                f"{_xml_escape(message)}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml")]
    reason = {400: "Bad Request", 500: "Internal Server Error", 404: "Not Found"}.get(status, "Error")
    return f"{status} {reason}", headers + [("Content-Length", str(len(body)))], body


# ---------------------------------------------------------------------------------------------
# autoscaling actions moto does not implement

AS_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


def _as_ok(action: str, result_xml: str = "") -> bytes:
    rid = str(uuid.uuid4())
    inner = f"<{action}Result>{result_xml}</{action}Result>" if result_xml else f"<{action}Result/>"
    return (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{AS_NS}\">{inner}"
            f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{action}Response>").encode()


class AutoscalingExtras:
    """State and answers for the autoscaling actions moto lacks."""

    ACTIONS = ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat", "StartInstanceRefresh",
               "DescribeInstanceRefreshes", "CancelInstanceRefresh")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.refreshes: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.lifecycle_actions: list[dict[str, str]] = []

    @staticmethod
    def _group(region: str, name: str) -> Any:
        try:
            from moto.autoscaling.models import autoscaling_backends
            return autoscaling_backends[DEFAULT_ACCOUNT][region or "us-east-1"].autoscaling_groups.get(name)
        except Exception:  # pragma: no cover - moto internals moved
            return True  # cannot check: accept

    def handle(self, action: str, region: str, p: dict[str, str]) -> tuple[int, bytes, str | None]:
        """-> (status, body, error code or None)."""
        group = p.get("AutoScalingGroupName", "")
        if not group or not self._group(region, group):
            return 400, b"", "ValidationError"
        if action in ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"):
            if not p.get("LifecycleHookName"):
                return 400, b"", "ValidationError"
            if action == "CompleteLifecycleAction" and p.get("LifecycleActionResult") not in ("CONTINUE", "ABANDON"):
                return 400, b"", "ValidationError"
            with self.lock:
                self.lifecycle_actions.append(dict(p, region=region))
            return 200, _as_ok(action), None
        key = (region, group)
        with self.lock:
            if action == "StartInstanceRefresh":
                for r in self.refreshes.get(key, []):
                    if r["Status"] in ("Pending", "InProgress"):
                        return 400, b"", "InstanceRefreshInProgress"
                rid = str(uuid.uuid4())
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self.refreshes.setdefault(key, []).insert(0, {
                    "InstanceRefreshId": rid, "AutoScalingGroupName": group, "Status": "Successful",
                    "StartTime": now, "EndTime": now, "PercentageComplete": "100",
                    "InstancesToUpdate": "0"})
                return 200, _as_ok(action, f"<InstanceRefreshId>{rid}</InstanceRefreshId>"), None
            if action == "CancelInstanceRefresh":
                for r in self.refreshes.get(key, []):
                    if r["Status"] in ("Pending", "InProgress"):
                        r["Status"] = "Cancelled"
                        return 200, _as_ok(action, f"<InstanceRefreshId>{r['InstanceRefreshId']}</InstanceRefreshId>"), None
                return 400, b"", "ActiveInstanceRefreshNotFound"
            # DescribeInstanceRefreshes
            items = "".join(
                "<member>" + "".join(f"<{k}>{_xml_escape(v)}</{k}>" for k, v in r.items()) + "</member>"
                for r in self.refreshes.get(key, []))
            return 200, _as_ok(action, f"<InstanceRefreshes>{items}</InstanceRefreshes>"), None


# ---------------------------------------------------------------------------------------------
# the WSGI layer


class FaultLayer:
    """WSGI middleware in front of moto's DomainDispatcherApplication."""

    def __init__(self, app: Callable[..., Any], reset_moto: Callable[[], None]):
        self.app = app
        self.reset_moto = reset_moto
        self.faults = FaultState()
        self.extras = AutoscalingExtras()
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    # -- recording
    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def reset(self) -> None:
        self.reset_moto()
        self.faults.clear()
        self.extras.reset()
        self.clear_calls()

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    # -- control API
    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")[len(CONTROL_PREFIX):].strip("/")
        body = _read_body(environ)
        status, out = "200 OK", {}  # type: tuple[str, Any]
        try:
            spec = json.loads(body) if body else {}
            if path == "calls" and method == "GET":
                out = {"calls": [c.to_json() for c in self.calls]}
            elif path == "calls" and method == "DELETE":
                self.clear_calls()
                out = {"ok": True}
            elif path == "faults" and method == "GET":
                out = self.faults.snapshot()
            elif path == "faults" and method == "POST":
                self.faults.apply_spec(spec)
                out = self.faults.snapshot()
            elif path == "faults" and method == "DELETE":
                self.faults.clear()
                out = {"ok": True}
            elif path == "reset" and method == "POST":
                self.reset()
                out = {"ok": True}
            elif path == "lifecycle-actions" and method == "GET":
                with self.extras.lock:
                    out = {"lifecycle_actions": list(self.extras.lifecycle_actions)}
            elif path == "health":
                out = {"ok": True}
            else:
                status, out = "404 Not Found", {"error": f"no control endpoint {method} /{path}"}
        except (ValueError, TypeError) as e:
            status, out = "400 Bad Request", {"error": str(e)}
        data = json.dumps(out).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response)
        if path.startswith("/moto-api") or path == "/favicon.ico":
            return self.app(environ, start_response)
        body = _read_body(environ)
        service, region, action, protocol, params = classify(environ, body)
        call = Call(service=service, action=action, region=region, t=time.time(),
                    params=params if protocol in ("query", "ec2") else {})
        kind, code, delay = self.faults.decide(service, action)
        if delay > 0:
            time.sleep(delay)
        if kind in ("throttle", "fail"):
            if kind == "throttle":
                status, code = 400, code or THROTTLE_CODES[protocol]
                msg = "Rate exceeded"
            else:
                status, code, msg = 500, code or "InternalError", "An internal error has occurred (injected)"
            call.status, call.fault = status, kind
            self._record(call)
            st, headers, data = error_response(protocol, status, code, msg)
            start_response(st, headers)
            return [data]
        if service == "autoscaling" and action in AutoscalingExtras.ACTIONS:
            status, data, err = self.extras.handle(action, region, params)
            if err:
                st, headers, data = error_response(protocol, status, err, f"{action}: invalid request")
            else:
                st, headers = "200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))]
            if kind == "lose":
                st, headers, data = error_response(protocol, 500, "InternalError", "answer lost (injected)")
                status = 500
            call.status, call.fault = status, (kind or "emulated")
            self._record(call)
            start_response(st, headers)
            return [data]
        captured: dict[str, Any] = {}

        def _sr(st: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = st, headers
            return lambda _b: None

        chunks = self.app(environ, _sr)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        status = int(str(captured.get("status", "500")).split()[0])
        if kind == "lose":
            call.status, call.fault = 500, "lose"
            self._record(call)
            st, headers, data = error_response(protocol, 500, "InternalError", "answer lost (injected)")
            start_response(st, headers)
            return [data]
        call.status = status
        self._record(call)
        headers = [(k, v) for k, v in captured.get("headers", []) if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(data))))
        start_response(captured.get("status", "500 Internal Server Error"), headers)
        return [data]


def _reset_moto_in_process() -> None:
    from moto.moto_api._internal.models import moto_api_backend
    moto_api_backend.reset()


def _patch_moto_launch_template_user_data() -> None:
    """moto 5.2 keeps a CreateLaunchTemplateVersion's UserData as a plain str, and then fails an
    assertion (HTTP 500) when an instance launches from version 2 or later. AWS stores it as given
    (base64): wrap it the way moto's CreateLaunchTemplate path does. Idempotent."""
    try:
        from moto.core.types import Base64EncodedString
        from moto.ec2.models.launch_templates import LaunchTemplateVersion
        from moto.ec2.utils import parse_user_data
    except ImportError:  # another moto: nothing to patch
        return
    if getattr(LaunchTemplateVersion, "_provision_patched", False):
        return

    def user_data(self):  # type: ignore[no-untyped-def]
        value = self.data.get("UserData")
        if value is not None and not isinstance(value, Base64EncodedString):
            value = self.data["UserData"] = parse_user_data(value)
        return value

    LaunchTemplateVersion.user_data = property(user_data)
    LaunchTemplateVersion._provision_patched = True


def make_app() -> FaultLayer:
    from moto.server import DomainDispatcherApplication, create_backend_app
    _patch_moto_launch_template_user_data()
    return FaultLayer(DomainDispatcherApplication(create_backend_app), _reset_moto_in_process)


class AwsEmulator(BackgroundServer):
    """moto server + our fault layer, on 127.0.0.1 in a background thread of this process."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.layer: FaultLayer | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log(self, *args: Any, **kwargs: Any) -> None:  # no access log on stderr
                pass

        self.layer = make_app()
        self._server = make_server(self.host, self.port, self.layer, threaded=True,
                                   request_handler=QuietHandler)
        self.port = self._server.server_address[1]

    def start(self) -> "AwsEmulator":
        self._make_server()
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Run in the calling thread (for the sandbox process)."""
        self._make_server()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def calls(self) -> list[Call]:
        assert self.layer is not None, "start() first"
        return self.layer.calls

    @property
    def faults(self) -> FaultState:
        assert self.layer is not None, "start() first"
        return self.layer.faults

    @property
    def lifecycle_actions(self) -> list[dict[str, str]]:
        assert self.layer is not None, "start() first"
        with self.layer.extras.lock:
            return list(self.layer.extras.lifecycle_actions)

    def clear_calls(self) -> None:
        assert self.layer is not None
        self.layer.clear_calls()

    def reset(self) -> None:
        """Reset moto state, faults and recorded calls."""
        assert self.layer is not None
        self.layer.reset()

    def actions(self, service: str | None = None) -> list[str]:
        """The recorded actions, in order (optionally of one service)."""
        return [c.action for c in self.calls if service is None or c.service == service]

    def __enter__(self) -> "AwsEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _RemoteFaults(FaultsBase):
    def __init__(self, remote: "RemoteAws"):
        self.remote = remote

    def _send(self, spec: dict[str, Any]) -> None:
        self.remote._req("POST", "faults", spec)


class RemoteAws:
    """Client of the control API of an emulator running in another process (the sandbox)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.faults = _RemoteFaults(self)

    def _req(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{CONTROL_PREFIX}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    @property
    def calls(self) -> list[Call]:
        return [Call.from_json(c) for c in self._req("GET", "calls")["calls"]]

    def clear_calls(self) -> None:
        self._req("DELETE", "calls")

    def reset(self) -> None:
        self._req("POST", "reset", {})

    def healthy(self) -> bool:
        try:
            return bool(self._req("GET", "health").get("ok"))
        except OSError:
            return False
