"""The registry of executors, one per resource kind (another provider adds its own)."""
from __future__ import annotations

from .asg import GroupExecutor
from .base import Executor
from .eip import AddressExecutor
from .role import RoleExecutor
from .secret import SecretExecutor
from .sg import SecurityGroupExecutor
from .template import LaunchTemplateExecutor

EXECUTORS: dict[str, Executor] = {}


def register(ex: Executor) -> Executor:
    EXECUTORS[ex.kind] = ex
    return ex


for _ex in (RoleExecutor(), SecretExecutor(), SecurityGroupExecutor(), LaunchTemplateExecutor(),
            AddressExecutor(), GroupExecutor()):
    register(_ex)

# read-only calls of discovery and AMI resolution (plan needs only these)
DISCOVERY_PERMISSIONS = (
    "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeAddresses",
    "ec2:DescribeLaunchTemplates", "ec2:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstances",
    "autoscaling:DescribeAutoScalingGroups",
    "secretsmanager:ListSecrets", "secretsmanager:BatchGetSecretValue", "secretsmanager:GetSecretValue",
    "iam:GetRole", "iam:GetRolePolicy", "iam:GetInstanceProfile",
    "ssm:GetParameters",
)
