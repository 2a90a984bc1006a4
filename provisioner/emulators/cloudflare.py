"""Cloudflare v4 API emulator: the subset the DNS code uses, answered in the v4 envelope.

Endpoints (under `/client/v4`, which is what CLOUDFLARE_BASE_URL points at):
  GET  /user/tokens/verify
  GET  /zones?name=&page=&per_page=            GET /zones/{zone_id}
  GET  /zones/{zone_id}/dns_records            filters: name (= name.exact), name.contains|startswith|
       endswith, type, content(.exact), comment(.exact|startswith|contains|endswith|present|absent),
       match=all|any, order, direction, page, per_page (5..5,000,000, default 100). A page past the
       end is an empty `result` (the SDK's auto-pagination stops only there).
  POST /zones/{zone_id}/dns_records            GET|PUT|PATCH|DELETE /zones/{zone_id}/dns_records/{id}
Errors: 403 (code 10000) on a missing or wrong token; 400 with Cloudflare's codes for invalid or
conflicting records (81053/81054 CNAME vs A/AAAA, 81058 identical record); injected 429 (code 971)
with Retry-After, 500 before a call, 500 after a write was applied (a lost answer). Every API call is recorded as (method, path, query).

Control API (JSON, not recorded): GET|DELETE /_provision/calls, POST|DELETE /_provision/faults,
POST /_provision/reset, POST /_provision/zones {"name"} -> zone, POST /_provision/records
{"zone_id", record...}. Python: `CloudflareEmulator(port=0).start()`, `.url`, `.token`,
`.add_zone()`, `.add_record()`, `.records()`, `.calls`, `.throttle()`, `.reset()`, `.stop()`.
"""
from __future__ import annotations

import ipaddress
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._server import BackgroundServer

