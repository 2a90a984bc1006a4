"""A cluster's launch template `P-{cluster}`: gp3 root volume on the AMI's root device, IMDSv2
required with hop limit 1, the instance profile, user data, tags propagated to instances and
volumes. What it was built from (AMI source, snapshot and model sizes, ...) is recorded in its
`provision:lt:*` tags, which discovery reads back: no per-template call is needed to plan."""
from __future__ import annotations

import hashlib
import json

from ..actions import KNOWN_AFTER_APPLY, Action
from ..desired import TAG_LT_PREFIX, tags
from .base import Executor, RunContext, fail, tag_list, tag_spec
from .retry import call, error_code


def sg_id(rc: RunContext, a: Action) -> str:
    gid = a.desired.attrs.get("security_group_id")
    if gid in (None, KNOWN_AFTER_APPLY):
        gid = rc.get(("security-group", a.region))
    if not gid:
        raise fail(a, "the stack's security group in this region is unknown", "run apply again")
    return gid


def template_data(rc: RunContext, a: Action, group_id: str) -> dict:
    at = a.desired.attrs
    t = tags(rc.config, cluster=a.cluster, name=a.name)
    return {
        "ImageId": at["image_id"],
        "IamInstanceProfile": {"Name": at["instance_profile"]},
        "SecurityGroupIds": [group_id],
        "BlockDeviceMappings": [{
            "DeviceName": at["root_device"],
            "Ebs": {"VolumeSize": at["volume_gb"], "VolumeType": "gp3", "Throughput": at["throughput"],
                    "Iops": at["iops"], "DeleteOnTermination": True, "Encrypted": True},
        }],
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled",
                            "InstanceMetadataTags": "enabled"},
        "UserData": a.desired.data["user_data"],  # base64(gzip(text)), see desired.encode_user_data
        "TagSpecifications": [tag_spec("instance", t), tag_spec("volume", t)],
    }


def recorded_tags(a: Action, group_id: str) -> dict[str, str]:
    at = dict(a.desired.attrs, security_group_id=group_id)
    rec = {f"{TAG_LT_PREFIX}{k}": str(v) for k, v in at.items()}
    d = a.desired.data
    rec[f"{TAG_LT_PREFIX}snapshot_gb"] = str(d.get("snapshot_gb"))
    rec[f"{TAG_LT_PREFIX}model_gb"] = "unknown" if d.get("model_gb") is None else f"{d['model_gb']:.2f}"
    rec[f"{TAG_LT_PREFIX}model_ref"] = str(d.get("model_ref"))
    return rec


def token(data: dict, extra: str) -> str:
    return hashlib.sha256((extra + json.dumps(data, sort_keys=True)).encode()).hexdigest()[:32]


class LaunchTemplateExecutor(Executor):
    kind = "launch-template"
    permissions = {
        "create": ("ec2:CreateLaunchTemplate", "ec2:CreateTags", "ec2:DescribeLaunchTemplates",
                   "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "iam:GetInstanceProfile"),
        "update": ("ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "ec2:CreateTags"),
        "delete": ("ec2:DeleteLaunchTemplate",),
    }

    def create(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        gid = sg_id(rc, a)
        data = template_data(rc, a, gid)
        t = dict(tags(rc.config, cluster=a.cluster, name=a.name), **recorded_tags(a, gid))
        try:
            lt = call(ec2, "create_launch_template", LaunchTemplateName=a.name, LaunchTemplateData=data,
                      ClientToken=token(data, a.name), VersionDescription="provision",
                      TagSpecifications=[tag_spec("launch-template", t)])["LaunchTemplate"]
            rc.put(("lt-version", a.region, a.cluster), lt.get("LatestVersionNumber", 1))
        except Exception as e:  # noqa: BLE001
            if "AlreadyExists" not in error_code(e):
                raise
            # our own create whose answer was lost: it was made, with its tags, in that one call. If
            # it was made from other contents, the next plan sees that in its recorded tags.
            got = call(ec2, "describe_launch_templates", LaunchTemplateNames=[a.name])["LaunchTemplates"][0]
            have = {x["Key"]: x["Value"] for x in got.get("Tags", [])}
            if have.get("provision:stack") != rc.config.stack or have.get("provision:slug") != rc.config.slug:
                raise fail(a, "a launch template of this name exists and is not this stack's") from None
            rc.put(("lt-version", a.region, a.cluster), got.get("DefaultVersionNumber", 1))

    def update(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        self._new_version(rc, a, ec2, a.live.id, sg_id(rc, a))

    def _new_version(self, rc: RunContext, a: Action, ec2, lt_id: str, gid: str) -> None:
        data = template_data(rc, a, gid)
        v = call(ec2, "create_launch_template_version", LaunchTemplateId=lt_id, LaunchTemplateData=data,
                 ClientToken=token(data, lt_id), VersionDescription="provision",
                 after_create=True)["LaunchTemplateVersion"]["VersionNumber"]
        call(ec2, "modify_launch_template", LaunchTemplateId=lt_id, DefaultVersion=str(v))
        call(ec2, "create_tags", Resources=[lt_id], Tags=tag_list(recorded_tags(a, gid)))
        rc.put(("lt-version", a.region, a.cluster), v)

    def delete(self, rc: RunContext, a: Action) -> None:
        ec2 = rc.clients.client("ec2", a.region)
        try:
            call(ec2, "delete_launch_template", LaunchTemplateId=a.live.id)
        except Exception as e:  # noqa: BLE001
            if "NotFound" not in error_code(e):
                raise
