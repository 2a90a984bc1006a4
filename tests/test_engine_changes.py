"""Each kind of config change gives exactly the expected plan (moto server over HTTP), and apply
converges it (the next plan is empty)."""
from __future__ import annotations

import copy
import json
import threading

import boto3
import pytest

from provisioner.app import run_apply, run_plan
from tests.test_engine_common import cluster, fast, mutating, options, two_region_doc, write_config  # noqa: F401


def plan_of(cfg, state):
    opts, cap = options(state, output="json", detailed_exitcode=True)
    rc = run_plan(cfg, opts)
    acts = json.loads(cap.stdout)["actions"]
    assert rc == (2 if acts else 0)
    return acts


def brief(acts):
    return sorted((a["op"], a["kind"], a["name"], tuple(sorted(a["changes"])) if a["op"] == "update" else ()) for a in acts)


def mutate_hosts_add(d):
    d["alpha"]["hosts"].append("a3.example.com")


def mutate_hosts_remove(d):
    d["alpha"]["hosts"].remove("a2.example.com")


def mutate_types(d):
    d["alpha"]["type"] = ["g6.xlarge"]


def mutate_model(d):
    d["beta"]["model_config"]["ctx_size"] = 4096  # user data changes -> new template version


def mutate_model_file(d):
    d["beta"]["model_config"]["model_file"] = "Qwen3-8B-Q8_0.gguf"
    d["beta"]["model_config"]["model_pattern"] = "*Q8_0.gguf"


def mutate_throughput(d):
    d["beta"]["root_volume_throughput"] = 500


def mutate_ssh(d):
    d["stack"]["ssh_cidrs"] = ["10.0.0.0/8"]


def mutate_on_demand(d):
    d["alpha"]["on-demand"] = 0


def mutate_add_cluster(d):
    d["gamma"] = cluster("eu-west-1", ["g1.example.com"])


def mutate_remove_cluster(d):
    del d["beta"]


def mutate_region(d):
    d["beta"]["region"] = "us-west-2"


def mutate_launch_timeout(d):
    d["beta"]["launch_timeout"] = 1800


B = "c3-llamacpp-dev-beta"
A = "c3-llamacpp-dev-alpha"
CHANGES = [
    ("add host", mutate_hosts_add, [("create", "eip", "a3.example.com", ()),
                                    ("update", "asg", A, ("desired_capacity", "max_size", "min_size"))]),
    ("remove host", mutate_hosts_remove, [("delete", "eip", "a2.example.com", ()),
                                          ("update", "asg", A, ("desired_capacity", "max_size", "min_size"))]),
    ("instance types", mutate_types, [("update", "asg", A, ("types",))]),
    ("model tuning", mutate_model, [("update", "asg", B, ("launch_template_version",)),
                                    ("update", "launch-template", B, ("user_data_sha",))]),
    ("throughput", mutate_throughput, [("update", "asg", B, ("launch_template_version",)),
                                       ("update", "launch-template", B, ("iops", "throughput"))]),
    ("ssh cidrs", mutate_ssh, [("update", "security-group", "c3-llamacpp-dev", ("ingress",)),
                               ("update", "security-group", "c3-llamacpp-dev", ("ingress",))]),
    ("on-demand base", mutate_on_demand, [("update", "asg", A, ("on_demand_base",))]),
    # the launch timeout is the launch hook's heartbeat timeout and the agent's (in the user data)
    ("launch timeout", mutate_launch_timeout, [("update", "asg", B, ("hooks", "launch_template_version")),
                                               ("update", "launch-template", B, ("user_data_sha",))]),
    ("add cluster", mutate_add_cluster, [("create", "asg", "c3-llamacpp-dev-gamma", ()),
                                         ("create", "eip", "g1.example.com", ()),
                                         ("create", "launch-template", "c3-llamacpp-dev-gamma", ())]),
    ("remove cluster", mutate_remove_cluster, [("delete", "asg", B, ()), ("delete", "eip", "b1.example.com", ()),
                                               ("delete", "launch-template", B, ()),
                                               ("delete", "secret", "c3-llamacpp/dev/api-key", ()),
                                               ("delete", "security-group", "c3-llamacpp-dev", ())]),
    ("region change is a replace", mutate_region, [
        ("create", "asg", B, ()), ("create", "eip", "b1.example.com", ()), ("create", "launch-template", B, ()),
        ("create", "secret", "c3-llamacpp/dev/api-key", ()), ("create", "security-group", "c3-llamacpp-dev", ()),
        ("delete", "asg", B, ()), ("delete", "eip", "b1.example.com", ()), ("delete", "launch-template", B, ()),
        ("delete", "secret", "c3-llamacpp/dev/api-key", ()), ("delete", "security-group", "c3-llamacpp-dev", ())]),
]


