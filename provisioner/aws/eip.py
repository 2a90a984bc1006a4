"""One Elastic IP per host, tagged `provision:host` in the AllocateAddress call itself.

AllocateAddress has no client token: when an answer is lost, the retry first looks for an address
already tagged for the host, and any duplicate that still slips through is found (by its tags) and
released by the next plan (only an unassociated one; never one an instance holds).
Removing a host: lower the group's MinSize, terminate the instance holding the address with the
desired capacity decremented, wait for the address to be free, release it. The provisioner never
associates or disassociates addresses (the instance agent does)."""
from __future__ import annotations

import time

from ..actions import Action
from ..desired import TAG_HOST, TAG_SLUG, TAG_STACK, cluster_name, tags
from ..errors import CloudError
from .base import Executor, RunContext, fail, tag_spec
from .retry import call, error_code, is_transient, retrying

QUOTA = "'EC2-VPC Elastic IPs' (L-0263D0A3, default 5 per region)"


def public_ip_key(region: str, host: str) -> tuple[str, str, str]:
    """Where a run keeps the public IP of an address it allocated (the DNS record needs it)."""
    return ("eip-public-ip", region, host)


class AddressExecutor(Executor):
    kind = "eip"
    permissions = {
        "create": ("ec2:AllocateAddress", "ec2:CreateTags", "ec2:DescribeAddresses"),
        "update": (),
        "delete": ("ec2:ReleaseAddress", "ec2:DescribeAddresses", "autoscaling:UpdateAutoScalingGroup",
                   "autoscaling:TerminateInstanceInAutoScalingGroup", "autoscaling:DescribeAutoScalingGroups",
                   "ec2:TerminateInstances"),
    }

    def _find(self, rc: RunContext, ec2, host: str) -> dict | None:
        got = call(ec2, "describe_addresses", Filters=[
            {"Name": f"tag:{TAG_SLUG}", "Values": [rc.config.slug]},
            {"Name": f"tag:{TAG_STACK}", "Values": [rc.config.stack]},
            {"Name": f"tag:{TAG_HOST}", "Values": [host]}]).get("Addresses", [])
        return got[0] if got else None

    def create(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        t = tags(rc.config, cluster=a.cluster, host=a.name,
                 name=f"{rc.config.slug}-{rc.config.stack}-{a.name}")
        first = True
        for attempt in retrying():
            with attempt:
                found = None if first else self._find(rc, ec2, a.name)
                if found:  # the lost answer's address is there: no duplicate
                    rc.put(public_ip_key(a.region, a.name), found.get("PublicIp"))
                    return
                first = False
                try:
                    got = ec2.allocate_address(Domain="vpc", TagSpecifications=[tag_spec("elastic-ip", t)])
                    rc.put(public_ip_key(a.region, a.name), got.get("PublicIp"))
                    return
                except Exception as e:  # noqa: BLE001
                    if error_code(e) == "AddressLimitExceeded":
                        raise fail(a, f"the Elastic IP quota of {a.region} is exhausted",
                                   f"release unused addresses or raise the Service Quota {QUOTA} "
                                   f"in {a.region}") from None
                    raise

    def update(self, rc: RunContext, a: Action) -> None:
        return None

    def delete(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        instance = a.live.data.get("instance_id")
        if instance and a.live.cluster:
            self._terminate_holder(rc, a, instance)
        deadline = time.monotonic() + rc.wait_timeout
        while True:
            cur = [x for x in call(ec2, "describe_addresses", AllocationIds=[a.live.id]).get("Addresses", [])] \
                if a.live.id else []
            if not cur:
                return  # already released
            if not (cur[0].get("AssociationId") or cur[0].get("InstanceId")):
                break
            if time.monotonic() > deadline:
                raise fail(a, f"address {cur[0].get('PublicIp')} is still held by {cur[0].get('InstanceId')}",
                           "the instance should drain and let it go; run destroy/apply again later")
            rc.progress(f"waiting for {cur[0].get('InstanceId')} to let go of {cur[0].get('PublicIp')} ({a.name})")
            time.sleep(min(5.0, max(0.2, rc.wait_timeout / 100)))
        try:
            call(ec2, "release_address", AllocationId=a.live.id, draining=True)
        except CloudError:
            raise
        except Exception as e:  # noqa: BLE001
            if error_code(e) not in ("InvalidAllocationID.NotFound", "InvalidAddress.NotFound"):
                raise

    def _terminate_holder(self, rc: RunContext, a: Action, instance: str) -> None:
        asc = rc.clients.client("autoscaling", a.region)
        name = cluster_name(rc.config, a.live.cluster)
        groups = call(asc, "describe_auto_scaling_groups", AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not groups or not any(i["InstanceId"] == instance for i in groups[0].get("Instances", [])):
            return  # not in our group (already gone): wait for the address to be free
        g = groups[0]
        new_min = max(0, min(g["MinSize"], g["DesiredCapacity"] - 1))
        if new_min < g["MinSize"]:
            # AWS refuses to decrement below MinSize (moto does not check): lower it first
            call(asc, "update_auto_scaling_group", AutoScalingGroupName=name, MinSize=new_min)
        rc.progress(f"terminating {instance}, which holds {a.name}'s address")
        try:
            call(asc, "terminate_instance_in_auto_scaling_group", InstanceId=instance,
                 ShouldDecrementDesiredCapacity=True, draining=True)
        except Exception as e:  # noqa: BLE001
            if not ("not found" in str(e).lower() or is_transient(e)):
                raise
