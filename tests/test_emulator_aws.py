"""The AWS emulator (moto server + our fault layer), driven by real boto3 over HTTP."""
from __future__ import annotations

import json
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from provisioner.emulators.aws import RemoteAws, is_mutating

ONE_TRY = Config(retries={"total_max_attempts": 1})


def client(name, **kw):
    return boto3.client(name, config=ONE_TRY, **kw)


def code_of(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_env_points_boto3_at_emulator(aws):
    ec2 = client("ec2")
    assert ec2.meta.endpoint_url == aws.url
    vpcs = ec2.describe_vpcs()["Vpcs"]
    assert vpcs and vpcs[0]["IsDefault"]
    assert [(c.service, c.action, c.region, c.status) for c in aws.calls] == [
        ("ec2", "DescribeVpcs", "us-east-1", 200)]


def test_records_service_and_action_across_protocols(aws):
    client("ec2", region_name="eu-west-1").describe_regions()
    client("autoscaling").describe_auto_scaling_groups()
    client("iam").list_roles()
    client("secretsmanager").list_secrets()
    client("dynamodb").list_tables()
    client("sts").get_caller_identity()
    got = [(c.service, c.action, c.region) for c in aws.calls]
    assert got == [("ec2", "DescribeRegions", "eu-west-1"),
                   ("autoscaling", "DescribeAutoScalingGroups", "us-east-1"),
                   ("iam", "ListRoles", "us-east-1"),
                   ("secretsmanager", "ListSecrets", "us-east-1"),
                   ("dynamodb", "ListTables", "us-east-1"),
                   ("sts", "GetCallerIdentity", "us-east-1")]
    assert not any(c.mutating for c in aws.calls)


@pytest.mark.parametrize("service,call,code", [
    ("ec2", lambda c: c.describe_vpcs(), "RequestLimitExceeded"),
    ("autoscaling", lambda c: c.describe_auto_scaling_groups(), "Throttling"),
    ("iam", lambda c: c.list_roles(), "Throttling"),
    ("secretsmanager", lambda c: c.list_secrets(), "ThrottlingException"),
    ("dynamodb", lambda c: c.list_tables(), "ThrottlingException"),
])
def test_throttle_answers_in_the_service_protocol(aws, service, call, code):
    c = client(service)
    aws.faults.throttle(None, 2, service=service)
    for _ in range(2):
        with pytest.raises(ClientError) as ei:
            call(c)
        assert code_of(ei.value) == (code, 400)
    call(c)  # the third goes through
    assert [x.fault for x in aws.calls] == ["throttle", "throttle", None]


def test_throttle_is_per_action_and_boto3_retries_it(aws):
    ec2 = boto3.client("ec2", config=Config(retries={"mode": "standard", "total_max_attempts": 5}))
    aws.faults.throttle("DescribeSubnets", 2)
    ec2.describe_vpcs()
    assert ec2.describe_subnets()["Subnets"]
    assert [(c.action, c.status) for c in aws.calls] == [
        ("DescribeVpcs", 200)] + [("DescribeSubnets", 400)] * 2 + [("DescribeSubnets", 200)]


def test_fail_kth_mutating_call_is_not_applied(aws):
    sm = client("secretsmanager")
    aws.faults.fail_mutating(2)
    sm.create_secret(Name="one", SecretString="x")
    sm.list_secrets()  # reads do not count
    with pytest.raises(ClientError) as ei:
        sm.create_secret(Name="two", SecretString="x")
    assert code_of(ei.value) == ("InternalError", 500)
    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert names == ["one"]
    sm.create_secret(Name="three", SecretString="x")  # one-shot
    assert [c.fault for c in aws.calls if c.mutating] == [None, "fail", None]


def test_lose_answer_applies_then_answers_500(aws):
    ec2 = client("ec2")
    aws.faults.lose_answer(1)
    with pytest.raises(ClientError) as ei:
        ec2.allocate_address(Domain="vpc", TagSpecifications=[
            {"ResourceType": "elastic-ip", "Tags": [{"Key": "provision:host", "Value": "a.example.com"}]}])
    assert code_of(ei.value) == ("InternalError", 500)
    addrs = ec2.describe_addresses()["Addresses"]
    assert len(addrs) == 1 and addrs[0]["Tags"] == [{"Key": "provision:host", "Value": "a.example.com"}]
    alloc = [c for c in aws.calls if c.action == "AllocateAddress"][0]
    assert (alloc.fault, alloc.status, alloc.params["Domain"]) == ("lose", 500, "vpc")


def test_throttle_rate_is_seeded(aws):
    ec2 = client("ec2")

    def run():
        aws.reset()
        aws.faults.throttle_rate(0.5, seed=7)
        errors = 0
        for _ in range(20):
            try:
                ec2.describe_vpcs()
            except ClientError as e:
                assert code_of(e) == ("RequestLimitExceeded", 400)
                errors += 1
        faults = [c.fault for c in aws.calls]
        assert faults.count("throttle") == errors
        return faults

    first, second = run(), run()
    assert first == second
    assert 3 < first.count("throttle") < 17


def test_latency(aws):
    ec2 = client("ec2")
    ec2.describe_vpcs()
    aws.faults.latency(0.3)
    t = time.monotonic()
    ec2.describe_vpcs()
    assert time.monotonic() - t >= 0.3


def _asg(aws):
    ec2 = client("ec2")
    asg = client("autoscaling")
    lt = ec2.create_launch_template(LaunchTemplateName="lt-test", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})["LaunchTemplate"]
    asg.create_auto_scaling_group(AutoScalingGroupName="g", MinSize=0, MaxSize=2, DesiredCapacity=1,
                                  LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"]},
                                  AvailabilityZones=["us-east-1a"])
    return asg


