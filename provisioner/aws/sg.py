"""The stack's security group `P` in each region's default VPC: 443 open, 22 only from ssh_cidrs."""
from __future__ import annotations

from ..actions import Action
from ..desired import tags
from .base import Executor, RunContext, fail, tag_spec
from .retry import call, error_code


def permission(rule: str) -> dict:
    proto, port, cidr = rule.split(":", 2)
    p: dict = {"IpProtocol": proto}
    if proto != "-1":
        lo, _, hi = str(port).partition("-")
        p["FromPort"], p["ToPort"] = int(lo), int(hi or lo)
    if cidr.startswith("sg-"):
        p["UserIdGroupPairs"] = [{"GroupId": cidr}]
    elif cidr.startswith("pl-"):
        p["PrefixListIds"] = [{"PrefixListId": cidr}]
    elif ":" in cidr:
        p["Ipv6Ranges"] = [{"CidrIpv6": cidr}]
    else:
        p["IpRanges"] = [{"CidrIp": cidr}]
    return p


class SecurityGroupExecutor(Executor):
    kind = "security-group"
    permissions = {
        "create": ("ec2:CreateSecurityGroup", "ec2:CreateTags", "ec2:AuthorizeSecurityGroupIngress",
                   "ec2:DescribeSecurityGroups"),
        "update": ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"),
        "delete": ("ec2:DeleteSecurityGroup",),
    }

    def create(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        vpc = a.desired.attrs.get("vpc_id")
        if not vpc:
            raise fail(a, "the region has no default VPC", "create one with 'aws ec2 create-default-vpc'")
        try:
            gid = call(ec2, "create_security_group", GroupName=a.name, VpcId=vpc,
                       Description=f"provision {rc.config.slug}/{rc.config.stack}: HTTPS to llama.cpp servers",
                       TagSpecifications=[tag_spec("security-group", tags(rc.config, name=a.name))])["GroupId"]
            have: list[str] = []
        except Exception as e:  # noqa: BLE001
            if error_code(e) != "InvalidGroup.Duplicate":
                raise
            got = call(ec2, "describe_security_groups", Filters=[
                {"Name": "group-name", "Values": [a.name]}, {"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
            g = got[0]
            t = {x["Key"]: x["Value"] for x in g.get("Tags", [])}
            if t.get("provision:stack") != rc.config.stack or t.get("provision:slug") != rc.config.slug:
                raise fail(a, f"a security group named {a.name} exists in {vpc} and is not this stack's",
                           "delete or rename it") from None
            gid = g["GroupId"]
            from .discovery import ingress_of
            have = ingress_of(g)
        rc.put(("security-group", a.region), gid)
        self._converge(ec2, gid, have, a.desired.attrs["ingress"], after_create=True)

    def _converge(self, ec2, gid: str, have: list[str], want: list[str], after_create: bool = False) -> None:
        add = [r for r in want if r not in have]
        drop = [r for r in have if r not in want]
        if add:
            try:
                call(ec2, "authorize_security_group_ingress", GroupId=gid,
                     IpPermissions=[permission(r) for r in add], after_create=after_create)
            except Exception as e:  # noqa: BLE001
                if error_code(e) != "InvalidPermission.Duplicate":
                    raise
        if drop:
            try:
                call(ec2, "revoke_security_group_ingress", GroupId=gid, IpPermissions=[permission(r) for r in drop])
            except Exception as e:  # noqa: BLE001
                if error_code(e) != "InvalidPermission.NotFound":
                    raise

    def update(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        rc.put(("security-group", a.region), a.live.id)
        self._converge(ec2, a.live.id, a.live.attrs.get("ingress") or [], a.desired.attrs["ingress"])

    def delete(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        try:
            call(ec2, "delete_security_group", GroupId=a.live.id, draining=True)
        except Exception as e:  # noqa: BLE001
            if error_code(e) != "InvalidGroup.NotFound":
                raise
