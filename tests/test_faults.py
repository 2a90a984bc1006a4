"""Interrupt safety: fail the k-th mutating call of a 2-region apply for EVERY k, lose the answer of
the k-th call, throttle a third of all calls: the re-run converges with no duplicate and no leak.

The fault layer (provisioner/emulators/aws.py) sits in front of moto in server mode over HTTP.
"fail" answers 500 without applying the call; "lose" lets moto apply it and answers 500.
"""
from __future__ import annotations

import collections

import boto3
import pytest

from provisioner.app import run_apply, run_plan
from provisioner.errors import ProvisionError
from tests.test_engine_common import cluster, fast, options, write_config  # noqa: F401

HOSTS = {"us-east-1": ["a1.example.com", "a2.example.com"], "eu-west-1": ["b1.example.com"]}


def doc():
    return {"stack": {"domain-name": "example.com", "ami": "ami-1e749f67", "image": "ghcr.io/example/c3-llamacpp:b1"},
            "alpha": cluster("us-east-1", HOSTS["us-east-1"]),
            "beta": cluster("eu-west-1", HOSTS["eu-west-1"], model_config={
                "api_name": "m", "model_repo": "o/r", "model_pattern": "*.gguf", "model_file": "m.gguf",
                "hf_token": "${HF_TOKEN}"})}


