"""A local IMDSv2 emulator, plus test-only stand-ins for an instance's HTTP side.

ImdsEmulator: one HTTP server on 127.0.0.1 with one *view* per emulated instance, at
`http://127.0.0.1:PORT/<key>` (an agent's `imds_url`), so several agents in one process each see
their own metadata. Like EC2's IMDSv2 it wants a token: PUT /latest/api/token with
X-aws-ec2-metadata-token-ttl-seconds (1..21600), then X-aws-ec2-metadata-token on every GET;
a GET without a valid token gets 401, a PUT with X-Forwarded-For gets 403 (as EC2 does). A view's
spot notice, rebalance recommendation and target lifecycle state can be switched mid-test.

LlamaStub and DrainFront are ONLY for agent tests and the agent bench: a tiny stand-in for
llama-server's OpenAI endpoint (/health, /v1/chat/completions, /slots) and for Traefik's drain
switch (503 while the agent's drain file says so, else forward). The real llama-server and Traefik
are tested by the container's tests; the agent only needs something that answers like them.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up is not news
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ImdsView:
    key: str
    url: str
    instance_id: str
    region: str = "us-east-1"
    az: str = "us-east-1a"
    instance_type: str = "g5.xlarge"
    tags: dict = field(default_factory=dict)
    spot_action: dict | None = None
    rebalance: dict | None = None
    target_lifecycle_state: str | None = "InService"
    gets: int = 0

    # switches for tests ------------------------------------------------------------
    def spot_notice(self, seconds: int = 120, action: str = "terminate") -> None:
        when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        self.spot_action = {"action": action, "time": _iso(when)}

    def rebalance_recommendation(self) -> None:
        self.rebalance = {"noticeTime": _iso(datetime.now(timezone.utc))}

    def terminate(self) -> None:
        self.target_lifecycle_state = "Terminated"

    def paths(self) -> dict:
        p = {
            "instance-id": self.instance_id,
            "instance-type": self.instance_type,
            "placement/region": self.region,
            "placement/availability-zone": self.az,
            "local-ipv4": "10.0.0.1",
        }
        if self.spot_action:
            p["spot/instance-action"] = json.dumps(self.spot_action)
            p["spot/termination-time"] = self.spot_action["time"]
        if self.rebalance:
            p["events/recommendations/rebalance"] = json.dumps(self.rebalance)
        if self.target_lifecycle_state:
            p["autoscaling/target-lifecycle-state"] = self.target_lifecycle_state
        if self.tags:
            p["tags/instance"] = "\n".join(sorted(self.tags))
            for k, v in self.tags.items():
                p[f"tags/instance/{k}"] = v
        return p


class ImdsEmulator:
    def __init__(self) -> None:
        self.views: dict[str, ImdsView] = {}
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.token_puts = 0
        self.unauthorized = 0
        self._lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "ImdsEmulator":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, instance_id: str, **kw) -> ImdsView:
        key = instance_id
        view = ImdsView(key=key, url=f"http://127.0.0.1:{self.port}/{key}",
                        instance_id=instance_id, **kw)
        with self._lock:
            self.views[key] = view
        return view

    def _handler(self):
        emu = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _split(self):
                parts = self.path.lstrip("/").split("/", 1)
                view = emu.views.get(parts[0])
                return view, "/" + (parts[1] if len(parts) > 1 else "")

            def do_PUT(self):
                view, path = self._split()
                if view is None or path != "/latest/api/token":
                    return self._send(404)
                if self.headers.get("X-Forwarded-For"):
                    return self._send(403)
                try:
                    ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
                except ValueError:
                    return self._send(400)
                if not 1 <= ttl <= 21600:
                    return self._send(400)
                token = secrets.token_urlsafe(32)
                with emu._lock:
                    emu.tokens[token] = time.monotonic() + ttl
                    emu.token_puts += 1
                self._send(200, token)

            def do_GET(self):
                view, path = self._split()
                if view is None:
                    return self._send(404)
                token = self.headers.get("X-aws-ec2-metadata-token")
                if not token or emu.tokens.get(token, 0) < time.monotonic():
                    emu.unauthorized += 1
                    return self._send(401)
                prefix = "/latest/meta-data/"
                if not path.startswith(prefix):
                    return self._send(404)
                view.gets += 1
                value = view.paths().get(path[len(prefix):].rstrip("/"))
                if value is None:
                    return self._send(404)
                self._send(200, value)

        return Handler


class _Server:
    def __init__(self, handler) -> None:
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LlamaStub(_Server):
    """Test-only stand-in for llama-server's HTTP API. state: down | loading | ok.

    `down` drops the connection (nothing listening yet, as while the model downloads).
    A chat completion takes `gen_seconds` and counts as in flight in /slots meanwhile.
    """

    def __init__(self, name: str, api_key: str | None = None, gen_seconds: float = 0.0) -> None:
        self.name, self.api_key, self.gen_seconds = name, api_key, gen_seconds
        self.state = "down"
        self.in_flight = 0
        self.completions = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, code: int, doc) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _gate(self) -> bool:
                if stub.state == "down":
                    self.close_connection = True
                    self.connection.close()
                    return False
                return True

            def do_GET(self):
                if not self._gate():
                    return
                if self.path == "/health":
                    if stub.state == "ok":
                        return self._json(200, {"status": "ok"})
                    return self._json(503, {"error": {"code": 503, "message": "Loading model"}})
                if self.path == "/slots":
                    n = stub.in_flight
                    return self._json(200, [{"id": i, "is_processing": i < n} for i in range(4)])
                self._json(404, {"error": "not found"})

            def do_POST(self):
                if not self._gate():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if stub.api_key and self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    return self._json(401, {"error": {"message": "Invalid API Key"}})
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": "not found"})
                if stub.state != "ok":
                    return self._json(503, {"error": {"message": "Loading model"}})
                with stub.lock:
                    stub.in_flight += 1
                try:
                    time.sleep(stub.gen_seconds)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                        stub.completions += 1
                self._json(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "model": body.get("model"),
                    "served_by": stub.name,
                    "choices": [{"index": 0, "finish_reason": "length",
                                 "message": {"role": "assistant", "content": "OK"}}],
                })

        super().__init__(Handler)


class DrainFront(_Server):
    """Test-only stand-in for Traefik's drain switch: 503 while `drain_file` exists (or holds
    the agent's drain_on text), else forwards the request to `backend`."""

    def __init__(self, drain_file: str, backend: str, drain_text: str | None = None) -> None:
        self.drain_file, self.backend, self.drain_text = drain_file, backend, drain_text
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _draining(self) -> bool:
                if not os.path.exists(front.drain_file):
                    return False
                if front.drain_text is None:
                    return True
                with open(front.drain_file, encoding="utf-8") as f:
                    return f.read() == front.drain_text

            def _reply(self, code: int, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, method: str):
                if self._draining():
                    return self._reply(503, b'{"error":"draining"}')
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                req = urllib.request.Request(front.backend + self.path, data=data, method=method,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() in ("content-type", "authorization")})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        return self._reply(r.status, r.read())
                except urllib.error.HTTPError as e:
                    return self._reply(e.code, e.read())
                except OSError:
                    return self._reply(502, b'{"error":"bad gateway"}')

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        super().__init__(Handler)
