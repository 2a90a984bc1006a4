"""reconcile for cron: drift by hand is planned (exit 2) and restored; deletions are refused
without --allow-delete (moto server over HTTP)."""
from __future__ import annotations

import copy
import json

import boto3
import pytest

from provisioner.app import run_plan, run_reconcile
from provisioner.app import run_apply
from tests.test_engine_common import fast, options, two_region_doc, write_config  # noqa: F401

A = "c3-llamacpp-dev-alpha"


@pytest.fixture
def applied(aws, fast, tmp_path):
    doc = two_region_doc()
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    return cfg, doc


def pending(cfg, state) -> int:
    opts, _ = options(state, detailed_exitcode=True)
    return run_plan(cfg, opts)


def drift_capacity():
    boto3.client("autoscaling", region_name="us-east-1").set_desired_capacity(AutoScalingGroupName=A, DesiredCapacity=3)


def drift_ingress():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    gid = ec2.describe_security_groups(GroupNames=["c3-llamacpp-dev"])["SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])


def drift_group_deleted():
    boto3.client("autoscaling", region_name="eu-west-1").delete_auto_scaling_group(
        AutoScalingGroupName="c3-llamacpp-dev-beta", ForceDelete=True)


def drift_eip_released():
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    [a] = ec2.describe_addresses()["Addresses"]
    ec2.release_address(AllocationId=a["AllocationId"])


DRIFTS = [
    ("desired capacity", drift_capacity, [("update", "asg")]),
    ("ingress rule added", drift_ingress, [("update", "security-group")]),
    ("group deleted", drift_group_deleted, [("create", "asg")]),
    ("address released", drift_eip_released, [("create", "eip")]),
]


@pytest.mark.parametrize("label,drift,expected", DRIFTS, ids=[d[0] for d in DRIFTS])
def test_drift_is_pending_and_reconcile_restores_it(applied, aws, tmp_path, label, drift, expected):
    cfg, _ = applied
    assert pending(cfg, tmp_path / "state") == 0
    drift()
    assert pending(cfg, tmp_path / "state") == 2
    opts, cap = options(tmp_path / "state", yes=False)
    assert run_reconcile(cfg, opts) == 0
    lines = [json.loads(x) for x in cap.out]
    assert [(d["op"], d["kind"]) for d in lines] == expected
    assert all(d["result"] == "ok" and set(d) >= {"op", "kind", "name", "region", "cluster", "reason", "changes"}
               for d in lines)
    assert pending(cfg, tmp_path / "state") == 0
    # in sync: nothing printed, exit 0
    opts, cap = options(tmp_path / "state", yes=False)
    assert run_reconcile(cfg, opts) == 0 and cap.out == []


def test_capacity_drift_names_old_and_new(applied, aws, tmp_path):
    cfg, _ = applied
    drift_capacity()
    opts, cap = options(tmp_path / "state", output="json")
    run_plan(cfg, opts)
    [a] = json.loads(cap.stdout)["actions"]
    assert a["changes"] == {"desired_capacity": [3, 2]}


@pytest.mark.parametrize("what", ["host", "cluster"])
def test_deletions_refused_without_allow_delete(applied, aws, tmp_path, what):
    cfg, doc = applied
    doc = copy.deepcopy(doc)
    if what == "host":
        doc["alpha"]["hosts"].remove("a2.example.com")
    else:
        del doc["beta"]
    cfg2 = write_config(tmp_path, doc)
    before = sorted(a["AllocationId"] for r in ("us-east-1", "eu-west-1")
                    for a in boto3.client("ec2", region_name=r).describe_addresses()["Addresses"])
    aws.clear_calls()
    opts, cap = options(tmp_path / "state", yes=False)
    assert run_reconcile(cfg2, opts) == 2
    lines = [json.loads(x) for x in cap.out]
    assert lines and {d["result"] for d in lines} == {"refused"}
    assert "eip" in {d["kind"] for d in lines}
    assert not [c for c in aws.calls if c.mutating and c.service in ("ec2", "autoscaling", "secretsmanager")]
    after = sorted(a["AllocationId"] for r in ("us-east-1", "eu-west-1")
                   for a in boto3.client("ec2", region_name=r).describe_addresses()["Addresses"])
    assert after == before
    assert any("--allow-delete" in e for e in cap.err)
    # with --allow-delete it goes through
    opts, cap = options(tmp_path / "state", yes=False, allow_delete=True)
    assert run_reconcile(cfg2, opts) == 0
    assert {json.loads(x)["result"] for x in cap.out} == {"ok"}
    assert pending(cfg2, tmp_path / "state") == 0
