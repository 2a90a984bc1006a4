"""The instance role + instance profile `P-instance` (global) with the agent's inline policy."""
from __future__ import annotations

import json

from ..actions import Action
from ..desired import tags
from .base import Executor, RunContext, fail, tag_list
from .policy import TRUST
from .retry import call, error_code

POLICY_NAME = "provision-agent"


def _ignore(codes, fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except Exception as e:  # noqa: BLE001
        if error_code(e) in codes:
            return None
        raise


class RoleExecutor(Executor):
    kind = "iam-role"
    permissions = {
        "create": ("iam:CreateRole", "iam:TagRole", "iam:PutRolePolicy", "iam:CreateInstanceProfile",
                   "iam:TagInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:GetRole"),
        "update": ("iam:PutRolePolicy", "iam:CreateInstanceProfile", "iam:TagInstanceProfile",
                   "iam:AddRoleToInstanceProfile"),
        "delete": ("iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile", "iam:DeleteRolePolicy",
                   "iam:DeleteRole"),
    }

    def _iam(self, rc: RunContext):
        return rc.clients.client("iam", rc.config.home_region)

    def create(self, rc: RunContext, a: Action) -> None:
        iam = self._iam(rc)
        t = tags(rc.config, name=a.name)
        try:
            call(iam, "create_role", RoleName=a.name, AssumeRolePolicyDocument=json.dumps(TRUST),
                 Description=f"provision {rc.config.slug}/{rc.config.stack}: instance agent", Tags=tag_list(t))
        except Exception as e:  # noqa: BLE001
            if error_code(e) != "EntityAlreadyExists":
                raise
            role = call(iam, "get_role", RoleName=a.name)["Role"]
            have = {x["Key"]: x["Value"] for x in role.get("Tags", [])}
            if have.get("provision:stack") != rc.config.stack or have.get("provision:slug") != rc.config.slug:
                raise fail(a, "an IAM role of this name exists and is not this stack's",
                           "rename the stack or slug, or delete that role") from None
        self.update(rc, a)

    def update(self, rc: RunContext, a: Action) -> None:
        iam = self._iam(rc)
        call(iam, "put_role_policy", RoleName=a.name, PolicyName=POLICY_NAME,
             PolicyDocument=a.desired.attrs["policy"], after_create=True)
        _ignore({"EntityAlreadyExists"}, call, iam, "create_instance_profile", InstanceProfileName=a.name,
                Tags=tag_list(tags(rc.config, name=a.name)))
        _ignore({"LimitExceeded", "EntityAlreadyExists"}, call, iam, "add_role_to_instance_profile",
                InstanceProfileName=a.name, RoleName=a.name, after_create=True)

    def delete(self, rc: RunContext, a: Action) -> None:
        iam = self._iam(rc)
        gone = {"NoSuchEntity"}
        if a.live is None or a.live.attrs.get("instance_profile"):  # only when the profile holds the role
            _ignore(gone, call, iam, "remove_role_from_instance_profile", InstanceProfileName=a.name,
                    RoleName=a.name)
        _ignore(gone, call, iam, "delete_instance_profile", InstanceProfileName=a.name, draining=True)
        _ignore(gone, call, iam, "delete_role_policy", RoleName=a.name, PolicyName=POLICY_NAME)
        _ignore(gone, call, iam, "delete_role", RoleName=a.name, draining=True)
