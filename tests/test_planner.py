"""The pure planner: table tests on desired/live resources (no cloud, no SDK)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from provisioner.actions import KNOWN_AFTER_APPLY, SENSITIVE, Action, Resource, plan_json, render_text
from provisioner.planner import plan


def R(kind, name, region="us-east-1", cluster=None, id=None, in_use=False, **attrs):
    return Resource(kind, name, region, cluster, id=id, attrs=attrs, in_use=in_use)


def ops(actions):
    return [(a.op, a.kind, a.name) for a in actions]


SG = dict(vpc_id="vpc-1", ingress=["tcp:443:0.0.0.0/0"])
ASG = dict(min_size=2, max_size=3, desired_capacity=2, types=["g5.xlarge"], launch_template_version="1")

CASES = [
    ("nothing live: create", [R("security-group", "p", **SG)], [], [("create", "security-group", "p")]),
    ("in sync: nothing", [R("security-group", "p", **SG)], [R("security-group", "p", id="sg-1", **SG)], []),
    ("ingress drift: update", [R("security-group", "p", **SG)],
     [R("security-group", "p", id="sg-1", vpc_id="vpc-1", ingress=["tcp:22:0.0.0.0/0", "tcp:443:0.0.0.0/0"])],
     [("update", "security-group", "p")]),
    ("other vpc: replace", [R("security-group", "p", **SG)], [R("security-group", "p", id="sg-1", vpc_id="vpc-2",
                                                                  ingress=SG["ingress"])],
     [("replace", "security-group", "p")]),
    ("not desired: delete", [], [R("asg", "g", cluster="c", id="arn", **ASG)], [("delete", "asg", "g")]),
    ("region change: create new, delete old",
     [R("asg", "g", region="eu-west-1", cluster="c", **ASG)], [R("asg", "g", cluster="c", id="arn", **ASG)],
     [("create", "asg", "g"), ("delete", "asg", "g")]),
]


@pytest.mark.parametrize("label,desired,live,expected", CASES, ids=[c[0] for c in CASES])
def test_plan_table(label, desired, live, expected):
    assert ops(plan(desired, live, clusters=["c"])) == expected


def test_changes_name_the_attribute_old_and_new():
    [a] = plan([R("asg", "g", cluster="c", **dict(ASG, desired_capacity=2))],
               [R("asg", "g", cluster="c", id="arn", **dict(ASG, desired_capacity=5))], clusters=["c"])
    assert a.changes == {"desired_capacity": [5, 2]}
    assert a.reason == "changed: desired_capacity"
    assert not a.destructive


def test_duplicate_address_unassociated_is_deleted_never_one_in_use():
    live = [R("eip", "h1", cluster="c", id="eipalloc-b"), R("eip", "h1", cluster="c", id="eipalloc-a", in_use=True),
            R("eip", "h1", cluster="c", id="eipalloc-c")]
    acts = plan([R("eip", "h1", cluster="c")], live, clusters=["c"])
    assert sorted((a.op, a.live.id) for a in acts) == [("delete", "eipalloc-b"), ("delete", "eipalloc-c")]
    assert all("duplicate of eipalloc-a" in a.reason and not a.destructive for a in acts)
    # two in use: neither is touched
    live = [R("eip", "h1", cluster="c", id="x", in_use=True), R("eip", "h1", cluster="c", id="y", in_use=True)]
    assert plan([R("eip", "h1", cluster="c")], live, clusters=["c"]) == []


def test_host_removal_terminates_before_capacity_is_lowered():
    desired = [R("eip", "h1", cluster="c"), R("asg", "g", cluster="c", **dict(ASG, min_size=1, desired_capacity=1, max_size=2))]
    live = [R("eip", "h1", cluster="c", id="e1", in_use=True), R("eip", "h2", cluster="c", id="e2", in_use=True),
            R("asg", "g", cluster="c", id="arn", **ASG)]
    acts = plan(desired, live, clusters=["c"])
    assert ops(acts) == [("delete", "eip", "h2"), ("update", "asg", "g")]
    assert all(a.destructive for a in acts)
    assert acts[0].reason == "host no longer in the config"


def test_new_template_version_reaches_the_group():
    desired = [R("launch-template", "t", cluster="c", image_id="ami-2"), R("asg", "g", cluster="c", **ASG)]
    live = [R("launch-template", "t", cluster="c", id="lt-1", image_id="ami-1"), R("asg", "g", cluster="c", id="arn", **ASG)]
    acts = plan(desired, live, clusters=["c"])
    assert ops(acts) == [("update", "launch-template", "t"), ("update", "asg", "g")]
    assert acts[1].changes == {"launch_template_version": ["1", KNOWN_AFTER_APPLY]}


def test_order_creates_forward_deletes_reverse():
    desired = [R("asg", "g", cluster="c"), R("eip", "h", cluster="c"), R("launch-template", "t", cluster="c"),
               R("security-group", "p"), R("iam-role", "r", region="global"), R("secret", "k")]
    acts = plan(desired, [], clusters=["c"])
    assert [a.kind for a in acts] == ["iam-role", "secret", "security-group", "launch-template", "eip", "asg"]
    live = [Resource(d.kind, d.name, d.region, d.cluster, id="x") for d in desired]
    acts = plan([], live, clusters=[], destroy=True)
    assert [a.kind for a in acts] == ["asg", "eip", "launch-template", "secret", "security-group", "iam-role"]
    assert all(a.reason.startswith("destroy") for a in acts)


def test_secrets_are_compared_by_fingerprint_and_masked():
    [a] = plan([R("secret", "k", value="fp-new")], [R("secret", "k", id="arn", value="fp-old")])
    assert a.changes == {"value": [SENSITIVE, SENSITIVE]}
    assert "fp-" not in json.dumps(a.to_json())
    # no value in the config (generated key): never updated
    assert plan([R("secret", "k")], [R("secret", "k", id="arn", value="fp-old")]) == []


def test_json_is_the_contract_shape_and_text_is_terraform_like():
    acts = plan([R("security-group", "p", **SG), R("asg", "g", cluster="c", **dict(ASG, desired_capacity=2))],
                [R("asg", "g", cluster="c", id="arn", **dict(ASG, desired_capacity=3)),
                 R("eip", "old", cluster="gone", id="e9")], clusters=["c"])
    doc = json.loads(plan_json(acts, "dev"))
    assert doc["stack"] == "dev"
    for a in doc["actions"]:
        assert set(a) == {"op", "kind", "name", "region", "cluster", "reason", "changes"}
        assert a["op"] in ("create", "update", "replace", "delete")
    text = render_text(acts, "dev")
    assert "  + security-group p (us-east-1)" in text
    assert "  ~ asg g (us-east-1, cluster c)" in text and "desired_capacity: 3 -> 2" in text
    assert "  - eip old (us-east-1, cluster gone)" in text and "cluster 'gone' is no longer in the config" in text
    assert text.rstrip().endswith("Plan: 1 to create, 1 to update, 0 to replace, 1 to delete.")
    assert render_text([], "dev").startswith("No changes.")


def test_an_unknown_kind_and_duplicate_desired_keys_are_errors():
    with pytest.raises(ValueError):
        plan([R("nope", "x")], [])
    with pytest.raises(ValueError):
        plan([R("eip", "h"), R("eip", "h")], [])


def test_planner_imports_no_cloud_sdk():
    code = ("import sys, provisioner.planner, provisioner.actions, provisioner.desired; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'cloudflare', 'click')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_action_scope():
    assert Action("create", "iam-role", "r", "global", None, "").scope == ("global",)
    assert Action("create", "secret", "k", "eu-west-1", None, "").scope == ("region", "eu-west-1")
    assert Action("create", "eip", "h", "eu-west-1", "c", "").scope == ("cluster", "eu-west-1", "c")
