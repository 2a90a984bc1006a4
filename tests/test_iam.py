"""Every executor declares the IAM actions it calls (incl. those AWS checks on the way); the
operator policy docs/iam-policy.json is generated from them; the instance role covers the agent."""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import boto3
import pytest

from provisioner.app import run_apply, run_destroy
from provisioner.aws import executors
from provisioner.aws.policy import AGENT_CALLS, all_permissions, agent_policy, canonical, policy_actions, render_operator_policy
from tests.test_engine_changes import free_addresses_of_terminated
from tests.test_engine_common import fast, options, two_region_doc, write_config  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def declared() -> set[str]:
    return all_permissions()


def test_every_executor_declares_each_operation():
    for kind, ex in executors.EXECUTORS.items():
        assert set(ex.permissions) == {"create", "update", "delete"}, kind
        assert ex.permissions["create"] and ex.permissions["delete"], kind
        for perms in ex.permissions.values():
            assert all(":" in p for p in perms), kind


def test_actions_checked_on_the_way_are_declared():
    asg = executors.EXECUTORS["asg"].permissions
    for op in ("create", "update"):
        assert {"iam:PassRole", "ec2:RunInstances", "ec2:CreateTags"} <= set(asg[op])
    assert "iam:CreateServiceLinkedRole" in asg["create"]
    assert "ssm:GetParameters" in executors.DISCOVERY_PERMISSIONS
    assert "iam:TagRole" in executors.EXECUTORS["iam-role"].permissions["create"]  # tags in CreateRole
    assert "ec2:CreateTags" in executors.EXECUTORS["eip"].permissions["create"]  # TagSpecifications


def test_committed_operator_policy_is_current():
    committed = (ROOT / "docs" / "iam-policy.json").read_text()
    assert committed == render_operator_policy(), "regenerate: python -m provisioner.aws.policy > docs/iam-policy.json"
    doc = json.loads(committed)
    assert policy_actions(doc) == declared()


def test_every_call_of_a_full_lifecycle_is_declared(aws, fast, tmp_path):
    """apply, change (update paths, host removal), destroy: each (service, action) sent is declared."""
    import threading
    doc = two_region_doc()
    doc["stack"]["ami"] = "resolve:ssm:/test/ami"
    for r in ("us-east-1", "eu-west-1"):
        boto3.client("ssm", region_name=r).put_parameter(Name="/test/ami", Value="ami-1e749f67", Type="String")
    doc["beta"]["model_config"]["hf_token"] = "${HF_TOKEN}"
    cfg = write_config(tmp_path, doc, env={"HF_TOKEN": "hf_x", "LLAMA_API_KEY": "sk-0123456789abcdef"})
    aws.clear_calls()
    opts, _ = options(tmp_path / "s")
    assert run_apply(cfg, opts) == 0
    # play the instance agent: a2's instance holds a2's address (so removing a2 terminates it)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    inst = boto3.client("autoscaling", region_name="us-east-1").describe_auto_scaling_groups(
        AutoScalingGroupNames=["c3-llamacpp-dev-alpha"])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    a2 = [a for a in ec2.describe_addresses()["Addresses"]
          if {"Key": "provision:host", "Value": "a2.example.com"} in a["Tags"]][0]
    ec2.associate_address(AllocationId=a2["AllocationId"], InstanceId=inst)
    d2 = copy.deepcopy(doc)
    d2["alpha"]["hosts"] = ["a1.example.com"]
    d2["beta"]["model_config"]["ctx_size"] = 2048
    d2["beta"]["launch_timeout"] = 600
    d2["stack"]["ssh_cidrs"] = ["10.0.0.0/8"]
    d2["stack"]["api-key"] = "${LLAMA_API_KEY}"
    cfg2 = write_config(tmp_path, d2, env={"HF_TOKEN": "hf_y", "LLAMA_API_KEY": "sk-0123456789abcdef"})
    stop = threading.Event()
    t = threading.Thread(target=free_addresses_of_terminated, args=(stop,), daemon=True)
    t.start()
    try:
        opts, _ = options(tmp_path / "s")
        assert run_apply(cfg2, opts) == 0
    finally:
        stop.set()
        t.join()
    opts, _ = options(tmp_path / "s")
    assert run_destroy(cfg2, opts) == 0
    # the emulator also saw this test's own calls (boto3 above, the address helper): drop those
    ours = {f"{c.service}:{c.action}" for c in aws.calls if c.fault is None}
    helper = {"ssm:PutParameter", "ec2:DisassociateAddress", "ec2:AssociateAddress"}
    # the provisioner never associates addresses (CONTRACT §4): the one association is this test's
    assert sum(1 for c in aws.calls if c.action == "AssociateAddress") == 1
    missing = sorted(ours - declared() - helper)
    assert missing == [], missing
    for needed in ("ec2:AllocateAddress", "ec2:CreateLaunchTemplateVersion", "autoscaling:PutLifecycleHook",
                   "autoscaling:TerminateInstanceInAutoScalingGroup", "secretsmanager:PutSecretValue",
                   "ssm:GetParameters", "dynamodb:DeleteTable"):
        assert needed in ours, needed


def agent_calls_from_source() -> set[str]:
    src = ROOT / "userdata" / "agent.py"
    if not src.exists():
        pytest.skip("userdata/agent.py not there")
    tree = ast.parse(src.read_text())
    clients = {"ec2": boto3.client("ec2", region_name="us-east-1"),
               "asg": boto3.client("autoscaling", region_name="us-east-1"),
               "sm": boto3.client("secretsmanager", region_name="us-east-1")}
    calls: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not (isinstance(owner, ast.Attribute) and owner.attr in clients):
            continue
        c = clients[owner.attr]
        method = node.func.attr
        if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
            method = node.args[0].value
        api = c.meta.method_to_api_mapping.get(method)
        if api:
            prefix = c.meta.service_model.signing_name
            calls.add(f"{prefix}:{api}")
    return calls


def test_instance_policy_covers_every_agent_call(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    from tests.test_engine_common import write_config as _w  # noqa: F401
    from provisioner.config import Config, StackSettings
    cfg = Config("dev", Path("dev.asg.yaml"), StackSettings(), ())
    granted = policy_actions(agent_policy(cfg))
    found = agent_calls_from_source()
    assert found, "no AWS call found in the agent"
    assert found <= granted, sorted(found - granted)
    assert set(AGENT_CALLS) <= granted
    # mutating grants are scoped: by tag condition or by resource name, never on "*"
    for st in agent_policy(cfg)["Statement"]:
        acts = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        if any(not a.split(":")[1].startswith(("Describe", "List", "Get")) for a in acts):
            if st["Sid"] != "AddressTargets":
                assert st["Resource"] != "*" and (st.get("Condition") or "c3-llamacpp/dev" in str(st["Resource"])), st
    assert "ec2:ReleaseAddress" not in granted  # the agent never releases addresses


def test_the_role_carries_the_instance_policy(aws, fast, tmp_path):
    cfg = write_config(tmp_path, two_region_doc())
    opts, _ = options(tmp_path / "s")
    assert run_apply(cfg, opts) == 0
    iam = boto3.client("iam", region_name="us-east-1")
    doc = iam.get_role_policy(RoleName="c3-llamacpp-dev-instance", PolicyName="provision-agent")["PolicyDocument"]
    assert canonical(doc) == canonical(agent_policy(cfg))
    prof = iam.get_instance_profile(InstanceProfileName="c3-llamacpp-dev-instance")["InstanceProfile"]
    assert [r["RoleName"] for r in prof["Roles"]] == ["c3-llamacpp-dev-instance"]
