"""IAM policies: the instance role's (what the agent may do) and the operator's least-privilege
policy (docs/iam-policy.json), generated from the executors' declared permissions.

    python -m provisioner.aws.policy > docs/iam-policy.json
"""
from __future__ import annotations

import json
import urllib.parse
from typing import Any

from ..config import Config

# Every AWS call the instance agent (userdata/agent.py) makes; tests/test_iam.py reads them from its
# source and checks that the instance policy covers each.
AGENT_CALLS = (
    "ec2:DescribeAddresses", "ec2:DescribeInstances", "ec2:DescribeTags", "ec2:DescribeLaunchTemplates",
    "autoscaling:DescribeAutoScalingGroups",
    "ec2:AssociateAddress", "ec2:DisassociateAddress",
    "secretsmanager:GetSecretValue", "secretsmanager:ListSecrets",
    "autoscaling:SetInstanceHealth", "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat",
    "ec2:CreateTags", "ec2:DeleteTags",
)
AGENT_TAG_KEYS = ("provision:phase", "provision:at-risk", "provision:handover-to")

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def canonical(doc: Any) -> str:
    """A policy document as canonical JSON (IAM returns it URL-encoded, or already parsed)."""
    if isinstance(doc, str):
        text = doc
        if text.lstrip().startswith("%7B") or "%22" in text:
            text = urllib.parse.unquote(text)
        doc = json.loads(text)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def agent_policy(config: Config) -> dict:
    """Least privilege for the instance agent, scoped by tag where IAM allows it."""
    P = f"{config.slug}-{config.stack}"
    own = {"aws:ResourceTag/provision:slug": config.slug, "aws:ResourceTag/provision:stack": config.stack}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Describe", "Effect": "Allow", "Resource": "*", "Action": [
                "autoscaling:DescribeAutoScalingGroups", "ec2:DescribeAddresses", "ec2:DescribeInstances",
                "ec2:DescribeTags", "ec2:DescribeLaunchTemplates", "secretsmanager:ListSecrets"]},
            {"Sid": "MoveOwnAddresses", "Effect": "Allow",
             "Action": ["ec2:AssociateAddress", "ec2:DisassociateAddress"],
             "Resource": "arn:aws:ec2:*:*:elastic-ip/*", "Condition": {"StringEquals": own}},
            {"Sid": "AddressTargets", "Effect": "Allow", "Action": ["ec2:AssociateAddress", "ec2:DisassociateAddress"],
             "Resource": ["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:network-interface/*"]},
            {"Sid": "ReadOwnSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": f"arn:aws:secretsmanager:*:*:secret:{config.slug}/{config.stack}/*"},
            {"Sid": "OwnGroups", "Effect": "Allow",
             "Action": ["autoscaling:SetInstanceHealth", "autoscaling:CompleteLifecycleAction",
                        "autoscaling:RecordLifecycleActionHeartbeat"],
             "Resource": f"arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/{P}-*",
             "Condition": {"StringEquals": own}},
            {"Sid": "TagOwnInstances", "Effect": "Allow", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
             "Resource": "arn:aws:ec2:*:*:instance/*",
             "Condition": {"StringEquals": own,
                           "ForAllValues:StringEquals": {"aws:TagKeys": list(AGENT_TAG_KEYS)}}},
        ],
    }


def policy_actions(doc: dict) -> set[str]:
    out: set[str] = set()
    for st in doc["Statement"]:
        acts = st["Action"]
        out.update([acts] if isinstance(acts, str) else acts)
    return out


def all_permissions() -> set[str]:
    """Every IAM action any executor or discovery declares, the other providers' included."""
    from . import executors
    from .. import lock
    from ..certs.provider import CertificateProvider
    from ..dns.provider import DnsExecutor

    actions: set[str] = set(executors.DISCOVERY_PERMISSIONS) | set(lock.PERMISSIONS)
    for ex in executors.EXECUTORS.values():
        for perms in ex.permissions.values():
            actions.update(perms)
    certs = CertificateProvider()
    actions.update(getattr(certs, "discovery_permissions", ()))
    for kind in certs.kinds:
        for perms in certs.executor(kind).permissions.values():
            actions.update(perms)
    for perms in DnsExecutor.permissions.values():
        actions.update(perms)
    return actions


def operator_policy() -> dict:
    """The operator's policy: exactly the union of every declared permission."""
    by_service: dict[str, list[str]] = {}
    for a in sorted(all_permissions()):
        by_service.setdefault(a.split(":")[0], []).append(a)
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": svc.replace("-", "").capitalize(), "Effect": "Allow", "Action": acts, "Resource": "*"}
                      for svc, acts in sorted(by_service.items())],
    }


def render_operator_policy() -> str:
    return json.dumps(operator_policy(), indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render_operator_policy(), end="")
