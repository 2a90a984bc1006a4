"""apply / plan / destroy against moto in server mode over HTTP (the `aws` fixture)."""
from __future__ import annotations

import base64
import gzip
import json

import boto3
import pytest

from provisioner.app import run_apply, run_destroy, run_output, run_plan, run_status
from provisioner.errors import ProvisionError
from provisioner.state import state_path
from tests.test_engine_common import (AMI, fast, mutating, options, snapshot, two_region_doc,  # noqa: F401
                                      write_config)

P = "c3-llamacpp-dev"


def tags_of(obj) -> dict:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", [])}


def test_apply_from_nothing_then_noop(aws, fast, tmp_path):
    cfg = write_config(tmp_path, two_region_doc())
    opts, cap = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    assert "Apply complete" in cap.stdout

    ec2 = boto3.client("ec2", region_name="us-east-1")
    asc = boto3.client("autoscaling", region_name="us-east-1")
    # Elastic IPs: one per host, tagged in the AllocateAddress call itself
    addrs = ec2.describe_addresses()["Addresses"]
    assert sorted(tags_of(a)["provision:host"] for a in addrs) == ["a1.example.com", "a2.example.com"]
    for a in addrs:
        t = tags_of(a)
        assert t["provision:slug"] == "c3-llamacpp" and t["provision:stack"] == "dev" and t["provision:cluster"] == "alpha"
    alloc = [c for c in aws.calls if c.action == "AllocateAddress"]
    assert alloc and all("TagSpecification.1.ResourceType" in c.params for c in alloc)
    assert not [c for c in aws.calls if c.action == "CreateTags" and c.params.get("ResourceId.1", "").startswith("eipalloc")]

    # launch template: gp3 on the AMI's root device, throughput + IOPS, IMDSv2 hop 1, profile, tags.
    # moto does not apply a template's IMDS settings to the instances it launches: we check the
    # template we sent (what AWS applies to every instance of the group).
    lt = ec2.describe_launch_template_versions(LaunchTemplateName=f"{P}-alpha", Versions=["$Latest"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    root = ec2.describe_images(ImageIds=[AMI])["Images"][0]["RootDeviceName"]
    ebs = lt["BlockDeviceMappings"][0]
    assert ebs["DeviceName"] == root
    assert ebs["Ebs"]["VolumeType"] == "gp3" and ebs["Ebs"]["VolumeSize"] == 100
    assert ebs["Ebs"]["Throughput"] == 1000 and ebs["Ebs"]["Iops"] >= 4000
    assert lt["MetadataOptions"]["HttpTokens"] == "required" and lt["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert lt["IamInstanceProfile"]["Name"] == f"{P}-instance"
    # (moto also echoes the template's own tag specification into its data)
    assert {"instance", "volume"} <= {s["ResourceType"] for s in lt["TagSpecifications"]}
    assert "KeyName" not in lt
    ud = gzip.decompress(base64.b64decode(lt["UserData"])).decode()
    assert ud.startswith("#cloud-config")

    # the group: mixed instances, on-demand base, capacity rebalance, desired = min = hosts, max = +1
    g = asc.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{P}-alpha"])["AutoScalingGroups"][0]
    mip = g["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in mip["LaunchTemplate"]["Overrides"]] == ["g5.xlarge", "g6.xlarge"]
    dist = mip["InstancesDistribution"]
    assert dist["OnDemandBaseCapacity"] == 1 and dist["OnDemandPercentageAboveBaseCapacity"] == 0
    assert dist["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert g["CapacityRebalance"] is True
    assert (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]) == (2, 2, 3)
    # moto does not keep lifecycle hooks given in CreateAutoScalingGroup: check the request we sent
    create = [c for c in aws.calls if c.action == "CreateAutoScalingGroup" and c.params.get("AutoScalingGroupName") == f"{P}-alpha"][0]
    hooks = {create.params[f"LifecycleHookSpecificationList.member.{i}.LifecycleHookName"]:
             (create.params[f"LifecycleHookSpecificationList.member.{i}.DefaultResult"],
              create.params[f"LifecycleHookSpecificationList.member.{i}.HeartbeatTimeout"],
              create.params[f"LifecycleHookSpecificationList.member.{i}.LifecycleTransition"]) for i in (1, 2)}
    assert hooks["provision-launch"] == ("ABANDON", "7200", "autoscaling:EC2_INSTANCE_LAUNCHING")
    assert hooks["provision-terminate"][0] == "CONTINUE"

    # the API key: generated once, the same value in both regions, never in the state file
    vals = {r: boto3.client("secretsmanager", region_name=r).get_secret_value(
        SecretId="c3-llamacpp/dev/api-key")["SecretString"] for r in ("us-east-1", "eu-west-1")}
    assert len(set(vals.values())) == 1
    st = state_path(tmp_path / "state", "dev")
    assert oct(st.stat().st_mode & 0o777) == "0o600"
    assert vals["us-east-1"] not in st.read_text()
    assert vals["us-east-1"] not in ud

    # a second apply makes zero mutating calls; plan --detailed-exitcode says in sync
    aws.clear_calls()
    opts, cap = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    assert "No changes" in cap.stdout
    muts = [m for m in mutating(aws) if m[0] != "dynamodb"]  # the lock's own lease writes aside
    assert muts == []
    opts, cap = options(tmp_path / "state", detailed_exitcode=True)
    assert run_plan(cfg, opts) == 0

    # a deleted state file: still a no-op
    st.unlink()
    aws.clear_calls()
    opts, cap = options(tmp_path / "state", detailed_exitcode=True, output="json")
    assert run_plan(cfg, opts) == 0
    assert json.loads(cap.stdout) == {"stack": "dev", "actions": []}
    assert mutating(aws) == []


def test_no_tty_no_yes_changes_nothing(aws, fast, tmp_path):
    cfg = write_config(tmp_path, two_region_doc())
    opts, cap = options(tmp_path / "state", yes=False, interactive=False)
    with pytest.raises(ProvisionError, match="--yes"):
        run_apply(cfg, opts)
    assert mutating(aws) == []
    # a TTY that answers no changes nothing either
    opts, cap = options(tmp_path / "state", yes=False, interactive=True)
    opts.confirm = lambda prompt: False
    assert run_apply(cfg, opts) == 1
    assert [m for m in mutating(aws) if m[0] != "dynamodb"] == []


def test_destroy_leaves_nothing_and_apply_again(aws, fast, tmp_path):
    cfg = write_config(tmp_path, two_region_doc())
    before = snapshot()
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    mid = snapshot()
    for kind in ("sg", "eip", "lt", "asg", "secret"):
        assert mid[("us-east-1", kind)] != before[("us-east-1", kind)], kind
    opts, cap = options(tmp_path / "state")
    assert run_destroy(cfg, opts) == 0
    after = snapshot()
    assert after == before
    assert not state_path(tmp_path / "state", "dev").exists()
    # destroy then apply works (secrets were deleted without a recovery window)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    opts, _ = options(tmp_path / "state", detailed_exitcode=True)
    assert run_plan(cfg, opts) == 0


def test_foreign_resources_untouched(aws, fast, tmp_path):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]

    def tagset(slug, stack):
        return [{"Key": "provision:slug", "Value": slug}, {"Key": "provision:stack", "Value": stack},
                {"Key": "provision:cluster", "Value": "alpha"}, {"Key": "provision:host", "Value": "a1.example.com"}]

    foreign = []
    for slug, stack in (("c3-llamacpp", "prod"), ("other", "dev"), (None, None)):
        spec = [{"ResourceType": "elastic-ip", "Tags": tagset(slug, stack)}] if slug else []
        foreign.append(ec2.allocate_address(Domain="vpc", TagSpecifications=spec)["AllocationId"])
        name = f"foreign-{slug}-{stack}"
        sgspec = [{"ResourceType": "security-group", "Tags": tagset(slug, stack)}] if slug else []
        ec2.create_security_group(GroupName=name, Description="x", VpcId=vpc, TagSpecifications=sgspec)
        sm.create_secret(Name=f"{slug}/{stack}/api-key", SecretString="foreign",
                         Tags=tagset(slug, stack)[:2] if slug else [])
    before = snapshot()
    cfg = write_config(tmp_path, two_region_doc())
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    opts, _ = options(tmp_path / "state")
    assert run_destroy(cfg, opts) == 0
    assert snapshot() == before
    assert set(foreign) <= {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]}


def test_status_and_output(aws, fast, tmp_path):
    cfg = write_config(tmp_path, two_region_doc())
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    opts, cap = options(tmp_path / "state", output="json")
    assert run_output(cfg, opts, None) == 0
    out = json.loads(cap.stdout)
    assert out["api-key"] == "[secret]"
    assert len(out["clusters"]["alpha"]["ips"]) == 2
    opts, cap = options(tmp_path / "state", show_secrets=True)
    assert run_output(cfg, opts, "api-key") == 0
    assert cap.stdout.startswith("sk-")
    opts, cap = options(tmp_path / "state", output="json")
    assert run_status(cfg, opts) == 0
    rows = json.loads(cap.stdout)["hosts"]
    assert {r["host"] for r in rows if r["host"]} == {"a1.example.com", "a2.example.com", "b1.example.com"}