API_PREFIX = "/client/v4"
CONTROL_PREFIX = "/_provision/"
DEFAULT_TOKEN = "sandbox-cloudflare-token"
MAX_PER_PAGE = 5_000_000
COMMENT_MAX = 100  # the free plan's limit
RECORD_TYPES = {"A", "AAAA", "CNAME", "TXT", "MX", "NS", "CAA", "SRV", "PTR", "HTTPS", "SVCB"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _hexid() -> str:
    return uuid.uuid4().hex


@dataclass
class CfCall:
    method: str
    path: str  # without /client/v4
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "query": self.query, "status": self.status,
                "fault": self.fault}


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class CloudflareState:
    """Zones, records, faults and recorded calls (thread-safe)."""

    def __init__(self, token: str = DEFAULT_TOKEN):
        self.token = token
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.zones: dict[str, dict[str, Any]] = {}
            self.records: dict[str, dict[str, dict[str, Any]]] = {}
            self.calls: list[CfCall] = []
            self.clear_faults()

    def clear_faults(self) -> None:
        with self.lock:
            self.throttle_left = 0
            self.throttle_retry_after = 1.0
            self.throttle_path: str | None = None
            self.fail_left = 0
            self.lose_left = 0
            self.latency = 0.0

    # -- zones and records (direct, not recorded)
    def add_zone(self, name: str, zone_id: str | None = None) -> dict[str, Any]:
        name = name.lower().rstrip(".")
        with self.lock:
            for z in self.zones.values():
                if z["name"] == name:
                    return z
            zid = zone_id or _hexid()
            z = {"id": zid, "name": name, "status": "active", "paused": False, "type": "full",
                 "development_mode": 0, "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                 "original_name_servers": [], "created_on": _now(), "modified_on": _now(),
                 "activated_on": _now(), "permissions": ["#dns_records:edit", "#dns_records:read"],
                 "account": {"id": "0" * 32, "name": "sandbox"}, "meta": {}, "owner": {"type": "user"},
                 "plan": {"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website"}}
            self.zones[zid] = z
            self.records[zid] = {}
            return z

    def zone(self, zone_id: str) -> dict[str, Any]:
        z = self.zones.get(zone_id)
        if z is None:
            raise ApiError(404, 7003, "Could not route to /zones/" + zone_id + ", perhaps your object identifier is invalid?")
        return z

    def add_record(self, zone_id: str, rec: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self._create(zone_id, rec)

    # -- record validation
    def _normalize(self, zone: dict[str, Any], body: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        rec = dict(existing or {})
        for k in ("name", "type", "content", "ttl", "proxied", "comment", "tags"):
            if k in body:
                rec[k] = body[k]
        for k in ("name", "type", "content"):
            if not rec.get(k):
                raise ApiError(400, 9000 + ("name", "type", "content").index(k) * 7 + 0,
                               f"DNS Validation Error: {k} is required")
        rtype = str(rec["type"]).upper()
        if rtype not in RECORD_TYPES:
            raise ApiError(400, 1004, f"DNS Validation Error: unsupported record type {rtype!r}")
        name = str(rec["name"]).lower().rstrip(".")
        if name == "@":
            name = zone["name"]
        elif not (name == zone["name"] or name.endswith("." + zone["name"])):
            name = f"{name}.{zone['name']}"
        content = str(rec["content"])
        try:
            if rtype == "A":
                ipaddress.IPv4Address(content)
            elif rtype == "AAAA":
                content = str(ipaddress.IPv6Address(content))
        except ValueError:
            raise ApiError(400, 9005, f"Content for {rtype} record is invalid. Must be a valid IPv{4 if rtype == 'A' else 6} address.")
        ttl = rec.get("ttl", 1)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not (ttl == 1 or 30 <= ttl <= 86400):
            raise ApiError(400, 9021, "Invalid TTL. Must be between 30 and 86400 seconds, or 1 for Automatic.")
        proxied = rec.get("proxied", False)
        if not isinstance(proxied, bool):
            raise ApiError(400, 9003, "Invalid 'proxied' value, must be a boolean")
        comment = rec.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX):
            raise ApiError(400, 9100, f"DNS record comment must be a string of at most {COMMENT_MAX} characters")
        if comment == "":
            comment = None
        return {"name": name, "type": rtype, "content": content, "ttl": ttl, "proxied": proxied,
                "comment": comment, "tags": list(rec.get("tags") or [])}

    def _check_conflicts(self, zone_id: str, rec: dict[str, Any], self_id: str | None) -> None:
        for other in self.records[zone_id].values():
            if other["id"] == self_id or other["name"] != rec["name"]:
                continue
            if rec["type"] == "CNAME" and other["type"] in ("A", "AAAA", "CNAME"):
                raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
            if rec["type"] in ("A", "AAAA") and other["type"] == "CNAME":
                raise ApiError(400, 81054, "A CNAME record with that host already exists.")
            if other["type"] == rec["type"] and other["content"] == rec["content"]:
                raise ApiError(400, 81058, "An identical record already exists.")

    def _full(self, zone_id: str, rec: dict[str, Any]) -> dict[str, Any]:
        z = self.zones[zone_id]
        return {"id": rec["id"], "zone_id": zone_id, "zone_name": z["name"], "name": rec["name"],
                "type": rec["type"], "content": rec["content"], "proxiable": rec["type"] in ("A", "AAAA", "CNAME"),
                "proxied": rec["proxied"], "ttl": rec["ttl"], "settings": {}, "meta": {},
                "comment": rec["comment"], "tags": rec["tags"], "created_on": rec["created_on"],
                "modified_on": rec["modified_on"], **({"comment_modified_on": rec["modified_on"]} if rec["comment"] else {})}

    def _create(self, zone_id: str, body: dict[str, Any]) -> dict[str, Any]:
        zone = self.zone(zone_id)
        rec = self._normalize(zone, body, None)
        self._check_conflicts(zone_id, rec, None)
        rec["id"] = _hexid()
        rec["created_on"] = rec["modified_on"] = _now()
        self.records[zone_id][rec["id"]] = rec
        return self._full(zone_id, rec)

    def _get(self, zone_id: str, rid: str) -> dict[str, Any]:
        self.zone(zone_id)
        rec = self.records[zone_id].get(rid)
        if rec is None:
            raise ApiError(404, 81044, "Record does not exist.")
        return rec

    def _update(self, zone_id: str, rid: str, body: dict[str, Any], partial: bool) -> dict[str, Any]:
        zone = self.zone(zone_id)
        old = self._get(zone_id, rid)
        if not partial:  # PUT replaces the record: absent optional fields go back to defaults
            base = {"name": old["name"], "type": old["type"]}
            rec = self._normalize(zone, {**base, **body}, None)
        else:
            rec = self._normalize(zone, body, old)
        self._check_conflicts(zone_id, rec, rid)
        rec.update(id=rid, created_on=old["created_on"], modified_on=_now())
        self.records[zone_id][rid] = rec
        return self._full(zone_id, rec)

    # -- listing
    @staticmethod
    def _match_str(value: str | None, op: str, arg: str) -> bool:
        v = (value or "")
        if op in ("present",):
            return bool(value)
        if op in ("absent",):
            return not value
        v, arg = v.lower(), arg.lower()
        return {"exact": v == arg, "contains": arg in v, "startswith": v.startswith(arg),
                "endswith": v.endswith(arg)}.get(op, False)

    def list_records(self, zone_id: str, q: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        zone = self.zone(zone_id)
        conds: list[tuple[str, str, str]] = []
        for key, val in q.items():
            fld, _, op = key.partition(".")
            if fld in ("name", "content", "comment"):
                op = op or "exact"
                if fld == "name" and op == "exact" and val and not val.endswith(zone["name"]):
                    val = f"{val}.{zone['name']}"
                conds.append((fld, op, val))
        if q.get("type"):
            conds.append(("type", "exact", q["type"]))
        match_any = q.get("match", "all") == "any"

        def ok(r: dict[str, Any]) -> bool:
            if not conds:
                return True
            res = [self._match_str(r.get(f), op, v) for f, op, v in conds]
            return any(res) if match_any else all(res)

        rows = [r for r in self.records[zone_id].values() if ok(r)]
        order = q.get("order", "type")
        if order in ("type", "name", "content", "ttl", "proxied"):
            rows.sort(key=lambda r: (str(r[order]), r["name"], r["id"]),
                      reverse=q.get("direction") == "desc")
        page, per_page = _paging(q)
        return [self._full(zone_id, r) for r in rows[(page - 1) * per_page: page * per_page]], \
            _result_info(page, per_page, len(rows), (page - 1) * per_page)


def _paging(q: dict[str, str], default: int = 100, maximum: int = MAX_PER_PAGE, minimum: int = 5) -> tuple[int, int]:
    try:
        page = int(float(q.get("page", 1)))
        per_page = int(float(q.get("per_page", default)))
    except ValueError:
        raise ApiError(400, 1004, "page and per_page must be numbers")
    if page < 1 or not (minimum <= per_page <= maximum):
        raise ApiError(400, 1004, f"Invalid pagination: page >= 1, {minimum} <= per_page <= {maximum}")
    return page, per_page


def _result_info(page: int, per_page: int, total: int, start: int) -> dict[str, Any]:
    count = max(0, min(per_page, total - start))
    return {"page": page, "per_page": per_page, "count": count, "total_count": total,
            "total_pages": (total + per_page - 1) // per_page}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cloudflare-emulator"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    state: CloudflareState  # set on the subclass

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, 6007, "Malformed JSON in request body")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        if path.startswith(CONTROL_PREFIX):
            try:
                status, obj = self._control(method, path[len(CONTROL_PREFIX):].strip("/"), self._body())
            except ApiError as e:
                status, obj = e.status, {"error": e.message}
            self._send(status, obj)
            return
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX):]
        st = self.state
        call = CfCall(method, path.rstrip("/") or "/", q)
        try:
            body = self._body() if method in ("POST", "PUT", "PATCH") else {}
            with st.lock:
                delay = st.latency
            if delay:
                time.sleep(delay)
            with st.lock:
                if st.throttle_left > 0 and (st.throttle_path is None or st.throttle_path in path):
                    st.throttle_left -= 1
                    call.fault = "throttle"
                    ra = st.throttle_retry_after
                    raise ApiError(429, 971, "Please wait and consider throttling your request speed",
                                   {"Retry-After": f"{ra:g}" if ra != int(ra) else str(int(ra))})
                if st.fail_left > 0:
                    st.fail_left -= 1
                    call.fault = "fail"
                    raise ApiError(500, 10001, "Internal server error (injected)")
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {st.token}":
                raise ApiError(403, 10000, "Authentication error")
            with st.lock:
                status, obj = self._api(method, path.strip("/").split("/"), q, body)
                if method != "GET" and st.lose_left > 0:
                    st.lose_left -= 1
                    call.fault = "lose"
                    raise ApiError(500, 10001, "Internal server error (injected after applying the change)")
        except ApiError as e:
            status = e.status
            obj = {"success": False, "errors": [{"code": e.code, "message": e.message}], "messages": [],
                   "result": None}
            call.status = status
            with st.lock:
                st.calls.append(call)
            self._send(status, obj, e.headers)
            return
        call.status = status
        with st.lock:
            st.calls.append(call)
        self._send(status, obj)

    @staticmethod
    def _ok(result: Any, info: dict[str, Any] | None = None) -> dict[str, Any]:
        out = {"success": True, "errors": [], "messages": [], "result": result}
        if info is not None:
            out["result_info"] = info
        return out

    def _api(self, method: str, parts: list[str], q: dict[str, str], body: Any) -> tuple[int, Any]:
        st = self.state
        if parts == ["user", "tokens", "verify"] and method == "GET":
            return 200, self._ok({"id": "ed17574386854bf78a67040be0a770b0", "status": "active"})
        if parts == ["zones"] and method == "GET":
            zones = sorted(st.zones.values(), key=lambda z: z["name"])
            if "name" in q:
                zones = [z for z in zones if z["name"] == q["name"].lower().rstrip(".")]
            page, per_page = _paging(q, default=20, maximum=50)
            start = (page - 1) * per_page
            return 200, self._ok(zones[start:start + per_page], _result_info(page, per_page, len(zones), start))
        if len(parts) == 2 and parts[0] == "zones" and method == "GET":
            return 200, self._ok(st.zone(parts[1]))
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zid = parts[1]
            if not isinstance(body, dict):
                raise ApiError(400, 9207, "Request body is invalid.")
            if len(parts) == 3:
                if method == "GET":
                    rows, info = st.list_records(zid, q)
                    return 200, self._ok(rows, info)
                if method == "POST":
                    return 200, self._ok(st._create(zid, body))
            elif len(parts) == 4:
                rid = parts[3]
                if method == "GET":
                    return 200, self._ok(st._full(zid, st._get(zid, rid)))
                if method in ("PUT", "PATCH"):
                    return 200, self._ok(st._update(zid, rid, body, partial=(method == "PATCH")))
                if method == "DELETE":
                    st._get(zid, rid)
                    del st.records[zid][rid]
                    return 200, self._ok({"id": rid})
        raise ApiError(404, 7000, f"No route for that URI ({method} /{'/'.join(parts)})")

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        st = self.state
        with st.lock:
            if path == "calls" and method == "GET":
                return 200, {"calls": [c.to_json() for c in st.calls]}
            if path == "calls" and method == "DELETE":
                st.calls.clear()
                return 200, {"ok": True}
            if path == "faults" and method == "POST":
                if "throttle" in body:
                    st.throttle_left = int(body["throttle"])
                    st.throttle_retry_after = float(body.get("retry_after", 1))
                    st.throttle_path = body.get("path")
                if "fail" in body:
                    st.fail_left = int(body["fail"])
                if "lose" in body:
                    st.lose_left = int(body["lose"])
                if "latency" in body:
                    st.latency = float(body["latency"])
                return 200, {"ok": True}
            if path == "faults" and method == "DELETE":
                st.clear_faults()
                return 200, {"ok": True}
            if path == "reset" and method == "POST":
                keep = body.get("keep_zones") if isinstance(body, dict) else None
                st.reset()
                for name in keep or []:
                    st.add_zone(name)
                return 200, {"ok": True}
            if path == "zones" and method == "POST":
                return 200, st.add_zone(body["name"], body.get("id"))
            if path == "zones" and method == "GET":
                return 200, {"zones": list(st.zones.values())}
            if path == "records" and method == "POST":
                body = dict(body)
                return 200, st.add_record(body.pop("zone_id"), body)
            if path == "health":
                return 200, {"ok": True}
        raise ApiError(404, 0, f"no control endpoint {method} /{path}")