def drop_lease():
    """An interrupted run's lease expires by itself (TTL); the test does not wait for that."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    try:
        ddb.delete_item(TableName="c3-llamacpp-dev-lock", Key={"pk": {"S": "lease"}})
    except ddb.exceptions.ResourceNotFoundException:
        pass


def inventory() -> dict:
    """Every resource of the stack, counted per (kind, region, name): duplicates and leaks show."""
    inv: collections.Counter = collections.Counter()
    for r in HOSTS:
        ec2 = boto3.client("ec2", region_name=r)
        for a in ec2.describe_addresses()["Addresses"]:
            t = {x["Key"]: x["Value"] for x in a.get("Tags", [])}
            inv[("eip", r, t.get("provision:host"))] += 1
        for g in ec2.describe_security_groups()["SecurityGroups"]:
            if g["GroupName"] != "default":
                inv[("sg", r, g["GroupName"])] += 1
        for t in ec2.describe_launch_templates()["LaunchTemplates"]:
            inv[("lt", r, t["LaunchTemplateName"])] += 1
        for g in boto3.client("autoscaling", region_name=r).describe_auto_scaling_groups()["AutoScalingGroups"]:
            inv[("asg", r, g["AutoScalingGroupName"])] += 1
        for s in boto3.client("secretsmanager", region_name=r).list_secrets()["SecretList"]:
            inv[("secret", r, s["Name"])] += 1
    iam = boto3.client("iam", region_name="us-east-1")
    for x in iam.list_roles()["Roles"]:
        inv[("role", "global", x["RoleName"])] += 1
    for x in iam.list_instance_profiles()["InstanceProfiles"]:
        inv[("profile", "global", x["InstanceProfileName"])] += 1
    return dict(inv)


def converged(cfg, state, expected):
    drop_lease()
    opts, _ = options(state)
    assert run_apply(cfg, opts) == 0
    assert inventory() == expected
    opts, cap = options(state, detailed_exitcode=True)
    assert run_plan(cfg, opts) == 0, cap.stdout


@pytest.fixture
def setup(aws, fast, tmp_path):
    cfg = write_config(tmp_path, doc(), env={"HF_TOKEN": "hf_secret"})
    opts, _ = options(tmp_path / "ref")
    aws.clear_calls()
    assert run_apply(cfg, opts) == 0
    n = sum(1 for c in aws.calls if c.mutating)
    expected = inventory()
    assert all(v == 1 for v in expected.values())
    assert len([k for k in expected if k[0] == "eip"]) == 3
    return cfg, n, expected


def fresh(aws):
    aws.reset()


@pytest.mark.timeout(900)
def test_fail_every_kth_mutating_call_then_converge(setup, aws, tmp_path):
    cfg, n, expected = setup
    assert n >= 15
    for k in range(1, n + 1):
        fresh(aws)
        aws.faults.fail_mutating(k, n=10_000)  # the k-th call and all after it: the run dies there
        interrupted(cfg, aws, tmp_path / f"s{k}")
        aws.faults.clear()
        converged(cfg, tmp_path / f"s{k}", expected)


def interrupted(cfg, aws, state):
    opts, _ = options(state)
    try:
        run_apply(cfg, opts)
    except ProvisionError:
        return
    # only the lock's release may fail without failing the run (the lease expires by itself)
    failed = {(c.service, c.action) for c in aws.calls if c.fault in ("fail", "lose")}
    assert failed <= {("dynamodb", "DeleteItem")}, failed


@pytest.mark.timeout(900)
def test_lose_every_kth_answer_then_die_then_converge(setup, aws, tmp_path):
    """The k-th call is applied but its answer is lost, and the run dies right after: the next run
    finds what the lost call made (tags in the create call) and neither duplicates nor leaks it."""
    cfg, n, expected = setup
    for k in range(1, n + 1):
        fresh(aws)
        aws.faults.lose_answer(k)
        aws.faults.fail_mutating(k + 1, n=10_000)
        interrupted(cfg, aws, tmp_path / f"s{k}")
        aws.faults.clear()
        converged(cfg, tmp_path / f"s{k}", expected)


@pytest.mark.timeout(900)
def test_lose_every_kth_answer_retry_in_run(setup, aws, tmp_path):
    """The k-th answer is lost and the retry policy repeats the call within the run."""
    cfg, n, expected = setup
    for k in range(1, n + 1):
        fresh(aws)
        aws.faults.lose_answer(k)
        opts, _ = options(tmp_path / f"s{k}")
        try:
            run_apply(cfg, opts)
        except ProvisionError:
            pass  # a call that cannot be repeated as is (reported); the next run converges
        converged(cfg, tmp_path / f"s{k}", expected)


def test_throttle_a_third_of_all_calls(setup, aws, tmp_path):
    cfg, n, expected = setup
    fresh(aws)
    aws.faults.throttle_rate(1 / 3, seed=7)
    opts, _ = options(tmp_path / "t")
    assert run_apply(cfg, opts) == 0
    assert sum(1 for c in aws.calls if c.fault == "throttle") > 5
    opts, _ = options(tmp_path / "t", detailed_exitcode=True)
    assert run_plan(cfg, opts) == 0  # still throttled: the plan is read under the same policy
    aws.faults.clear()
    assert inventory() == expected
    opts, _ = options(tmp_path / "t", detailed_exitcode=True)
    assert run_plan(cfg, opts) == 0


@pytest.mark.timeout(900)
def test_destroy_interrupted_at_every_kth_call_then_completes(setup, aws, tmp_path):
    """destroy is interrupt-safe too: cut at each of its mutating calls, the next destroy finishes
    and leaves nothing of the stack (DNS aside: AWS only here)."""
    from provisioner.app import run_destroy
    cfg, _n, _expected = setup
    fresh(aws)
    opts, _ = options(tmp_path / "d0")
    assert run_apply(cfg, opts) == 0
    aws.clear_calls()
    opts, _ = options(tmp_path / "d0")
    assert run_destroy(cfg, opts) == 0
    n = sum(1 for c in aws.calls if c.mutating)
    assert inventory() == {}
    for k in range(1, n + 1):
        fresh(aws)
        opts, _ = options(tmp_path / f"d{k}")
        assert run_apply(cfg, opts) == 0
        aws.faults.fail_mutating(k, n=10_000)
        opts, _ = options(tmp_path / f"d{k}")
        try:
            run_destroy(cfg, opts)
        except ProvisionError:
            pass
        aws.faults.clear()
        drop_lease()
        opts, _ = options(tmp_path / f"d{k}")
        assert run_destroy(cfg, opts) == 0
        assert inventory() == {}, k
