"""A cluster's Auto Scaling Group `P-{cluster}`: MixedInstancesPolicy (the types as overrides,
OnDemandBaseCapacity = on-demand, nothing on-demand above it, price-capacity-optimized spot),
capacity rebalance, desired = min = hosts, max = hosts + 1, and two lifecycle hooks given in the
create call itself (launch: ABANDON by default; terminate: CONTINUE)."""
from __future__ import annotations

import time

from ..actions import KNOWN_AFTER_APPLY, Action
from ..desired import (LAUNCH_HOOK, TAG_HOOKS, TERMINATE_HEARTBEAT, TERMINATE_HOOK, launch_heartbeat, tags)
from .base import Executor, RunContext, fail
from .retry import call, error_code

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"


def hooks(rc: RunContext, a: Action) -> list[dict]:
    c = rc.config.cluster(a.cluster)
    return [
        {"LifecycleHookName": LAUNCH_HOOK, "LifecycleTransition": LAUNCHING,
         "HeartbeatTimeout": launch_heartbeat(c), "DefaultResult": "ABANDON"},
        {"LifecycleHookName": TERMINATE_HOOK, "LifecycleTransition": TERMINATING,
         "HeartbeatTimeout": TERMINATE_HEARTBEAT, "DefaultResult": "CONTINUE"},
    ]


def template_version(rc: RunContext, a: Action) -> str:
    v = rc.get(("lt-version", a.region, a.cluster))
    if v:
        return str(v)
    want = a.desired.attrs.get("launch_template_version")
    if want and want != KNOWN_AFTER_APPLY:
        return str(want)
    ec2 = rc.clients.client("ec2", a.region)
    got = call(ec2, "describe_launch_templates", LaunchTemplateNames=[a.desired.attrs["launch_template"]],
               after_create=True)["LaunchTemplates"]
    return str(got[0]["DefaultVersionNumber"])


def mixed_policy(rc: RunContext, a: Action) -> dict:
    at = a.desired.attrs
    return {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateName": at["launch_template"],
                                            "Version": template_version(rc, a)},
            "Overrides": [{"InstanceType": t} for t in at["types"]],
        },
        "InstancesDistribution": {
            "OnDemandBaseCapacity": at["on_demand_base"],
            "OnDemandPercentageAboveBaseCapacity": at["on_demand_above_base_pct"],
            "SpotAllocationStrategy": at["spot_allocation_strategy"],
        },
    }


def group_tags(rc: RunContext, a: Action) -> list[dict]:
    out = [{"ResourceId": a.name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
            "PropagateAtLaunch": True} for k, v in tags(rc.config, cluster=a.cluster, name=a.name).items()]
    out.append({"ResourceId": a.name, "ResourceType": "auto-scaling-group", "Key": TAG_HOOKS,
                "Value": a.desired.attrs["hooks"], "PropagateAtLaunch": False})
    return out


class GroupExecutor(Executor):
    kind = "asg"
    _run_instances = ("iam:PassRole", "ec2:RunInstances", "ec2:CreateTags", "ec2:DescribeLaunchTemplateVersions",
                      "ec2:DescribeLaunchTemplates")
    permissions = {
        "create": ("autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags",
                   "autoscaling:PutLifecycleHook", "iam:CreateServiceLinkedRole",
                   "autoscaling:UpdateAutoScalingGroup") + _run_instances,
        "update": ("autoscaling:UpdateAutoScalingGroup", "autoscaling:PutLifecycleHook",
                   "autoscaling:CreateOrUpdateTags") + _run_instances,
        "delete": ("autoscaling:DeleteAutoScalingGroup", "autoscaling:DescribeAutoScalingGroups",
                   "ec2:TerminateInstances"),
    }

    def create(self, rc: RunContext, a: Action) -> None:
        asc = rc.clients.client("autoscaling", a.region)
        at = a.desired.attrs
        if not at["subnets"]:
            raise fail(a, "no default subnet in the chosen availability zones",
                       "check the cluster's azs, or create default subnets")
        try:
            call(asc, "create_auto_scaling_group", AutoScalingGroupName=a.name,
                 MixedInstancesPolicy=mixed_policy(rc, a), MinSize=at["min_size"], MaxSize=at["max_size"],
                 DesiredCapacity=at["desired_capacity"], VPCZoneIdentifier=",".join(at["subnets"]),
                 HealthCheckType="EC2", HealthCheckGracePeriod=at["health_check_grace"],
                 CapacityRebalance=at["capacity_rebalance"], LifecycleHookSpecificationList=hooks(rc, a),
                 Tags=group_tags(rc, a), after_create=True)
        except Exception as e:  # noqa: BLE001
            if error_code(e) != "AlreadyExists":
                raise
            self._update_all(rc, a)  # our own create whose answer was lost

    def _update_all(self, rc: RunContext, a: Action) -> None:
        changes = {k: [None, v] for k, v in a.desired.attrs.items()}
        self._apply(rc, a, changes)

    def update(self, rc: RunContext, a: Action) -> None:
        self._apply(rc, a, a.changes)

    def _apply(self, rc: RunContext, a: Action, changes: dict) -> None:
        asc = rc.clients.client("autoscaling", a.region)
        at = a.desired.attrs
        params: dict = {}
        policy_changed = set(changes) & {"types", "on_demand_base", "on_demand_above_base_pct",
                                         "spot_allocation_strategy", "launch_template", "launch_template_version"}
        if policy_changed or set(changes) - {"hooks"}:
            # sent with every update: moto drops the policy of a group updated without one
            params["MixedInstancesPolicy"] = mixed_policy(rc, a)
        for attr, param in (("min_size", "MinSize"), ("max_size", "MaxSize"),
                            ("desired_capacity", "DesiredCapacity"), ("capacity_rebalance", "CapacityRebalance"),
                            ("health_check_grace", "HealthCheckGracePeriod")):
            if attr in changes:
                params[param] = at[attr]
        if "subnets" in changes:
            params["VPCZoneIdentifier"] = ",".join(at["subnets"])
        if params:
            call(asc, "update_auto_scaling_group", AutoScalingGroupName=a.name, **params)
        if "hooks" in changes:
            for h in hooks(rc, a):
                call(asc, "put_lifecycle_hook", AutoScalingGroupName=a.name, **h)
            call(asc, "create_or_update_tags", Tags=[t for t in group_tags(rc, a) if t["Key"] == TAG_HOOKS])

    def delete(self, rc: RunContext, a: Action) -> None:
        asc = rc.clients.client("autoscaling", a.region)
        try:
            call(asc, "delete_auto_scaling_group", AutoScalingGroupName=a.name, ForceDelete=True, draining=True)
        except Exception as e:  # noqa: BLE001
            if "not found" not in str(e).lower() and error_code(e) != "ValidationError":
                raise
        deadline = time.monotonic() + rc.wait_timeout
        while True:
            got = call(asc, "describe_auto_scaling_groups", AutoScalingGroupNames=[a.name])["AutoScalingGroups"]
            if not got:
                return
            if time.monotonic() > deadline:
                raise fail(a, "the group is still being deleted", "run destroy again later")
            rc.progress(f"waiting for group {a.name} to be deleted ({len(got[0].get('Instances', []))} instance(s))")
            time.sleep(min(5.0, max(0.2, rc.wait_timeout / 100)))
