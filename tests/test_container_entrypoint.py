"""The container entrypoint against a local Hub endpoint (HF_ENDPOINT), run as `python
container/entrypoint.py` the way CONTRACT §6 says. What it execs is observed with a recording
program in place of llama-server (exact argv, environment, API key file); the real llama-server
runs in tests/test_container_e2e.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.container.fixtures import (flag_value, hub, read_record, recorder, server_bin,  # noqa: F401
                                      tiny_models)
from tests.container.procs import ENTRYPOINT, entrypoint_env, wait_until

pytestmark = pytest.mark.timeout(120)


def run(env: dict, args=(), timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ENTRYPOINT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def base_env(hub, tmp_path, prog, **kw):
    return entrypoint_env(hub.url if hub else None, tmp_path / "models", prog, 8080,
                          **{"API_NAME": "tiny", "MODEL_REPO": "org/tiny-GGUF",
                             "MODEL_PATTERN": "*Q4_0.gguf", "MODEL_FILE": "tiny-Q4_0.gguf", **kw})


def test_invalid_values_are_one_clear_error_before_anything_starts(hub, tmp_path, recorder):
    prog, out = recorder
    env = base_env(hub, tmp_path, prog, CTX_SIZE="lots", FLASH_ATTN="maybe", CACHE_TYPE_K="q3_k",
                   MLOCK="perhaps", PORT="70000", SPLIT_MODE="diagonal", NUMA="everywhere")
    del env["MODEL_FILE"]
    r = run(env)
    assert r.returncode == 2, r.stderr
    for needle in ("CTX_SIZE='lots': not an integer", "FLASH_ATTN='maybe'", "CACHE_TYPE_K='q3_k'",
                   "MLOCK='perhaps'", "PORT='70000'", "SPLIT_MODE='diagonal'", "NUMA='everywhere'",
                   "MODEL_FILE is required"):
        assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert hub.requests == []  # nothing started, nothing fetched


def test_variables_map_to_the_pinned_llama_server_flags(hub, tmp_path, recorder):
    prog, out = recorder
    env = base_env(hub, tmp_path, prog, FLASH_ATTN="true", MLOCK="true", CONT_BATCHING="true",
                   CACHE_TYPE_K="q8_0", CACHE_TYPE_V="q4_0", OVERRIDE_TENSOR=r".ffn_.*_exps.=CPU",
                   TENSOR_SPLIT="3,1", SPLIT_MODE="row", MAIN_GPU="1", NUMA="distribute",
                   GPU_LAYERS="all", LLAMA_API_KEY="sk-test-123", HF_TOKEN="hf_secret_token",
                   EXTRA_ARGS="--threads 2", PORT="9191", HOST="127.0.0.1")
    r = run(env, ["--verbose-prompt"])
    assert r.returncode == 0, r.stderr
    rec = read_record(out)
    argv = rec["argv"]
    assert flag_value(argv, "--model") == str(tmp_path / "models" / "tiny" / "tiny-Q4_0.gguf")
    assert flag_value(argv, "--alias") == "tiny"
    assert flag_value(argv, "--host") == "127.0.0.1" and flag_value(argv, "--port") == "9191"
    assert flag_value(argv, "--flash-attn") == "on"           # the seed's true means on
    assert flag_value(argv, "--load-mode") == "mmap+mlock"    # MLOCK via the load mode
    assert "--mlock" not in argv
    assert "--cont-batching" in argv
    assert flag_value(argv, "--cache-type-k") == "q8_0" and flag_value(argv, "--cache-type-v") == "q4_0"
    assert flag_value(argv, "--override-tensor") == r".ffn_.*_exps.=CPU"
    assert flag_value(argv, "--tensor-split") == "3,1" and flag_value(argv, "--split-mode") == "row"
    assert flag_value(argv, "--main-gpu") == "1" and flag_value(argv, "--numa") == "distribute"
    assert flag_value(argv, "--n-gpu-layers") == "all"
    assert argv[-3:] == ["--threads", "2", "--verbose-prompt"]  # EXTRA_ARGS, then our own args
    # The key reaches llama-server through --api-key-file, never on the command line or in env.
    assert rec["key_file_content"] == "sk-test-123\n"
    assert not any("sk-test-123" in a for a in argv)
    assert "LLAMA_API_KEY" not in rec["env"] and "HF_TOKEN" not in rec["env"]
    assert "sk-test-123" not in r.stderr and "hf_secret_token" not in r.stderr


def test_false_or_unset_booleans_leave_their_flags_out(hub, tmp_path, recorder):
    prog, out = recorder
    env = base_env(hub, tmp_path, prog, FLASH_ATTN="false", MLOCK="false", CONT_BATCHING="no")
    r = run(env)
    assert r.returncode == 0, r.stderr
    argv = read_record(out)["argv"]
    for flag in ("--flash-attn", "--load-mode", "--cont-batching", "--api-key-file", "--jinja",
                 "--cache-type-k", "--numa", "--split-mode", "--main-gpu"):
        assert flag not in argv
    # seed defaults, and host/port always passed (llama-server's own defaults differ)
    assert flag_value(argv, "--ctx-size") == "512"  # set by the test env
    assert flag_value(argv, "--batch-size") == "2048" and flag_value(argv, "--ubatch-size") == "512"
    assert flag_value(argv, "--host") == "127.0.0.1" and flag_value(argv, "--port") == "8080"
    env2 = base_env(hub, tmp_path, prog, FLASH_ATTN="auto")
    assert run(env2).returncode == 0
    assert flag_value(read_record(out)["argv"], "--flash-attn") == "auto"
    del env2["FLASH_ATTN"], env2["HOST"], env2["PORT"]
    assert run(env2).returncode == 0
    argv = read_record(out)["argv"]
    assert "--flash-attn" not in argv
    assert flag_value(argv, "--host") == "0.0.0.0" and flag_value(argv, "--port") == "8080"


def test_api_key_file_is_passed_as_a_file_and_checked(hub, tmp_path, recorder):
    prog, out = recorder
    keyfile = tmp_path / "api-key"
    keyfile.write_text("sk-from-file\r\n")
    keyfile.chmod(0o400)
    r = run(base_env(hub, tmp_path, prog, LLAMA_API_KEY_FILE=str(keyfile)))
    assert r.returncode == 0, r.stderr
    assert read_record(out)["key_file_content"] == "sk-from-file\n"  # CRLF from a secret file cleaned
    r = run(base_env(hub, tmp_path, prog, LLAMA_API_KEY_FILE=str(tmp_path / "absent")))
    assert r.returncode == 2 and "LLAMA_API_KEY_FILE" in r.stderr


def test_download_then_second_start_makes_no_network_call(hub, tmp_path, recorder):
    prog, out = recorder
    env = base_env(hub, tmp_path, prog,
                   CHAT_TEMPLATE_URL="https://huggingface.co/org/tiny-GGUF/raw/main/chat_template.jinja")
    r = run(env)
    assert r.returncode == 0, r.stderr
    model_dir = tmp_path / "models" / "tiny"
    assert (model_dir / "tiny-Q4_0.gguf").stat().st_size == hub.repos["org/tiny-GGUF"].files["tiny-Q4_0.gguf"].size
    assert not (model_dir / "README.md").exists()  # only what the pattern selects
    assert "sha256 verified" in r.stderr
    argv = read_record(out)["argv"]
    assert "--jinja" in argv and flag_value(argv, "--chat-template-file") == str(model_dir / "chat_template.jinja")
    assert (model_dir / "chat_template.jinja").read_text().startswith("{% for message")
    record = json.loads((model_dir / ".provision" / "complete.json").read_text())
    assert record["files"]["tiny-Q4_0.gguf"]["sha256"] == hub.repos["org/tiny-GGUF"].files["tiny-Q4_0.gguf"].sha256
    paths = [q.path for q in hub.requests]
    assert any(p.startswith("/api/models/org/tiny-GGUF/revision/main") for p in paths)
    assert any(p.startswith("/org/tiny-GGUF/raw/main/chat_template.jinja") for p in paths)

    hub.clear()
    r = run(env)
    assert r.returncode == 0, r.stderr
    assert hub.requests == []  # zero network calls: the completeness record, then offline
    assert "no network call" in r.stderr
    assert read_record(out)["env"].get("HF_HUB_OFFLINE") == "1"

    hub.stop()  # the Hub is down: still starts
    r = run(env)
    assert r.returncode == 0, r.stderr


def test_hub_down_without_a_complete_model_is_a_clear_error(hub, tmp_path, recorder):
    prog, _ = recorder
    env = base_env(hub, tmp_path, prog)
    hub.stop()
    r = run(env)
    assert r.returncode == 3
    assert "cannot reach the Hub" in r.stderr and "no completeness record" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_pattern_that_matches_nothing_lists_the_repository(hub, tmp_path, recorder):
    prog, _ = recorder
    r = run(base_env(hub, tmp_path, prog, MODEL_PATTERN="*Q5_K_M.gguf"))
    assert r.returncode == 3
    assert "MODEL_PATTERN '*Q5_K_M.gguf' matches no file in org/tiny-GGUF" in r.stderr
    assert "README.md, chat_template.jinja, tiny-Q4_0.gguf" in r.stderr


def test_a_model_file_outside_the_matches_lists_what_matched(hub, tmp_path, recorder):
    prog, _ = recorder
    r = run(base_env(hub, tmp_path, prog, MODEL_PATTERN="*.gguf,*.md", MODEL_FILE="tiny-Q8_0.gguf"))
    assert r.returncode == 3
    assert ("MODEL_FILE 'tiny-Q8_0.gguf' is not among the files MODEL_PATTERN '*.gguf', '*.md' "
            "matched in org/tiny-GGUF: README.md, tiny-Q4_0.gguf") in r.stderr


def test_a_shard_set_the_pattern_cuts_short_is_refused(hub, tmp_path, recorder):
    prog, _ = recorder
    r = run(base_env(hub, tmp_path, prog, API_NAME="split", MODEL_REPO="org/split-GGUF",
                     MODEL_PATTERN="Q8_0/*00001-of-*", MODEL_FILE="Q8_0/tiny-Q8_0-00001-of-00002.gguf"))
    assert r.returncode == 3
    assert "shard 1 of 2" in r.stderr and "Q8_0/tiny-Q8_0-00002-of-00002.gguf" in r.stderr


def test_two_shards_are_all_downloaded_and_shard_one_is_the_model(hub, tmp_path, recorder):
    prog, out = recorder
    r = run(base_env(hub, tmp_path, prog, API_NAME="split", MODEL_REPO="org/split-GGUF",
                     MODEL_PATTERN="Q8_0/*", MODEL_FILE="Q8_0/tiny-Q8_0-00001-of-00002.gguf"))
    assert r.returncode == 0, r.stderr
    d = tmp_path / "models" / "split" / "Q8_0"
    assert sorted(p.name for p in d.glob("*.gguf")) == ["tiny-Q8_0-00001-of-00002.gguf",
                                                        "tiny-Q8_0-00002-of-00002.gguf"]
    assert flag_value(read_record(out)["argv"], "--model") == str(d / "tiny-Q8_0-00001-of-00002.gguf")


def test_missing_and_gated_repos_say_what_to_do(hub, tmp_path, recorder):
    prog, out = recorder
    for repo in ("org/no-such-GGUF", "org/gated-GGUF"):
        r = run(base_env(hub, tmp_path, prog, API_NAME=repo.split("/")[1], MODEL_REPO=repo))
        assert r.returncode == 3, r.stderr
        assert f"cannot access model_repo {repo!r}" in r.stderr and "answered 401" in r.stderr
        assert "gated" in r.stderr and "HF_TOKEN" in r.stderr
    # with the token (from a token file, huggingface_hub's HF_TOKEN_PATH) the gated repo downloads
    token = tmp_path / "hf-token"
    token.write_text("hf_good")
    r = run(base_env(hub, tmp_path, prog, API_NAME="gated", MODEL_REPO="org/gated-GGUF",
                     HF_TOKEN_PATH=str(token)))
    assert r.returncode == 0, r.stderr
    auths = {q.path.split("/")[1]: q.authorization for q in hub.requests if q.method == "HEAD"}
    assert auths["org"] == "Bearer hf_good"
    cdn = [q for q in hub.requests if q.path.startswith("/_cdn/")]
    assert cdn and all(q.authorization is None for q in cdn)  # the token never leaves the Hub


def test_not_enough_disk_is_refused_before_downloading(hub, tmp_path, recorder):
    prog, _ = recorder
    huge = tmp_path / "huge.gguf"
    with open(huge, "wb") as f:
        f.truncate(15 * 2**40)  # sparse: 15 TiB on paper, nothing on disk
    hub.add_repo("org/huge-GGUF", {"huge.gguf": huge}, sha256s={"huge.gguf": "0" * 64})
    r = run(base_env(hub, tmp_path, prog, API_NAME="huge", MODEL_REPO="org/huge-GGUF",
                     MODEL_PATTERN="*.gguf", MODEL_FILE="huge.gguf"))
    assert r.returncode == 3
    assert "not enough disk space" in r.stderr and "15.00 TiB" in r.stderr
    assert not any(q.path.startswith("/_cdn/") for q in hub.requests)


def test_killed_mid_download_the_restart_resumes(hub, tmp_path, recorder):
    prog, out = recorder
    big = tmp_path / "big.gguf"
    big.write_bytes(os.urandom(8 << 20))
    hub.add_repo("org/big-GGUF", {"big-Q4_0.gguf": big})
    env = base_env(hub, tmp_path, prog, API_NAME="big", MODEL_REPO="org/big-GGUF",
                   MODEL_FILE="big-Q4_0.gguf")
    size = big.stat().st_size
    hub.rate = size / 6  # about six seconds for the file
    p = subprocess.Popen([sys.executable, str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    partial = tmp_path / "models" / "big" / ".provision" / "partial"
    try:
        wait_until(lambda: any(f.stat().st_size > size // 4 for f in partial.glob("*.part")),
                   timeout=30, what="a quarter of the file on disk")
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    log = p.stdout.read()
    assert "download:" in log and "ETA" in log  # progress lines while it moved
    kept = sum(f.stat().st_size for f in partial.glob("*.part"))
    assert size // 4 < kept < size
    hub.rate = None
    hub.clear()
    r = run(env)
    assert r.returncode == 0, r.stderr
    ranges = [q.range for q in hub.requests if q.path.startswith("/_cdn/") and q.method == "GET"]
    assert ranges and ranges[0].startswith("bytes=") and int(ranges[0][6:].split("-")[0]) >= kept - 1
    assert "resuming at" in r.stderr and "sha256 verified" in r.stderr
    assert not list(partial.glob("*.part"))


@pytest.mark.slow
def test_sigterm_reaches_the_server_because_the_entrypoint_execs(hub, tmp_path, server_bin):
    """exec: the entrypoint's pid becomes llama-server's, so a SIGTERM to it stops the server."""
    from tests.support import free_port
    from tests.container.procs import start_entrypoint
    import urllib.request

    port = free_port()
    env = base_env(hub, tmp_path, server_bin)
    env["PORT"] = str(port)
    proc = start_entrypoint(env, tmp_path / "entrypoint.log")
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200,
                   timeout=60, what="/health 200")
        exe = os.readlink(f"/proc/{proc.pid}/exe")
        assert os.path.basename(exe).startswith("llama-server")
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.p.wait(20)
        assert time.monotonic() - t0 < 20
        assert rc == 0, proc.output()[-2000:]
    finally:
        proc.terminate()


def test_a_token_path_naming_no_file_means_no_token(hub, tmp_path, recorder):
    prog, _ = recorder
    r = run(base_env(hub, tmp_path, prog, HF_TOKEN_PATH=str(tmp_path / "no-hf-token")))
    assert r.returncode == 0, r.stderr
    assert "does not exist: no Hub token" in r.stderr
    assert all(q.authorization is None for q in hub.requests)


def test_sigterm_during_the_download_stops_at_once_and_keeps_the_partial_file(hub, tmp_path, recorder):
    prog, out = recorder
    big = tmp_path / "big.gguf"
    big.write_bytes(os.urandom(4 << 20))
    hub.add_repo("org/big-GGUF", {"big-Q4_0.gguf": big})
    env = base_env(hub, tmp_path, prog, API_NAME="big", MODEL_REPO="org/big-GGUF",
                   MODEL_FILE="big-Q4_0.gguf")
    hub.rate = big.stat().st_size / 8
    p = subprocess.Popen([sys.executable, str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    partial = tmp_path / "models" / "big" / ".provision" / "partial"
    try:
        wait_until(lambda: any(f.stat().st_size > 0 for f in partial.glob("*.part")), timeout=30,
                   what="bytes on disk")
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
        assert time.monotonic() - t0 < 3
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    assert rc == 128 + signal.SIGTERM
    assert "partial downloads are kept" in p.stdout.read()
    assert any(f.stat().st_size > 0 for f in partial.glob("*.part"))
    assert not out.exists()  # llama-server never started


def test_a_hub_offering_xet_it_cannot_serve_falls_back_to_plain_http(hub, tmp_path, recorder, tiny_models):
    """The real hf_xet path is tried (the Hub advertises Xet) and fails at its token route; the
    file then comes over plain HTTP from the same redirect target, verified as usual."""
    prog, out = recorder
    hub.add_repo("org/xet-GGUF", {"tiny-Q4_0.gguf": tiny_models["single"][0]}, xet=True)
    r = run(base_env(hub, tmp_path, prog, API_NAME="xet", MODEL_REPO="org/xet-GGUF"))
    assert r.returncode == 0, r.stderr
    assert "via Xet" in r.stderr and "falling back to plain HTTP" in r.stderr
    assert "sha256 verified" in r.stderr
    paths = [q.path for q in hub.requests]
    assert any("/xet-read-token/" in p for p in paths)  # the Xet path really ran
    assert any(p.startswith("/_cdn/") for p in paths)
    assert read_record(out)["argv"][2].endswith("xet/tiny-Q4_0.gguf")