@pytest.fixture
def applied(aws, fast, tmp_path):
    doc = two_region_doc()
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    return doc


@pytest.mark.parametrize("label,mutate,expected", CHANGES, ids=[c[0] for c in CHANGES])
def test_change_gives_expected_plan_and_converges(applied, aws, tmp_path, label, mutate, expected):
    doc = copy.deepcopy(applied)
    mutate(doc)
    cfg = write_config(tmp_path, doc)
    acts = plan_of(cfg, tmp_path / "state")
    assert brief(acts) == sorted(expected)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    assert plan_of(cfg, tmp_path / "state") == []


def test_new_template_version_is_used_by_the_group(applied, aws, tmp_path):
    doc = copy.deepcopy(applied)
    mutate_model(doc)
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    asc = boto3.client("autoscaling", region_name="eu-west-1")
    g = asc.describe_auto_scaling_groups(AutoScalingGroupNames=[B])["AutoScalingGroups"][0]
    spec = g["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert spec["Version"] == "2"
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[B])["LaunchTemplates"][0]
    assert lt["DefaultVersionNumber"] == 2 and lt["LatestVersionNumber"] == 2


def free_addresses_of_terminated(stop: threading.Event) -> None:
    """AWS disassociates an address when its instance terminates; moto does not: do it here."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    while not stop.wait(0.2):
        for a in ec2.describe_addresses()["Addresses"]:
            if not a.get("InstanceId"):
                continue
            st = ec2.describe_instances(InstanceIds=[a["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]
            if st["Name"] in ("shutting-down", "terminated"):
                ec2.disassociate_address(AssociationId=a["AssociationId"])


def test_host_removal_lowers_min_then_terminates_that_hosts_instance(applied, aws, tmp_path):
    """moto does not check MinSize on a decrementing terminate: we check the order of our requests."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    asc = boto3.client("autoscaling", region_name="us-east-1")
    g = asc.describe_auto_scaling_groups(AutoScalingGroupNames=[A])["AutoScalingGroups"][0]
    inst = [i["InstanceId"] for i in g["Instances"]]
    assert len(inst) == 2
    # play the instance agent: each instance holds its host's address
    addrs = {t["Value"]: a for a in ec2.describe_addresses()["Addresses"] for t in a["Tags"] if t["Key"] == "provision:host"}
    ec2.associate_address(AllocationId=addrs["a1.example.com"]["AllocationId"], InstanceId=inst[0])
    ec2.associate_address(AllocationId=addrs["a2.example.com"]["AllocationId"], InstanceId=inst[1])
    doc = copy.deepcopy(applied)
    mutate_hosts_remove(doc)
    cfg = write_config(tmp_path, doc)
    aws.clear_calls()
    stop = threading.Event()
    t = threading.Thread(target=free_addresses_of_terminated, args=(stop,), daemon=True)
    t.start()
    try:
        opts, _ = options(tmp_path / "state")
        assert run_apply(cfg, opts) == 0
    finally:
        stop.set()
        t.join()
    seq = [(c.action, c.params) for c in aws.calls if c.mutating and c.service == "autoscaling"]
    names = [s[0] for s in seq]
    i_min = names.index("UpdateAutoScalingGroup")
    i_term = names.index("TerminateInstanceInAutoScalingGroup")
    assert i_min < i_term
    assert seq[i_min][1]["MinSize"] == "1"
    assert seq[i_term][1]["InstanceId"] == inst[1]
    assert seq[i_term][1]["ShouldDecrementDesiredCapacity"] == "true"
    release = [c for c in aws.calls if c.action == "ReleaseAddress"]
    assert [c.params["AllocationId"] for c in release] == [addrs["a2.example.com"]["AllocationId"]]
    # the surviving host keeps its instance and address
    left = ec2.describe_addresses()["Addresses"]
    assert [a.get("InstanceId") for a in left] == [inst[0]]
    assert plan_of(cfg, tmp_path / "state") == []