def test_lifecycle_actions_moto_lacks_are_answered_and_recorded(aws):
    asg = _asg(aws)
    iid = asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    asg.record_lifecycle_action_heartbeat(AutoScalingGroupName="g", LifecycleHookName="provision-launch",
                                          InstanceId=iid)
    asg.complete_lifecycle_action(AutoScalingGroupName="g", LifecycleHookName="provision-launch",
                                  InstanceId=iid, LifecycleActionResult="CONTINUE")
    assert [(a["Action"], a["InstanceId"]) for a in aws.lifecycle_actions] == [
        ("RecordLifecycleActionHeartbeat", iid), ("CompleteLifecycleAction", iid)]
    assert aws.lifecycle_actions[1]["LifecycleActionResult"] == "CONTINUE"
    with pytest.raises(ClientError) as ei:
        asg.complete_lifecycle_action(AutoScalingGroupName="nope", LifecycleHookName="h",
                                      InstanceId=iid, LifecycleActionResult="CONTINUE")
    assert code_of(ei.value) == ("ValidationError", 400)


def test_instance_refresh(aws):
    asg = _asg(aws)
    rid = asg.start_instance_refresh(AutoScalingGroupName="g")["InstanceRefreshId"]
    refs = asg.describe_instance_refreshes(AutoScalingGroupName="g")["InstanceRefreshes"]
    assert [(r["InstanceRefreshId"], r["Status"]) for r in refs] == [(rid, "Successful")]
    assert ("autoscaling", "StartInstanceRefresh") in [(c.service, c.action) for c in aws.calls]


def test_reset_clears_moto_state_faults_and_calls(aws):
    sm = client("secretsmanager")
    sm.create_secret(Name="x", SecretString="y")
    aws.faults.throttle("ListSecrets", 5)
    aws.reset()
    assert aws.calls == []
    assert sm.list_secrets()["SecretList"] == []


def test_http_control_api(aws):
    remote = RemoteAws(aws.url)
    assert remote.healthy()
    remote.faults.throttle("DescribeVpcs", 1)
    with pytest.raises(ClientError) as ei:
        client("ec2").describe_vpcs()
    assert code_of(ei.value)[0] == "RequestLimitExceeded"
    assert [(c.service, c.action, c.fault) for c in remote.calls] == [("ec2", "DescribeVpcs", "throttle")]
    client("secretsmanager").create_secret(Name="s", SecretString="v")
    remote.reset()
    assert remote.calls == [] and client("secretsmanager").list_secrets()["SecretList"] == []
    with urllib.request.urlopen(aws.url + "/_provision/faults") as r:
        assert json.loads(r.read())["rules"] == []


def test_mutating_definition():
    assert is_mutating("RunInstances") and is_mutating("CompleteLifecycleAction")
    assert not any(map(is_mutating, ["DescribeInstances", "ListRoles", "GetSecretValue", None]))
