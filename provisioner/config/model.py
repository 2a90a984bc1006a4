"""The validated config as frozen dataclasses: what every other module reads.

Nothing here talks to the network. Defaults are the seed's (c3-llamacpp-asg) where it has one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_SLUG = "c3-llamacpp"
DEFAULT_ACME_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_ROOT_VOLUME_THROUGHPUT = 1000  # MiB/s of gp3; 125 is the free baseline
DEFAULT_LAUNCH_TIMEOUT = 7200
DEFAULT_HEALTH_CHECK_GRACE = 300
DEFAULT_DNS_TTL = 60


@dataclass(frozen=True)
class Secret:
    """A secret value from the config. Its repr and str never show the value."""

    value: str
    source: str = ""  # e.g. "${HF_TOKEN}" or "stack.api-key"

    def reveal(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Secret({self.source or '***'})"

    __str__ = __repr__

    def fingerprint(self) -> str:
        """A short, non-reversible digest for change detection (never the value)."""
        return hashlib.sha256(self.value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelConfig:
    api_name: str
    model_repo: str
    model_pattern: str
    model_file: str
    chat_template_url: str | None = None
    hf_token: Secret | None = None
    ctx_size: int = 16384
    gpu_layers: int = 99
    parallel: int = 4
    cont_batching: bool = False
    batch_size: int = 2048
    ubatch_size: int = 512
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: bool | str = False  # the seed's bool, or llama-server's on/off/auto
    mlock: bool = False
    override_tensor: str | None = None
    tensor_split: str | None = None
    split_mode: str | None = None
    main_gpu: int | None = None
    numa: str | None = None
    extra_args: tuple[str, ...] = ()

    def container_env(self) -> dict[str, str]:
        """The container's environment (CONTRACT §6) for this model, secrets excluded.

        A boolean that is false and an option that is unset are left out, so the container
        leaves the flag out and llama-server's own default stands.
        """
        env: dict[str, str] = {
            "API_NAME": self.api_name,
            "MODEL_REPO": self.model_repo,
            "MODEL_PATTERN": self.model_pattern,
            "MODEL_FILE": self.model_file,
            "CTX_SIZE": str(self.ctx_size),
            "GPU_LAYERS": str(self.gpu_layers),
            "PARALLEL": str(self.parallel),
            "BATCH_SIZE": str(self.batch_size),
            "UBATCH_SIZE": str(self.ubatch_size),
            "CACHE_TYPE_K": self.cache_type_k,
            "CACHE_TYPE_V": self.cache_type_v,
        }
        if self.chat_template_url:
            env["CHAT_TEMPLATE_URL"] = self.chat_template_url
        if self.cont_batching:
            env["CONT_BATCHING"] = "true"
        if self.flash_attn is True:
            env["FLASH_ATTN"] = "true"
        elif isinstance(self.flash_attn, str):
            env["FLASH_ATTN"] = self.flash_attn
        if self.mlock:
            env["MLOCK"] = "true"
        for key in ("override_tensor", "tensor_split", "split_mode", "numa"):
            value = getattr(self, key)
            if value is not None:
                env[key.upper()] = str(value)
        if self.main_gpu is not None:
            env["MAIN_GPU"] = str(self.main_gpu)
        return env


@dataclass(frozen=True)
class Cluster:
    name: str
    region: str
    types: tuple[str, ...]
    hosts: tuple[str, ...]
    model: ModelConfig
    on_demand: int = 0
    azs: tuple[str, ...] = ()
    ami: str | None = None
    root_volume_gb: int | None = None
    root_volume_throughput: int = DEFAULT_ROOT_VOLUME_THROUGHPUT
    launch_timeout: int = DEFAULT_LAUNCH_TIMEOUT
    health_check_grace: int = DEFAULT_HEALTH_CHECK_GRACE
    dns_ttl: int = DEFAULT_DNS_TTL

    @property
    def capacity(self) -> int:
        return len(self.hosts)


@dataclass(frozen=True)
class StackSettings:
    slug: str = DEFAULT_SLUG
    domain_name: str | None = None
    cloudflare_zone_id: str | None = None
    api_key: Secret | None = None
    ssh_keys: tuple[str, ...] = ()
    ssh_cidrs: tuple[str, ...] = ()
    image: str | None = None
    ami: str | None = None
    acme_directory: str = DEFAULT_ACME_DIRECTORY
    home_region: str | None = None


@dataclass(frozen=True)
class Config:
    stack: str
    path: Path
    settings: StackSettings
    clusters: tuple[Cluster, ...]
    unresolved_vars: tuple[str, ...] = field(default=())  # only when loaded with require_env=False

    @property
    def slug(self) -> str:
        return self.settings.slug

    @property
    def regions(self) -> tuple[str, ...]:
        """Regions in first-use order."""
        seen: dict[str, None] = {}
        for c in self.clusters:
            seen.setdefault(c.region, None)
        return tuple(seen)

    @property
    def home_region(self) -> str:
        if self.settings.home_region:
            return self.settings.home_region
        return self.regions[0] if self.regions else "us-east-1"

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h for c in self.clusters for h in c.hosts)

    def cluster(self, name: str) -> Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def fingerprint(self) -> str:
        """A hash of the desired configuration (secrets by digest only)."""
        return hashlib.sha256(json.dumps(to_jsonable(self), sort_keys=True).encode()).hexdigest()


def to_jsonable(obj: Any) -> Any:
    """Dataclasses to plain JSON data; secrets become their fingerprint, never their value."""
    if isinstance(obj, Secret):
        return {"secret": obj.fingerprint()}
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    return obj


__all__ = [
    "Cluster",
    "Config",
    "ModelConfig",
    "Secret",
    "StackSettings",
    "asdict",
    "to_jsonable",
]
