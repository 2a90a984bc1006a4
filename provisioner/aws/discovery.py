"""Read-only, batched discovery: per region ONE tag-filtered, paginated describe per kind.

Never one call per resource: a no-op plan costs the same number of calls for 1 or 200 clusters
(beyond pagination). Only resources whose `provision:slug` AND `provision:stack` tags match are ours.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..actions import Resource
from ..config import Config, Secret
from ..desired import (TAG_CLUSTER, TAG_HOOKS, TAG_HOST, TAG_LT_PREFIX, TAG_SLUG, TAG_STACK, RegionFacts,
                       owned, role_name)
from .clients import Clients
from .retry import call, error_code, paginate

LT_INT_ATTRS = ("volume_gb", "throughput", "iops", "snapshot_gb")


def tagdict(tags: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in (tags or [])}


def ec2_tag_filters(config: Config) -> list[dict]:
    return [{"Name": f"tag:{TAG_SLUG}", "Values": [config.slug]},
            {"Name": f"tag:{TAG_STACK}", "Values": [config.stack]}]


@dataclass
class RegionInventory:
    region: str
    facts: RegionFacts
    resources: list[Resource] = field(default_factory=list)
    lt_recorded: dict[str, dict[str, Any]] = field(default_factory=dict)  # cluster -> recorded tags
    lt_versions: dict[str, int] = field(default_factory=dict)  # cluster -> latest version
    instances: list[dict] = field(default_factory=list)  # only when asked (status)


def ingress_of(group: dict) -> list[str]:
    rules = []
    for p in group.get("IpPermissions", []):
        proto = p.get("IpProtocol", "")
        port = p.get("FromPort", -1)
        if p.get("ToPort", port) != port:
            port = f"{port}-{p.get('ToPort')}"
        for r in p.get("IpRanges", []):
            rules.append(f"{proto}:{port}:{r['CidrIp']}")
        for r in p.get("Ipv6Ranges", []):
            rules.append(f"{proto}:{port}:{r['CidrIpv6']}")
        for g in p.get("UserIdGroupPairs", []):
            rules.append(f"{proto}:{port}:{g.get('GroupId')}")
        for pl in p.get("PrefixListIds", []):
            rules.append(f"{proto}:{port}:{pl.get('PrefixListId')}")
    return sorted(rules)


def discover_region(clients: Clients, config: Config, region: str, *, with_instances: bool = False,
                    compare_secrets: bool = False) -> RegionInventory:
    ec2 = clients.client("ec2", region)
    inv = RegionInventory(region, RegionFacts())
    # the three services are asked concurrently; each kind is one paginated call
    asg_res: list[Resource] = []
    sm_res: list[Resource] = []

    def ec2_kinds() -> None:
        vpcs = call(ec2, "describe_vpcs", Filters=[{"Name": "isDefault", "Values": ["true"]}]).get("Vpcs", [])
        if vpcs:
            inv.facts.vpc_id = vpcs[0]["VpcId"]
            subnets = paginate(ec2, "describe_subnets", "Subnets",
                               Filters=[{"Name": "vpc-id", "Values": [inv.facts.vpc_id]},
                                        {"Name": "default-for-az", "Values": ["true"]}])
            inv.facts.subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}
        filters = ec2_tag_filters(config)

        for g in paginate(ec2, "describe_security_groups", "SecurityGroups", Filters=filters):
            t = tagdict(g.get("Tags"))
            if not owned(config, t):
                continue
            inv.facts.security_group_id = g["GroupId"]
            inv.resources.append(Resource("security-group", g["GroupName"], region, id=g["GroupId"],
                                          attrs={"vpc_id": g.get("VpcId"), "ingress": ingress_of(g)},
                                          data={"group": g}))

        for a in call(ec2, "describe_addresses", Filters=filters).get("Addresses", []):
            t = tagdict(a.get("Tags"))
            if not owned(config, t) or not t.get(TAG_HOST):
                continue
            inv.resources.append(Resource("eip", t[TAG_HOST], region, t.get(TAG_CLUSTER), id=a["AllocationId"],
                                          in_use=bool(a.get("AssociationId") or a.get("InstanceId")),
                                          data={"public_ip": a.get("PublicIp"), "instance_id": a.get("InstanceId"),
                                                "association_id": a.get("AssociationId"),
                                                "created": a.get("AllocationTime", "") and str(a.get("AllocationTime"))}))

        templates = [lt for lt in paginate(ec2, "describe_launch_templates", "LaunchTemplates", Filters=filters,
                                           MaxResults=200)
                     if owned(config, tagdict(lt.get("Tags")))]
        current: dict[str, dict[str, str]] = {}
        if templates:
            # the recorded provision:lt:* tags as they are now (one call for all templates; moto's
            # DescribeLaunchTemplates keeps showing the tags given at creation)
            for tg in paginate(ec2, "describe_tags", "Tags", MaxResults=1000, Filters=[
                    {"Name": "resource-type", "Values": ["launch-template"]},
                    {"Name": "key", "Values": [f"{TAG_LT_PREFIX}*"]}]):
                current.setdefault(tg["ResourceId"], {})[tg["Key"]] = tg.get("Value", "")
        for lt in templates:
            t = dict(tagdict(lt.get("Tags")), **current.get(lt["LaunchTemplateId"], {}))
            rec: dict[str, Any] = {}
            for k, v in t.items():
                if k.startswith(TAG_LT_PREFIX):
                    attr = k[len(TAG_LT_PREFIX):]
                    rec[attr] = int(v) if attr in LT_INT_ATTRS and v.isdigit() else v
            if "model_gb" in rec:
                try:
                    rec["model_gb"] = None if rec["model_gb"] in ("", "unknown") else float(rec["model_gb"])
                except ValueError:
                    rec["model_gb"] = None
            cl = t.get(TAG_CLUSTER)
            attrs = {k: rec.get(k) for k in ("image_id", "ami_source", "root_device", "volume_gb", "throughput",
                                             "iops", "security_group_id", "instance_profile", "user_data_sha")}
            inv.resources.append(Resource("launch-template", lt["LaunchTemplateName"], region, cl,
                                          id=lt["LaunchTemplateId"], attrs=attrs,
                                          data={"default_version": lt.get("DefaultVersionNumber")}))
            if cl:
                inv.lt_recorded[cl] = rec
                inv.lt_versions[cl] = lt.get("DefaultVersionNumber")  # ours; a hand-made version is not

        if with_instances:
            for r in paginate(ec2, "describe_instances", "Reservations", Filters=filters + [
                    {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]):
                inv.instances.extend(i for i in r.get("Instances", []) if owned(config, tagdict(i.get("Tags"))))

    def asg_kinds() -> None:
        inv_resources = asg_res
        asc = clients.client("autoscaling", region)
        groups = paginate(asc, "describe_auto_scaling_groups", "AutoScalingGroups", MaxRecords=100,
                          Filters=[{"Name": f"tag:{TAG_SLUG}", "Values": [config.slug]},
                                   {"Name": f"tag:{TAG_STACK}", "Values": [config.stack]}])
        for g in groups:
            t = tagdict(g.get("Tags"))
            if not owned(config, t):
                continue
            if g.get("Status") == "Delete in progress":
                continue
            inv_resources.append(asg_resource(g, t, region))


    def secret_kinds() -> None:
        inv_resources = sm_res
        sm = clients.client("secretsmanager", region)
        for s in paginate(sm, "list_secrets", "SecretList", MaxResults=100,
                          Filters=[{"Key": "tag-key", "Values": [TAG_STACK]}, {"Key": "tag-value", "Values": [config.stack]}]):
            t = tagdict(s.get("Tags"))
            if not owned(config, t) or s.get("DeletedDate"):
                continue
            if t.get("provision:kind"):  # certificates and the ACME account: the certificate provider's
                continue
            inv_resources.append(Resource("secret", s["Name"], region, t.get(TAG_CLUSTER), id=s["ARN"], attrs={}))
        secrets = [r for r in inv_resources if r.kind == "secret"]
        if compare_secrets and secrets:
            # values only to compare with the config's (by fingerprint); never stored or printed
            by_arn = {r.id: r for r in secrets}
            arns = list(by_arn)
            for i in range(0, len(arns), 20):
                got = call(sm, "batch_get_secret_value", SecretIdList=arns[i:i + 20])
                for v in got.get("SecretValues", []):
                    r = by_arn.get(v.get("ARN"))
                    if r is not None and "SecretString" in v:
                        r.attrs["value"] = Secret(v["SecretString"]).fingerprint()

    with ThreadPoolExecutor(max_workers=3) as pool:
        for f in [pool.submit(ec2_kinds), pool.submit(asg_kinds), pool.submit(secret_kinds)]:
            f.result()
    inv.resources.extend(asg_res)
    inv.resources.extend(sm_res)
    return inv


def asg_resource(g: dict, t: dict[str, str], region: str) -> Resource:
    mip = g.get("MixedInstancesPolicy") or {}
    lts = (mip.get("LaunchTemplate") or {})
    spec = lts.get("LaunchTemplateSpecification") or g.get("LaunchTemplate") or {}
    dist = mip.get("InstancesDistribution") or {}
    types = [o.get("InstanceType") for o in lts.get("Overrides", []) if o.get("InstanceType")]
    subnets = sorted(s for s in (g.get("VPCZoneIdentifier") or "").split(",") if s)
    hooks = t.get(TAG_HOOKS)
    return Resource("asg", g["AutoScalingGroupName"], region, t.get(TAG_CLUSTER), id=g.get("AutoScalingGroupARN"),
                    attrs={
                        "min_size": g.get("MinSize"),
                        "max_size": g.get("MaxSize"),
                        "desired_capacity": g.get("DesiredCapacity"),
                        "types": types,
                        "on_demand_base": dist.get("OnDemandBaseCapacity"),
                        "on_demand_above_base_pct": dist.get("OnDemandPercentageAboveBaseCapacity"),
                        "spot_allocation_strategy": dist.get("SpotAllocationStrategy"),
                        "capacity_rebalance": g.get("CapacityRebalance"),
                        "subnets": subnets,
                        "health_check_grace": g.get("HealthCheckGracePeriod"),
                        "launch_template": spec.get("LaunchTemplateName"),
                        "launch_template_version": spec.get("Version"),
                        "hooks": hooks,
                    },
                    data={"instances": g.get("Instances", [])})


def discover_global(clients: Clients, config: Config, region: str) -> list[Resource]:
    iam = clients.client("iam", region)
    name = role_name(config)
    try:
        role = call(iam, "get_role", RoleName=name)["Role"]
    except Exception as e:  # noqa: BLE001
        if error_code(e) == "NoSuchEntity":
            return []
        raise
    t = tagdict(role.get("Tags"))
    if not owned(config, t):
        return []  # a role of that name that is not ours: the create will fail with a clear error
    try:
        doc = call(iam, "get_role_policy", RoleName=name, PolicyName="provision-agent")["PolicyDocument"]
    except Exception as e:  # noqa: BLE001
        if error_code(e) != "NoSuchEntity":
            raise
        doc = None
    has_profile = False
    try:
        prof = call(iam, "get_instance_profile", InstanceProfileName=name)["InstanceProfile"]
        has_profile = any(r["RoleName"] == name for r in prof.get("Roles", []))
    except Exception as e:  # noqa: BLE001
        if error_code(e) != "NoSuchEntity":
            raise
    from .policy import canonical
    return [Resource("iam-role", name, "global", id=role.get("Arn"),
                     attrs={"policy": canonical(doc) if doc is not None else None, "instance_profile": has_profile})]
