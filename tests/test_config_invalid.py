"""Bad input: every invalid document gets one clear message naming the file and YAML path, exit 1,
no traceback and no network. Each row: (id, document, expected text in stderr)."""
from __future__ import annotations

import copy
import socket
import subprocess
import sys

import pytest
import yaml

from provisioner.cli import main

BASE = {
    "stack": {"domain-name": "example.com"},
    "c1": {
        "region": "us-east-1",
        "type": "g5.xlarge",
        "hosts": ["a.example.com", "b.example.com"],
        "model_config": {
            "api_name": "m",
            "model_repo": "org/repo",
            "model_pattern": "*Q4_0.gguf",
            "model_file": "m-Q4_0.gguf",
        },
    },
}


def doc(mutate) -> str:
    d = copy.deepcopy(BASE)
    mutate(d)
    return yaml.safe_dump(d, sort_keys=False)


def setk(path, value):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return f


def delk(path):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return f


def add_cluster(name, **over):
    def f(d):
        c = copy.deepcopy(BASE["c1"])
        c["hosts"] = ["z.example.com"]
        c.update(over)
        d[name] = c
    return f


MC = ("c1", "model_config")
CASES = [
    # wrong types
    ("region-not-string", doc(setk(("c1", "region"), 5)), "c1.region: is the number 5; expected a string"),
    ("type-number", doc(setk(("c1", "type"), 3)), "c1.type: is the number 3; expected an EC2 instance type"),
    ("type-bad-list-item", doc(setk(("c1", "type"), ["g5.xlarge", "nope"])), "c1.type[1]: the string 'nope' is not valid"),
    ("hosts-string", doc(setk(("c1", "hosts"), "a.example.com")), "c1.hosts: is the string 'a.example.com'; expected a list"),
    ("on-demand-string", doc(setk(("c1", "on-demand"), "one")), "c1.on-demand: is the string 'one'; expected a whole number"),
    ("on-demand-bool", doc(setk(("c1", "on-demand"), True)), "c1.on-demand: is the boolean true; expected a whole number"),
    ("on-demand-negative", doc(setk(("c1", "on-demand"), -1)), "c1.on-demand: is -1; it must be at least 0"),
    ("ctx-size-float", doc(setk(MC + ("ctx_size",), 1.5)), "c1.model_config.ctx_size: is the number 1.5; expected a whole number"),
    ("flash-attn-bad", doc(setk(MC + ("flash_attn",), "maybe")), "c1.model_config.flash_attn: is the string 'maybe'; expected true, false"),
    ("cache-type-bad", doc(setk(MC + ("cache_type_k",), "q3")), "c1.model_config.cache_type_k: is the string 'q3'; use one of"),
    ("cluster-not-mapping", doc(setk(("c1",), ["x"])), "c1: is a list; expected a mapping"),
    ("model-config-list", doc(setk(MC, [1])), "c1.model_config: is a list; expected a mapping"),
    ("throughput-too-high", doc(setk(("c1", "root_volume_throughput"), 5000)), "c1.root_volume_throughput: is 5000; it must be at most 2000"),
    ("launch-timeout-low", doc(setk(("c1", "launch_timeout"), 10)), "c1.launch_timeout: is 10; it must be at least 300"),
    ("extra-args-not-list", doc(setk(MC + ("extra_args",), "--foo")), "c1.model_config.extra_args: is the string '--foo'; expected a list"),
    ("ssh-keys-not-list", doc(setk(("stack", "ssh_keys"), "ssh-ed25519 AAAA")), "stack.ssh_keys: is the string"),
    # unknown keys, with the nearest known one
    ("unknown-cluster-key", doc(setk(("c1", "regoin"), "us-east-1")), "c1.regoin: unknown key 'regoin'; did you mean 'region'?"),
    ("on_demand-underscore", doc(setk(("c1", "on_demand"), 1)), "c1.on_demand: unknown key 'on_demand'; did you mean 'on-demand'?"),
    ("unknown-model-key", doc(setk(MC + ("ctx_sise",), 1)), "c1.model_config.ctx_sise: unknown key 'ctx_sise'; did you mean 'ctx_size'?"),
    ("unknown-stack-key", doc(setk(("stack", "domain_name"), "x.com")), "stack.domain_name: unknown key 'domain_name'; did you mean 'domain-name'?"),
    ("misspelled-stack", doc(setk(("stak",), {"slug": "x"})), "stak: unknown key 'stak'; did you mean 'stack'?"),
    ("bad-cluster-name", doc(setk(("Big_Cluster",), copy.deepcopy(BASE["c1"]))), "'Big_Cluster' is not a valid cluster name"),
    ("cluster-name-too-long", doc(setk(("a" * 40,), copy.deepcopy(BASE["c1"]))), "is not a valid cluster name"),
    # hosts
    ("hosts-empty", doc(setk(("c1", "hosts"), [])), "c1.hosts: must not be empty"),
    ("host-duplicate-within", doc(setk(("c1", "hosts"), ["a.example.com", "a.example.com"])), "c1.hosts[1]: 'a.example.com' is already listed earlier in this cluster"),
    ("host-duplicate-across", doc(add_cluster("c2", hosts=["b.example.com"])), "c2.hosts[0]: 'b.example.com' is already listed in cluster 'c1'"),
    ("host-outside-domain", doc(setk(("c1", "hosts"), ["a.example.com", "x.other.com"])), "c1.hosts[1]: 'x.other.com' is not inside domain-name 'example.com'"),
    ("host-invalid", doc(setk(("c1", "hosts"), ["not a host"])), "c1.hosts[0]: the string 'not a host' is not valid; expected a lowercase hostname"),
    ("host-empty-string", doc(setk(("c1", "hosts"), [""])), "c1.hosts[0]: must not be empty"),
    ("on-demand-above-hosts", doc(setk(("c1", "on-demand"), 3)), "c1.on-demand: is 3 but the cluster has 2 host(s)"),
    # regions and zones
    ("unknown-region", doc(setk(("c1", "region"), "us-east-9")), "c1.region: 'us-east-9' is not an AWS region"),
    ("region-typo", doc(setk(("c1", "region"), "us-esat-1")), "did you mean 'us-east-1'?"),
    ("az-other-region", doc(setk(("c1", "azs"), ["us-west-2a"])), "c1.azs[0]: 'us-west-2a' is an availability zone of 'us-west-2', not of this cluster's region 'us-east-1'"),
    ("az-garbage", doc(setk(("c1", "azs"), ["zone-a"])), "c1.azs[0]: 'zone-a' is not an availability zone name"),
    ("az-duplicate", doc(setk(("c1", "azs"), ["us-east-1a", "us-east-1a"])), "c1.azs: lists 'us-east-1a' more than once"),
    ("home-region-unknown", doc(setk(("stack", "home_region"), "mars-1")), "stack.home_region: 'mars-1' is not an AWS region"),
    # model_config
    ("missing-model-file", doc(delk(MC + ("model_file",))), "c1.model_config: missing required key 'model_file'"),
    ("missing-model-config", doc(delk(MC)), "c1: missing required key 'model_config'"),
    ("missing-region", doc(delk(("c1", "region"))), "c1: missing required key 'region'"),
    ("model-file-unmatched", doc(setk(MC + ("model_file",), "m-Q8_0.gguf")), "c1.model_config.model_file: 'm-Q8_0.gguf' is not matched by model_pattern '*Q4_0.gguf'"),
    ("model-file-case", doc(setk(MC + ("model_file",), "m-q4_0.gguf")), "matches only if case is ignored"),
    ("model-file-not-gguf", doc(setk(MC + ("model_file",), "m.bin")), "'m.bin' is not a .gguf file"),
    ("model-file-escape", doc(setk(MC + ("model_file",), "../etc/m.gguf")), "must be a path inside the repository"),
    ("model-repo-bad", doc(setk(MC + ("model_repo",), "justaname")), "c1.model_config.model_repo: the string 'justaname' is not valid; expected a Hugging Face repository"),
    ("ubatch-above-batch", doc(setk(MC + ("ubatch_size",), 4096)), "c1.model_config.ubatch_size: is 4096, larger than batch_size 2048"),
    ("extra-args-api-key", doc(setk(MC + ("extra_args",), ["--api-key", "s3cret"])), "'--api-key' would put the API key on a command line"),
    ("extra-args-port", doc(setk(MC + ("extra_args",), ["--port=9000"])), "'--port' is set by the container"),
    ("pattern-empty-part", doc(setk(MC + ("model_pattern",), "*Q4_0.gguf,,")), "has an empty pattern between commas"),
    # stack section
    ("slug-too-long", doc(setk(("stack", "slug"), "a" * 25)), "stack.slug: the string 'aaaaaaaaaaaaaaaaaaaaaaaaa' is not valid; expected a lowercase letter followed by up to 19"),
    ("zone-id-bad", doc(setk(("stack", "cloudflare-zone-id"), "xyz")), "stack.cloudflare-zone-id: the string 'xyz' is not valid"),
    ("ssh-cidr-bad", doc(setk(("stack", "ssh_cidrs"), ["10.0.0.1/8"])), "stack.ssh_cidrs[0]: '10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?"),
    ("ssh-cidr-garbage", doc(setk(("stack", "ssh_cidrs"), ["anywhere"])), "'anywhere' is not a CIDR block"),
    ("ssh-key-private", doc(setk(("stack", "ssh_keys"), ["-----BEGIN OPENSSH PRIVATE KEY-----"])), "stack.ssh_keys[0]: is not an OpenSSH public key"),
    ("api-key-short", doc(setk(("stack", "api-key"), "short")), "stack.api-key: is too short: at least 16 characters"),
    ("image-uppercase", doc(setk(("stack", "image"), "ghcr.io/OWNER/c3:tag")), "image names are lowercase"),
    ("stack-ami-bad", doc(setk(("stack", "ami"), "ubuntu-latest")), "stack.ami: 'ubuntu-latest' is neither an AMI id"),
    ("cluster-ami-bad", doc(setk(("c1", "ami"), "ami-XYZ")), "c1.ami: the string 'ami-XYZ' is not valid; expected an AMI id"),
    ("acme-http", doc(setk(("stack", "acme_directory"), "http://acme.example.org/dir")), "stack.acme_directory: must be https://"),
    ("stack-not-mapping", doc(setk(("stack",), ["x"])), "stack: is a list; expected a mapping"),
    # environment
    ("unset-var", doc(setk(MC + ("hf_token",), "${PROVISION_TEST_UNSET_VAR}")), "c1.model_config.hf_token: environment variable PROVISION_TEST_UNSET_VAR is not set"),
    ("bad-var-name", doc(setk(("stack", "image"), "img:${1BAD}")), "'${1BAD}' is not a valid variable reference"),
    # file-level problems
    ("yaml-syntax", "c1:\n  region: [us-east-1\n  type: g5\n", "YAML syntax error"),
    ("yaml-tab", "c1:\n\tregion: x\n", "YAML syntax error"),
    ("duplicate-cluster-key", "c1: {}\nc1: {}\n", "c1: duplicate key 'c1'"),
    ("top-level-list", "- a\n- b\n", "the top level is a list; it must be a mapping"),
    ("top-level-scalar", "hello\n", "the top level is a str; it must be a mapping"),
    ("empty-file", "", "the file is empty"),
    ("comments-only", "# nothing\n", "the file is empty"),
    ("non-string-key", "1: {}\n", "key '1' is read as a int, not a string; quote it"),
    ("list-key", "? [a, b]\n: 1\n", "a key must be a plain string"),
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validate must not touch the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("PROVISION_TEST_UNSET_VAR", raising=False)


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id,text,expected", CASES, ids=[c[0] for c in CASES])
def test_invalid_document(tmp_path, capsys, case_id, text, expected):
    path = tmp_path / "dev.asg.yaml"
    path.write_text(text)
    code, out, err = run_cli(["validate", str(path)], capsys)
    assert code == 1
    assert expected in err, err
    assert str(path) in err  # the message names the file
    assert "Traceback" not in err and "Traceback" not in out
    assert out == ""


def test_valid_base_document(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    path.write_text(doc(lambda d: None))
    code, out, err = run_cli(["validate", str(path)], capsys)
    assert code == 0, err
    assert "valid" in out and "2 host(s)" in out


def test_message_carries_line_number(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    text = doc(setk(("c1", "hosts"), ["a.example.com", "x.other.com"]))
    path.write_text(text)
    _, _, err = run_cli(["validate", str(path)], capsys)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "x.other.com" in l)
    assert f"{path}:{line}: c1.hosts[1]" in err


def test_yaml_syntax_error_gives_line_and_column(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    path.write_text("c1:\n  region: us-east-1\n  hosts: [a, b\n  type: x\n")
    _, _, err = run_cli(["validate", str(path)], capsys)
    assert f"{path}:4:" in err or f"{path}:3:" in err, err
    assert "YAML syntax error" in err


def test_all_problems_reported_together(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    path.write_text(doc(lambda d: (setk(("c1", "regoin"), "x")(d), setk(MC + ("ctx_sise",), 1)(d))))
    _, _, err = run_cli(["validate", str(path)], capsys)
    assert "regoin" in err and "ctx_sise" in err


def test_binary_garbage(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 1 and "is a binary file" in err


def test_not_utf8(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    path.write_bytes(b"c1:\n  region: \xff\xfe\n")
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 1 and "is not UTF-8 text" in err


def test_fifty_megabyte_file(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    with open(path, "wb") as f:
        f.write(b"# padding\n" * (5 * 1024 * 1024))
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 1 and "MiB; a config is at most" in err


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(["validate", str(tmp_path / "nope.asg.yaml")], capsys)
    assert code == 1 and "no such file" in err


def test_file_name_without_stack(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(doc(lambda d: None))
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 1 and "--stack NAME" in err
    code, out, err = run_cli(["validate", str(path), "--stack", "prod"], capsys)
    assert code == 0 and "'prod'" in out


def test_bad_stack_override(tmp_path, capsys):
    path = tmp_path / "dev.asg.yaml"
    path.write_text(doc(lambda d: None))
    code, _, err = run_cli(["validate", str(path), "--stack", "Prod!"], capsys)
    assert code == 1 and "--stack 'Prod!'" in err


def test_alias_bomb_is_refused(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i-1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    path = tmp_path / "dev.asg.yaml"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 1 and "expands to more than" in err


@pytest.mark.parametrize("args", [
    ["validate"],
    ["bogus"],
    ["validate", "x.asg.yaml", "--nope"],
    ["plan", "x.asg.yaml", "--output", "xml"],
    ["sandbox", "sideways"],
])
def test_usage_errors_exit_1(capsys, args):
    code, _, err = run_cli(args, capsys)
    assert code == 1
    assert err.startswith("provision: ")
    assert "Traceback" not in err


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    """The installed entry point behaves the same as main()."""
    path = tmp_path / "dev.asg.yaml"
    path.write_text(doc(setk(("c1", "regoin"), "x")))
    proc = subprocess.run([sys.executable, "-m", "provisioner", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "did you mean 'region'" in proc.stderr
    assert "Traceback" not in proc.stderr