def test_new_ami_release_or_hub_outage_changes_no_plan(aws, fast, tmp_path, monkeypatch):
    """The stack AMI comes from an SSM parameter; a new value of it changes nothing until --refresh-ami."""
    ssm_name = "/test/dlami/latest"
    for r in ("us-east-1", "eu-west-1"):
        boto3.client("ssm", region_name=r).put_parameter(Name=ssm_name, Value="ami-1e749f67", Type="String")
    doc = two_region_doc()
    doc["stack"]["ami"] = f"resolve:ssm:{ssm_name}"
    del doc["beta"]["root_volume_gb"]  # sized from the Hub's answer: offline here
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    assert plan_of(cfg, tmp_path / "state") == []
    other = boto3.client("ec2", region_name="us-east-1").describe_images(Owners=["amazon"])["Images"]
    new_ami = next(i["ImageId"] for i in other if i["ImageId"] != "ami-1e749f67" and i.get("RootDeviceName"))
    for r in ("us-east-1", "eu-west-1"):
        boto3.client("ssm", region_name=r).put_parameter(Name=ssm_name, Value=new_ami, Type="String", Overwrite=True)
    aws.clear_calls()
    assert plan_of(cfg, tmp_path / "state") == []
    assert not [c for c in aws.calls if c.service == "ssm"]  # recorded: not even asked
    opts, cap = options(tmp_path / "state", output="json", refresh_ami=True, detailed_exitcode=True)
    assert run_plan(cfg, opts) == 2
    acts = json.loads(cap.stdout)["actions"]
    lt = [a for a in acts if a["kind"] == "launch-template"]
    assert lt and all(a["changes"]["image_id"][1] == new_ami for a in lt)


def test_a_region_left_empty_is_forgotten_and_a_removed_one_still_found(applied, aws, tmp_path):
    from provisioner.aws.clients import Clients
    from provisioner.lock import known_regions
    cfg0 = write_config(tmp_path, applied)
    assert known_regions(Clients(), cfg0) == {"us-east-1", "eu-west-1"}
    # the state file is gone and beta's region left the config: the lock table's record still
    # tells where beta's resources are, so plan finds and deletes them
    (tmp_path / "state" / "dev.json").unlink()
    doc = copy.deepcopy(applied)
    del doc["beta"]
    cfg = write_config(tmp_path, doc)
    acts = plan_of(cfg, tmp_path / "state")
    assert {(a["op"], a["region"]) for a in acts} == {("delete", "eu-west-1")}
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    assert known_regions(Clients(), cfg) == {"us-east-1"}
    assert plan_of(cfg, tmp_path / "state") == []


def test_disk_sized_from_the_hub_and_a_hub_outage_changes_nothing(aws, fast, tmp_path, monkeypatch):
    """The model's size comes from the Hub (our Hub emulator, over HTTP); it is recorded on the
    launch template, so with the Hub down the plan is still empty."""
    from tests.container.hub import HubEmulator
    big = tmp_path / "big.gguf"
    with open(big, "wb") as f:
        f.truncate(250 * 10**9)  # sparse: 250 GB on paper, nothing on disk
    hub = HubEmulator().start()
    hub.add_repo("org/big-GGUF", {"big-Q4_0.gguf": big, "README.md": "# big\n"}, sha256s={"big-Q4_0.gguf": "0" * 64})
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("PROVISION_HUB_TIMEOUT", "3")
    doc = two_region_doc()
    del doc["beta"]["root_volume_gb"]
    doc["beta"]["model_config"].update(model_repo="org/big-GGUF", model_pattern="*Q4_0.gguf", model_file="big-Q4_0.gguf")
    cfg = write_config(tmp_path, doc)
    try:
        opts, _ = options(tmp_path / "state")
        assert run_apply(cfg, opts) == 0
        assert any("/api/models/org/big-GGUF" in r.path for r in hub.requests)
    finally:
        hub.close()
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    data = ec2.describe_launch_template_versions(LaunchTemplateName=B, Versions=["$Latest"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    snap = [b for b in ec2.describe_images(ImageIds=["ami-1e749f67"])["Images"][0]["BlockDeviceMappings"]
            if "Ebs" in b][0]["Ebs"]["VolumeSize"]
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == snap + 20 + 275
    # the Hub is gone now: nothing changes, and it is not even asked
    n = len(hub.requests)
    assert plan_of(cfg, tmp_path / "state") == []
    assert len(hub.requests) == n


def test_scale_up_after_a_new_template_version(applied, aws, tmp_path):
    """A model change (template version 2), then a host added: the new instance launches from v2.
    (Needs the emulator's fix of moto's UserData handling, provisioner/emulators/aws.py.)"""
    doc = copy.deepcopy(applied)
    mutate_model(doc)
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    doc["beta"]["hosts"].append("b2.example.com")
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "state")
    assert run_apply(cfg, opts) == 0
    g = boto3.client("autoscaling", region_name="eu-west-1").describe_auto_scaling_groups(
        AutoScalingGroupNames=[B])["AutoScalingGroups"][0]
    assert g["DesiredCapacity"] == 2 and len(g["Instances"]) == 2
