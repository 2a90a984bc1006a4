"""Errors an operator can act on: one clear message naming the resource, the quota or the YAML key."""
from __future__ import annotations

import boto3
import pytest

from provisioner.app import run_apply, run_plan, run_userdata
from provisioner.errors import ProvisionError
from tests.test_engine_common import fast, options, two_region_doc, write_config  # noqa: F401


def test_address_quota_exhausted_names_the_quota(aws, fast, tmp_path):
    # moto has no Elastic IP quota: the fault layer answers AddressLimitExceeded as EC2 does
    aws.faults.throttle("AllocateAddress", 1, code="AddressLimitExceeded")
    cfg = write_config(tmp_path, two_region_doc())
    opts, _ = options(tmp_path / "s")
    with pytest.raises(ProvisionError) as e:
        run_apply(cfg, opts)
    msg = str(e.value)
    assert "Elastic IP quota" in msg and "L-0263D0A3" in msg
    assert "us-east-1" in msg or "eu-west-1" in msg
    # the next run (quota raised) converges
    opts, _ = options(tmp_path / "s")
    assert run_apply(cfg, opts) == 0


def test_missing_ssm_parameter_says_what_to_set(aws, fast, tmp_path):
    doc = two_region_doc()
    doc["stack"]["ami"] = "resolve:ssm:/aws/service/deeplearning/none"
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "s")
    with pytest.raises(ProvisionError, match="SSM parameter /aws/service/deeplearning/none does not exist"):
        run_plan(cfg, opts)


def test_unknown_ami_is_named(aws, fast, tmp_path):
    doc = two_region_doc()
    doc["beta"]["ami"] = "ami-0123456789abcdef0"
    cfg = write_config(tmp_path, doc)
    opts, _ = options(tmp_path / "s")
    with pytest.raises(ProvisionError, match="ami-0123456789abcdef0"):
        run_plan(cfg, opts)


def test_a_foreign_role_of_our_name_is_not_taken_over(aws, fast, tmp_path):
    boto3.client("iam", region_name="us-east-1").create_role(
        RoleName="c3-llamacpp-dev-instance", AssumeRolePolicyDocument="{}")
    cfg = write_config(tmp_path, two_region_doc())
    opts, _ = options(tmp_path / "s")
    with pytest.raises(ProvisionError, match="not this stack's"):
        run_apply(cfg, opts)
    role = boto3.client("iam", region_name="us-east-1").get_role(RoleName="c3-llamacpp-dev-instance")["Role"]
    assert not role.get("Tags")


def test_userdata_prints_what_the_template_carries(aws, fast, tmp_path):
    cfg = write_config(tmp_path, two_region_doc())
    opts, cap = options(tmp_path / "s")
    assert run_userdata(cfg, opts, "alpha") == 0
    assert cap.stdout.startswith("#cloud-config")
    with pytest.raises(ProvisionError, match="no cluster named 'nope'"):
        run_userdata(cfg, opts, "nope")
