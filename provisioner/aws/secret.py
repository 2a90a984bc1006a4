"""Secrets Manager secrets: the API key (one value per stack, the same in every region; generated
once when the config gives none, then kept) and a cluster's HF token. Deleted without a recovery
window, so destroy then apply works."""
from __future__ import annotations

import secrets as pysecrets
import uuid

from ..actions import Action
from ..desired import api_key_secret, tags
from .base import Executor, RunContext, tag_list
from .retry import call, error_code

GENERATED_KEY = ("api-key", "generated")


def secret_value(rc: RunContext, a: Action) -> str:
    given = a.desired.data.get("secret")
    if given is not None:
        return given.reveal()
    # generated once per stack: reuse the value any region already holds, else make one
    with rc.lock:
        if GENERATED_KEY in rc.shared:
            return rc.shared[GENERATED_KEY]
        value = None
        for region in rc.shared.get(("api-key", "regions"), []):
            sm = rc.clients.client("secretsmanager", region)
            try:
                value = call(sm, "get_secret_value", SecretId=api_key_secret(rc.config))["SecretString"]
                break
            except Exception as e:  # noqa: BLE001
                if error_code(e) not in ("ResourceNotFoundException", "InvalidRequestException"):
                    raise
        if value is None:
            value = "sk-" + pysecrets.token_urlsafe(32)
        rc.shared[GENERATED_KEY] = value
        return value


class SecretExecutor(Executor):
    kind = "secret"
    permissions = {
        "create": ("secretsmanager:CreateSecret", "secretsmanager:TagResource", "secretsmanager:GetSecretValue",
                   "secretsmanager:RestoreSecret", "secretsmanager:PutSecretValue",
                   "secretsmanager:DescribeSecret"),
        "update": ("secretsmanager:PutSecretValue",),
        "delete": ("secretsmanager:DeleteSecret",),
    }

    def create(self, rc: RunContext, a: Action) -> None:
        sm = rc.clients.client("secretsmanager", a.region)
        value = secret_value(rc, a)
        token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{a.region}/{a.name}/{hash_of(value)}"))
        try:
            call(sm, "create_secret", Name=a.name, SecretString=value, ClientRequestToken=token,
                 Description=f"provision {rc.config.slug}/{rc.config.stack}",
                 Tags=tag_list(tags(rc.config, cluster=a.cluster)))
        except Exception as e:  # noqa: BLE001
            code = error_code(e)
            if code == "ResourceExistsException":
                pass  # our own earlier create whose answer was lost
            elif code == "InvalidRequestException" and "deletion" in str(e).lower():
                call(sm, "restore_secret", SecretId=a.name)
            else:
                raise
            if a.desired.data.get("secret") is not None:
                call(sm, "put_secret_value", SecretId=a.name, SecretString=value, after_create=True)

    def update(self, rc: RunContext, a: Action) -> None:
        sm = rc.clients.client("secretsmanager", a.region)
        call(sm, "put_secret_value", SecretId=a.name, SecretString=secret_value(rc, a))

    def delete(self, rc: RunContext, a: Action) -> None:
        sm = rc.clients.client("secretsmanager", a.region)
        try:
            call(sm, "delete_secret", SecretId=a.live.id or a.name, ForceDeleteWithoutRecovery=True)
        except Exception as e:  # noqa: BLE001
            if error_code(e) != "ResourceNotFoundException":
                raise


def hash_of(value: str) -> str:
    import hashlib
    return hashlib.sha256(value.encode()).hexdigest()[:16]
