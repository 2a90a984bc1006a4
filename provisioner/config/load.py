"""Load `{stack}.asg.yaml`: read, interpolate ${VAR}, check against the schema and the rules a schema
cannot say, and build the frozen dataclasses of model.py.

Every problem becomes one line `FILE:LINE: YAML.PATH: what is wrong; what to do`. All problems of a
file are reported together (up to a limit), and nothing here touches the network.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from .model import (
    DEFAULT_ACME_DIRECTORY,
    DEFAULT_DNS_TTL,
    DEFAULT_HEALTH_CHECK_GRACE,
    DEFAULT_LAUNCH_TIMEOUT,
    DEFAULT_ROOT_VOLUME_THROUGHPUT,
    DEFAULT_SLUG,
    Cluster,
    Config,
    ModelConfig,
    Secret,
    StackSettings,
)
from .rules import semantic_problems
from .schema_messages import schema_problems
from .yamlread import Document, YamlProblem, format_path, read_yaml

MAX_FILE_BYTES = 4 * 1024 * 1024  # a 200-cluster file is ~150 KB
MAX_REPORTED = 25
STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,20}$")
VAR = re.compile(r"\$(\$)?\{([^}]*)\}")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SUFFIX = ".asg.yaml"


class Problems:
    """Collects `file:line: path: message` lines."""

    def __init__(self, label: str, doc: Document | None = None):
        self.label = label
        self.doc = doc
        self.items: list[str] = []

    def add(self, path: tuple, message: str, line: int | None = None) -> None:
        if line is None and self.doc is not None:
            line = self.doc.line_of(path)
        where = f"{self.label}:{line}" if line else self.label
        self.items.append(f"{where}: {format_path(path)}: {message}" if path else f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            items = self.items
            if len(items) > MAX_REPORTED:
                items = items[:MAX_REPORTED] + [f"{self.label}: ... and {len(self.items) - MAX_REPORTED} more problems"]
            raise ConfigError(items)


def stack_name_for(path: Path, override: str | None) -> str:
    if override is not None:
        name = override
        if not STACK_NAME.match(name):
            raise ConfigError(
                f"--stack {name!r}: a stack name is a lowercase letter followed by up to 20 lowercase "
                f"letters, digits or hyphens"
            )
        return name
    base = path.name
    if not base.endswith(SUFFIX) or base == SUFFIX:
        raise ConfigError(
            f"{path}: the stack name comes from a file named STACK{SUFFIX} (e.g. dev{SUFFIX}); "
            f"rename the file or pass --stack NAME"
        )
    name = base[: -len(SUFFIX)]
    if not STACK_NAME.match(name):
        raise ConfigError(
            f"{path}: stack name {name!r} (from the file name) must be a lowercase letter followed by up "
            f"to 20 lowercase letters, digits or hyphens; rename the file or pass --stack NAME"
        )
    return name


def read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; write one (see examples/) or check the path") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give the path of a {SUFFIX} file")
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path}: is {size / 1048576:.1f} MiB; a config is at most {MAX_FILE_BYTES // 1048576} MiB "
            f"(200 clusters take about 150 KB): is this the right file?"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    if b"\x00" in raw:
        raise ConfigError(f"{path}: is a binary file, not YAML text; give the path of a {SUFFIX} file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8 YAML"
        ) from None
    return text


def interpolate(data: Any, env: Mapping[str, str], problems: Problems, require_env: bool,
                unresolved: list[str], secret_paths: dict[tuple, str], path: tuple = ()) -> Any:
    """Replace ${VAR} in every string; `$${X}` stands for a literal `${X}`."""
    if isinstance(data, dict):
        return {k: interpolate(v, env, problems, require_env, unresolved, secret_paths, path + (k,))
                for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, problems, require_env, unresolved, secret_paths, path + (i,))
                for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def sub(m: re.Match) -> str:
        escaped, name = m.group(1), m.group(2)
        if escaped:
            return "${" + name + "}"
        if not VAR_NAME.match(name):
            problems.add(path, f"'${{{name}}}' is not a valid variable reference; use ${{NAME}} "
                               f"with letters, digits and underscores")
            return m.group(0)
        secret_paths.setdefault(path, "${" + name + "}")
        if name in env:
            return env[name]
        if require_env:
            problems.add(path, f"environment variable {name} is not set; export it (or remove the reference)")
        elif name not in unresolved:
            unresolved.append(name)
        return m.group(0)

    return VAR.sub(sub, data)


def load_config(path: str | os.PathLike, stack: str | None = None, env: Mapping[str, str] | None = None,
                require_env: bool = True) -> Config:
    """Load and validate a config file. Raises ConfigError listing every problem found."""
    path = Path(path)
    env = os.environ if env is None else env
    label = str(path)
    stack_name = stack_name_for(path, stack)
    text = read_text(path)
    try:
        doc = read_yaml(text)
    except YamlProblem as exc:
        where = f"{label}:{exc.line}:{exc.column}" if exc.line and exc.column else (
            f"{label}:{exc.line}" if exc.line else label)
        raise ConfigError(f"{where}: {exc.message}") from None
    if doc.data is None:
        raise ConfigError(
            f"{label}: the file is empty; describe at least one cluster (see examples/dev{SUFFIX})"
        )
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else f"a {type(doc.data).__name__}"
        raise ConfigError(
            f"{label}:{doc.line_of(()) or 1}: the top level is {kind}; it must be a mapping of cluster "
            f"names (and the reserved key 'stack') to their settings"
        )
    problems = Problems(label, doc)
    unresolved: list[str] = []
    secret_paths: dict[tuple, str] = {}
    data = interpolate(doc.data, env, problems, require_env, unresolved, secret_paths)
    for p, message in schema_problems(data):
        problems.add(p, message)
    problems.raise_if_any()

    for p, message in semantic_problems(data):
        problems.add(p, message)
    problems.raise_if_any()

    return build(stack_name, path, data, secret_paths, tuple(unresolved))


def _secret(value: str | None, source: str) -> Secret | None:
    return None if value is None else Secret(value, source)


def build(stack_name: str, path: Path, data: dict, secret_paths: dict[tuple, str],
          unresolved: tuple[str, ...]) -> Config:
    s = data.get("stack") or {}
    settings = StackSettings(
        slug=s.get("slug", DEFAULT_SLUG),
        domain_name=s["domain-name"].lower().rstrip(".") if s.get("domain-name") else None,
        cloudflare_zone_id=s.get("cloudflare-zone-id"),
        api_key=_secret(s.get("api-key"), secret_paths.get(("stack", "api-key"), "stack.api-key")),
        ssh_keys=tuple(s.get("ssh_keys", ())),
        ssh_cidrs=tuple(s.get("ssh_cidrs", ())),
        image=s.get("image"),
        ami=s.get("ami"),
        acme_directory=s.get("acme_directory", DEFAULT_ACME_DIRECTORY),
        home_region=s.get("home_region"),
    )
    clusters = []
    for name, c in data.items():
        if name == "stack":
            continue
        m = c["model_config"]
        ts = m.get("tensor_split")
        if isinstance(ts, list):
            ts = ",".join(f"{x:g}" for x in ts)
        model = ModelConfig(
            api_name=m["api_name"],
            model_repo=m["model_repo"],
            model_pattern=m["model_pattern"],
            model_file=m["model_file"],
            chat_template_url=m.get("chat_template_url"),
            hf_token=_secret(m.get("hf_token"),
                             secret_paths.get((name, "model_config", "hf_token"), f"{name}.model_config.hf_token")),
            ctx_size=m.get("ctx_size", 16384),
            gpu_layers=m.get("gpu_layers", 99),
            parallel=m.get("parallel", 4),
            cont_batching=m.get("cont_batching", False),
            batch_size=m.get("batch_size", 2048),
            ubatch_size=m.get("ubatch_size", 512),
            cache_type_k=m.get("cache_type_k", "f16"),
            cache_type_v=m.get("cache_type_v", "f16"),
            flash_attn=m.get("flash_attn", False),
            mlock=m.get("mlock", False),
            override_tensor=m.get("override_tensor"),
            tensor_split=ts,
            split_mode=m.get("split_mode"),
            main_gpu=m.get("main_gpu"),
            numa=m.get("numa"),
            extra_args=tuple(m.get("extra_args", ())),
        )
        types = c["type"] if isinstance(c["type"], list) else [c["type"]]
        clusters.append(Cluster(
            name=name,
            region=c["region"],
            types=tuple(types),
            hosts=tuple(h.lower() for h in c["hosts"]),
            model=model,
            on_demand=c.get("on-demand", 0),
            azs=tuple(c.get("azs", ())),
            ami=c.get("ami"),
            root_volume_gb=c.get("root_volume_gb"),
            root_volume_throughput=c.get("root_volume_throughput", DEFAULT_ROOT_VOLUME_THROUGHPUT),
            launch_timeout=c.get("launch_timeout", DEFAULT_LAUNCH_TIMEOUT),
            health_check_grace=c.get("health_check_grace", DEFAULT_HEALTH_CHECK_GRACE),
            dns_ttl=c.get("dns_ttl", DEFAULT_DNS_TTL),
        ))
    return Config(stack=stack_name, path=path, settings=settings, clusters=tuple(clusters),
                  unresolved_vars=unresolved)
