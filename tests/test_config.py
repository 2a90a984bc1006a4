"""Valid configs: defaults, interpolation, secrets, examples, and a fuzz test that nothing crashes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.config import load_config
from provisioner.config.model import to_jsonable
from provisioner.config.schema_messages import load_schema
from provisioner.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.asg.yaml"))

MINIMAL = """
c1:
  region: us-east-1
  type: g5.xlarge
  hosts: [a.example.com]
  model_config:
    api_name: m
    model_repo: org/repo
    model_pattern: "*.gguf"
    model_file: m.gguf
"""


def write(tmp_path, text, name="dev.asg.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_seed_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), env={})
    assert cfg.stack == "dev"
    assert cfg.slug == "c3-llamacpp"
    assert cfg.settings.acme_directory == "https://acme-v02.api.letsencrypt.org/directory"
    c = cfg.clusters[0]
    assert (c.on_demand, c.types, c.dns_ttl, c.launch_timeout, c.health_check_grace) == (0, ("g5.xlarge",), 60, 7200, 300)
    m = c.model
    assert (m.ctx_size, m.gpu_layers, m.parallel, m.batch_size, m.ubatch_size) == (16384, 99, 4, 2048, 512)
    assert (m.cache_type_k, m.cache_type_v, m.cont_batching, m.flash_attn, m.mlock) == ("f16", "f16", False, False, False)
    assert cfg.home_region == "us-east-1"


def test_container_env_leaves_false_booleans_out(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), env={})
    env = cfg.clusters[0].model.container_env()
    assert "FLASH_ATTN" not in env and "MLOCK" not in env and "CONT_BATCHING" not in env
    assert env["API_NAME"] == "m" and env["CTX_SIZE"] == "16384"


def test_interpolation_and_secrets_never_show(tmp_path):
    text = MINIMAL.replace("model_file: m.gguf", "model_file: m.gguf\n    hf_token: ${TOK}") + \
        "stack:\n  api-key: ${KEY}\n  image: ghcr.io/x/y:${TAG}\n"
    cfg = load_config(write(tmp_path, text), env={"TOK": "hf_supersecret", "KEY": "k" * 32, "TAG": "b1"})
    assert cfg.settings.image == "ghcr.io/x/y:b1"
    assert cfg.clusters[0].model.hf_token.reveal() == "hf_supersecret"
    assert cfg.settings.api_key.reveal() == "k" * 32
    for rendering in (repr(cfg), str(cfg), json.dumps(to_jsonable(cfg)), cfg.fingerprint()):
        assert "hf_supersecret" not in rendering and "k" * 32 not in rendering
    assert "${TOK}" in repr(cfg.clusters[0].model.hf_token)


def test_escaped_dollar_is_literal(tmp_path):
    text = MINIMAL + "stack:\n  image: ghcr.io/x/y:$${TAG}\n"
    with pytest.raises(ConfigError):  # '${TAG}' is not a valid image tag, but no env lookup happened
        load_config(write(tmp_path, text), env={})


def test_destroy_mode_tolerates_unset_vars(tmp_path):
    text = MINIMAL.replace("model_file: m.gguf", "model_file: m.gguf\n    hf_token: ${NOT_SET_ANYWHERE}")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        load_config(write(tmp_path, text), env={})
    cfg = load_config(write(tmp_path, text), env={}, require_env=False)
    assert cfg.unresolved_vars == ("NOT_SET_ANYWHERE",)


def test_type_list_and_tensor_split_list(tmp_path):
    text = MINIMAL.replace("type: g5.xlarge", "type: [g5.xlarge, g6.xlarge]").replace(
        "model_file: m.gguf", "model_file: m.gguf\n    tensor_split: [3, 1]\n    flash_attn: auto")
    c = load_config(write(tmp_path, text), env={}).clusters[0]
    assert c.types == ("g5.xlarge", "g6.xlarge")
    assert c.model.tensor_split == "3,1"
    assert c.model.container_env()["FLASH_ATTN"] == "auto"


def test_yaml_merge_key_overrides(tmp_path):
    text = MINIMAL + """
c2:
  region: eu-west-1
  type: g5.xlarge
  hosts: [b.example.com]
  model_config:
    <<: {api_name: m, model_repo: org/repo, model_pattern: "*.gguf", model_file: m.gguf, ctx_size: 1}
    ctx_size: 2
"""
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.cluster("c2").model.ctx_size == 2
    assert cfg.regions == ("us-east-1", "eu-west-1")


def test_hosts_are_lowercased_and_apex_allowed(tmp_path):
    text = MINIMAL.replace("hosts: [a.example.com]", "hosts: [example.com]") + "stack:\n  domain-name: Example.com\n"
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.hosts == ("example.com",) and cfg.settings.domain_name == "example.com"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(path):
    cfg = load_config(path, env={"HF_TOKEN": "hf_example"})
    assert cfg.clusters


def test_examples_cover_the_seed():
    names = {p.name for p in EXAMPLES}
    assert {"dev.asg.yaml", "budget.asg.yaml", "kimi.asg.yaml", "multi-region.asg.yaml"} <= names


def _schema_keys():
    s = load_schema()
    keys = set(s["properties"]) | set(s["$defs"]["stack"]["properties"])
    keys |= set(s["$defs"]["cluster"]["properties"]) | set(s["$defs"]["model_config"]["properties"])
    return keys


def test_readme_config_reference_lists_every_schema_key():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\|\s*`([^`]+)`", section, flags=re.M))
    missing = sorted(_schema_keys() - documented)
    assert not missing, f"README's config reference lacks: {missing}"


# --- fuzz: no generated document makes validate crash ---------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(["us-east-1", "g5.xlarge", "a.example.com", "${X}",
                                                           "*.gguf", "m.gguf", "org/repo", "on", "auto"]))
keys = st.sampled_from(["region", "type", "hosts", "model_config", "on-demand", "azs", "api_name", "model_repo",
                        "model_pattern", "model_file", "stack", "slug", "domain-name", "c1", "ctx_size",
                        "flash_attn", "extra_args", "ssh_cidrs", "image", "ami"]) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                      max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(keys, values, max_size=4) | values)
def test_fuzz_never_crashes(tmp_path, document):
    path = tmp_path / "fuzz.asg.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_config(path, env={"X": "value"})
    except ConfigError as exc:
        assert str(exc).strip()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_raw_bytes_never_crash(tmp_path, raw):
    path = tmp_path / "fuzz.asg.yaml"
    path.write_bytes(raw)
    try:
        load_config(path, env={})
    except ConfigError as exc:
        assert str(exc).strip()
