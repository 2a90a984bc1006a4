"""Helpers shared by the engine tests (no tests here): configs, run options, AWS snapshots.

Every engine test runs the real boto3 calls against moto in server mode over HTTP (the `aws`
fixture of tests/fixtures_aws.py); nothing of ours is mocked.
"""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml

from provisioner.app import RunOptions
from provisioner.config import load_config

AMI = "ami-1e749f67"  # an AMI moto ships in every region (the sandbox's stand-in for the DLAMI)
REGIONS = ("us-east-1", "eu-west-1")


def cluster(region="us-east-1", hosts=("a1.example.com",), **kw) -> dict:
    c = {
        "region": region, "type": kw.pop("type", "g5.xlarge"), "hosts": list(hosts),
        "root_volume_gb": kw.pop("root_volume_gb", 100),
        "model_config": kw.pop("model_config", {
            "api_name": "qwen3-8b", "model_repo": "unsloth/Qwen3-8B-GGUF",
            "model_pattern": "*Q4_K_M.gguf", "model_file": "Qwen3-8B-Q4_K_M.gguf"}),
    }
    c.update(kw)
    return c


def two_region_doc() -> dict:
    return {
        "stack": {"domain-name": "example.com", "ami": AMI, "image": "ghcr.io/example/c3-llamacpp:b1"},
        "alpha": cluster("us-east-1", ["a1.example.com", "a2.example.com"], type=["g5.xlarge", "g6.xlarge"],
                         **{"on-demand": 1}),
        "beta": cluster("eu-west-1", ["b1.example.com"]),
    }


def write_config(tmp_path: Path, doc: dict, stack: str = "dev", env: dict | None = None):
    p = tmp_path / f"{stack}.asg.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_config(p, env=env or {})


class Captured:
    def __init__(self):
        self.out: list[str] = []
        self.err: list[str] = []

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)


def options(state_dir: Path, **kw) -> tuple[RunOptions, Captured]:
    cap = Captured()
    kw.setdefault("yes", True)
    kw.setdefault("providers", [])  # AWS alone; tests/test_engine_dns.py adds the DNS provider
    opts = RunOptions(state_dir=state_dir, echo=cap.out.append, err=cap.err.append, **kw)
    opts.wait_timeout = kw.get("wait_timeout", 30)
    return opts, cap


@pytest.fixture
def fast(monkeypatch):
    """Short retry waits and no Hub lookups (no network but localhost)."""
    monkeypatch.setenv("PROVISION_RETRY_SCALE", "0.01")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def mutating(aws) -> list[tuple[str, str]]:
    return [(c.service, c.action) for c in aws.calls if c.mutating]


def snapshot(regions=REGIONS) -> dict:
    """Everything in the emulator, every kind, tagged or not (to compare before/after)."""
    snap: dict = {}
    for r in regions:
        ec2 = boto3.client("ec2", region_name=r)
        asc = boto3.client("autoscaling", region_name=r)
        sm = boto3.client("secretsmanager", region_name=r)
        snap[(r, "sg")] = sorted((g["GroupId"], g["GroupName"], json.dumps(g.get("IpPermissions"), sort_keys=True))
                                 for g in ec2.describe_security_groups()["SecurityGroups"])
        snap[(r, "eip")] = sorted(a["AllocationId"] for a in ec2.describe_addresses()["Addresses"])
        snap[(r, "lt")] = sorted(t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"])
        snap[(r, "asg")] = sorted(g["AutoScalingGroupName"] for g in asc.describe_auto_scaling_groups()["AutoScalingGroups"])
        snap[(r, "secret")] = sorted(s["Name"] for s in sm.list_secrets()["SecretList"])
        snap[(r, "instances")] = sorted(i["InstanceId"] for res in ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
            for i in res["Instances"])
        snap[(r, "dynamodb")] = sorted(boto3.client("dynamodb", region_name=r).list_tables()["TableNames"])
    iam = boto3.client("iam", region_name="us-east-1")
    snap["roles"] = sorted(x["RoleName"] for x in iam.list_roles()["Roles"])
    snap["profiles"] = sorted(x["InstanceProfileName"] for x in iam.list_instance_profiles()["InstanceProfiles"])
    return snap


def owned_count(snap: dict) -> int:
    return sum(len(v) for v in snap.values())
