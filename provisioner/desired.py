"""Config -> desired resources (pure, given the facts discovery and AMI resolution found).

Names and tags follow docs/internals.md. Nothing secret goes into an attribute, a tag or the
user data: secrets are referenced by their Secrets Manager name and compared by fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from .actions import KNOWN_AFTER_APPLY, Resource
from .config import Cluster, Config
from .errors import ProvisionError

TAG_SLUG = "provision:slug"
TAG_STACK = "provision:stack"
TAG_CLUSTER = "provision:cluster"
TAG_HOST = "provision:host"
# recorded on the launch template: what it was built from (CONTRACT §1: a new AMI release or a Hub
# outage never changes a running fleet by itself)
TAG_LT_PREFIX = "provision:lt:"
TAG_HOOKS = "provision:hooks"

LAUNCH_HOOK = "provision-launch"
TERMINATE_HOOK = "provision-terminate"
TERMINATE_HEARTBEAT = 600  # seconds an instance may take to drain and hand its address on
DEFAULT_SSM_AMI = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
CONTAINER_IMAGE_GB = 20  # llama.cpp CUDA image + layers, on top of the AMI's own snapshot
MODEL_HEADROOM = 1.1  # the model plus 10% (partial downloads, chat template, logs)
FALLBACK_MODEL_GB = 100  # when the Hub cannot tell the model's size on first create


def prefix(config: Config) -> str:
    """P = {slug}-{stack} (docs/internals.md)."""
    return f"{config.slug}-{config.stack}"


def role_name(config: Config) -> str:
    return f"{prefix(config)}-instance"


def lock_table(config: Config) -> str:
    return f"{prefix(config)}-lock"


def cluster_name(config: Config, cluster: str) -> str:
    return f"{prefix(config)}-{cluster}"


def api_key_secret(config: Config) -> str:
    return f"{config.slug}/{config.stack}/api-key"


def hf_token_secret(config: Config, cluster: str) -> str:
    return f"{config.slug}/{config.stack}/{cluster}/hf-token"


def tags(config: Config, cluster: str | None = None, host: str | None = None, name: str | None = None) -> dict[str, str]:
    t = {TAG_SLUG: config.slug, TAG_STACK: config.stack}
    if cluster:
        t[TAG_CLUSTER] = cluster
    if host:
        t[TAG_HOST] = host
    if name:
        t["Name"] = name
    return t


def owned(config: Config, resource_tags: dict[str, str]) -> bool:
    """CONTRACT §4: ours only when slug and stack both match."""
    return resource_tags.get(TAG_SLUG) == config.slug and resource_tags.get(TAG_STACK) == config.stack


def render_user_data(config: Config, cluster: Cluster) -> str:
    """The user data of a cluster's launch template (userdata/'s renderer). Never contains a secret."""
    from userdata import UserDataContext, render_user_data as render

    try:
        return render(UserDataContext.from_config(config, cluster.name))
    except ValueError as e:
        raise ProvisionError(f"{config.path}: cluster {cluster.name}: {e}",
                             hint="stack.image names the container image the instances run") from None


def encode_user_data(config: Config, cluster: Cluster, text: str) -> str:
    """base64(gzip(text)) for LaunchTemplateData.UserData."""
    from userdata import encode_user_data as encode

    try:
        return encode(text)
    except ValueError as e:
        raise ProvisionError(f"{config.path}: cluster {cluster.name}: {e}") from None


def sha(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def model_ref(cluster: Cluster) -> str:
    m = cluster.model
    return sha(json.dumps([m.model_repo, m.model_pattern, m.model_file]), 12)


def ami_source(config: Config, cluster: Cluster) -> str:
    """What the config asks for: a cluster's AMI id, else the stack's (id or SSM path), else the default."""
    src = cluster.ami or config.settings.ami or DEFAULT_SSM_AMI
    if src.startswith("resolve:ssm:"):
        src = src[len("resolve:ssm:"):]
    return src


def hooks_spec(cluster: Cluster) -> str:
    return f"launch:ABANDON:{launch_heartbeat(cluster)};terminate:CONTINUE:{TERMINATE_HEARTBEAT}"


def launch_heartbeat(cluster: Cluster) -> int:
    """HeartbeatTimeout of the launch hook: AWS allows 30..7200 s; beyond, the agent heartbeats."""
    return max(30, min(cluster.launch_timeout, 7200))


def volume_gb(cluster: Cluster, snapshot_gb: int, model_gb: float | None) -> int:
    if cluster.root_volume_gb:
        return max(cluster.root_volume_gb, snapshot_gb)
    m = FALLBACK_MODEL_GB if model_gb is None else model_gb
    return max(snapshot_gb, snapshot_gb + CONTAINER_IMAGE_GB + math.ceil(m * MODEL_HEADROOM))


def gp3_iops(throughput: int) -> int:
    """gp3 allows at most 0.25 MiB/s per IOPS: provision IOPS >= throughput * 4 (baseline 3000)."""
    return min(16000, max(3000, throughput * 4))


@dataclass
class ImageFacts:
    image_id: str
    root_device: str
    snapshot_gb: int
    source: str


@dataclass
class RegionFacts:
    vpc_id: str | None = None
    subnets: dict[str, str] = field(default_factory=dict)  # az -> default subnet id
    security_group_id: str | None = None


@dataclass
class Facts:
    """What discovery and resolution found; the desired resources are a pure function of it."""

    regions: dict[str, RegionFacts] = field(default_factory=dict)
    images: dict[str, ImageFacts] = field(default_factory=dict)  # cluster -> image
    model_gb: dict[str, float | None] = field(default_factory=dict)  # cluster -> model size
    lt_versions: dict[str, int | None] = field(default_factory=dict)  # cluster -> live latest version
    agent_policy: str = "{}"  # the instance role's policy document (JSON, canonical)


def ingress_rules(config: Config) -> list[str]:
    rules = ["tcp:443:0.0.0.0/0", "tcp:443:::/0"]
    rules += [f"tcp:22:{c}" for c in config.settings.ssh_cidrs]
    return sorted(rules)


def desired_resources(config: Config, facts: Facts) -> list[Resource]:
    P = prefix(config)
    out: list[Resource] = []
    out.append(Resource("iam-role", role_name(config), "global",
                        attrs={"policy": facts.agent_policy, "instance_profile": True}))
    for region in config.regions:
        rf = facts.regions.get(region, RegionFacts())
        key_attrs = {}
        if config.settings.api_key is not None:
            key_attrs["value"] = config.settings.api_key.fingerprint()
        out.append(Resource("secret", api_key_secret(config), region, attrs=key_attrs,
                            data={"secret": config.settings.api_key, "generate": config.settings.api_key is None}))
        out.append(Resource("security-group", P, region,
                            attrs={"vpc_id": rf.vpc_id, "ingress": ingress_rules(config)}))
    for c in config.clusters:
        rf = facts.regions.get(c.region, RegionFacts())
        if c.model.hf_token is not None:
            out.append(Resource("secret", hf_token_secret(config, c.name), c.region, c.name,
                                attrs={"value": c.model.hf_token.fingerprint()},
                                data={"secret": c.model.hf_token, "generate": False}))
        img = facts.images[c.name]
        user_data = render_user_data(config, c)
        lt = Resource("launch-template", f"{P}-{c.name}", c.region, c.name, attrs={
            "image_id": img.image_id,
            "ami_source": img.source,
            "root_device": img.root_device,
            "volume_gb": volume_gb(c, img.snapshot_gb, facts.model_gb.get(c.name)),
            "throughput": c.root_volume_throughput,
            "iops": gp3_iops(c.root_volume_throughput),
            "security_group_id": rf.security_group_id or KNOWN_AFTER_APPLY,
            "instance_profile": role_name(config),
            "user_data_sha": sha(user_data),
        }, data={
            "user_data": encode_user_data(config, c, user_data),
            "snapshot_gb": img.snapshot_gb,
            "model_gb": facts.model_gb.get(c.name),
            "model_ref": model_ref(c),
        })
        out.append(lt)
        for host in c.hosts:
            out.append(Resource("eip", host, c.region, c.name))
        azs = list(c.azs) or sorted(rf.subnets)
        subnets = sorted(rf.subnets[az] for az in azs if az in rf.subnets)
        version = facts.lt_versions.get(c.name)
        out.append(Resource("asg", f"{P}-{c.name}", c.region, c.name, attrs={
            "min_size": c.capacity,
            "max_size": c.capacity + 1,
            "desired_capacity": c.capacity,
            "types": list(c.types),
            "on_demand_base": c.on_demand,
            "on_demand_above_base_pct": 0,
            "spot_allocation_strategy": "price-capacity-optimized",
            "capacity_rebalance": True,
            "subnets": subnets,
            "health_check_grace": c.health_check_grace,
            "launch_template": f"{P}-{c.name}",
            "launch_template_version": str(version) if version else KNOWN_AFTER_APPLY,
            "hooks": hooks_spec(c),
        }))
    return out