class CloudflareEmulator(BackgroundServer):
    """The emulator on 127.0.0.1 in a background thread of this process."""

    def __init__(self, port: int = 0, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.state = CloudflareState(token)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return self.state.token

    def start(self) -> "CloudflareEmulator":
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="cloudflare-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The value for CLOUDFLARE_BASE_URL."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- direct state access (not recorded as API calls)
    def add_zone(self, name: str, zone_id: str | None = None) -> str:
        return self.state.add_zone(name, zone_id)["id"]

    def add_record(self, zone_id: str, **rec: Any) -> dict[str, Any]:
        return self.state.add_record(zone_id, rec)

    def records(self, zone_id: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return sorted((self.state._full(zone_id, r) for r in self.state.records[zone_id].values()),
                          key=lambda r: (r["name"], r["type"], r["content"]))

    @property
    def calls(self) -> list[CfCall]:
        with self.state.lock:
            return list(self.state.calls)

    def clear_calls(self) -> None:
        with self.state.lock:
            self.state.calls.clear()

    def throttle(self, n: int, retry_after: float = 1, path: str | None = None) -> None:
        """Answer 429 with Retry-After to the next `n` API calls (whose path contains `path`)."""
        with self.state.lock:
            self.state.throttle_left, self.state.throttle_retry_after, self.state.throttle_path = n, retry_after, path

    def fail(self, n: int = 1) -> None:
        """Answer 500 to the next `n` API calls."""
        with self.state.lock:
            self.state.fail_left = n

    def lose_answer(self, n: int = 1) -> None:
        """Apply the next `n` writes (POST/PUT/PATCH/DELETE), then answer 500."""
        with self.state.lock:
            self.state.lose_left = n

    def latency(self, seconds: float) -> None:
        with self.state.lock:
            self.state.latency = seconds

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def reset(self) -> None:
        """Drop zones, records, faults and calls."""
        self.state.reset()

    def __enter__(self) -> "CloudflareEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class RemoteCloudflare:
    """Client of the control API of an emulator in another process (the sandbox)."""

    def __init__(self, root_url: str):
        self.root_url = root_url.rstrip("/")
        if self.root_url.endswith(API_PREFIX):
            self.root_url = self.root_url[: -len(API_PREFIX)]

    def _req(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.root_url}{CONTROL_PREFIX}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    def add_zone(self, name: str) -> str:
        return self._req("POST", "zones", {"name": name})["id"]

    def zones(self) -> list[dict[str, Any]]:
        return self._req("GET", "zones")["zones"]

    def add_record(self, zone_id: str, **rec: Any) -> dict[str, Any]:
        return self._req("POST", "records", {"zone_id": zone_id, **rec})

    @property
    def calls(self) -> list[CfCall]:
        return [CfCall(**c) for c in self._req("GET", "calls")["calls"]]

    def throttle(self, n: int, retry_after: float = 1, path: str | None = None) -> None:
        self._req("POST", "faults", {"throttle": n, "retry_after": retry_after, "path": path})

    def fail(self, n: int = 1) -> None:
        self._req("POST", "faults", {"fail": n})

    def lose_answer(self, n: int = 1) -> None:
        self._req("POST", "faults", {"lose": n})

    def clear_faults(self) -> None:
        self._req("DELETE", "faults")

    def reset(self, keep_zones: list[str] | None = None) -> None:
        self._req("POST", "reset", {"keep_zones": keep_zones or []})

    def healthy(self) -> bool:
        try:
            return bool(self._req("GET", "health").get("ok"))
        except OSError:
            return False


def new_token() -> str:
    return "sandbox-" + secrets.token_hex(16)
