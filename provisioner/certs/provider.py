"""Certificates as an engine provider: live (one tag-filtered list per region), desired, executors."""
from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Callable

from ..actions import Action, Resource
from ..aws.base import Executor, RunContext, tag_list
from ..aws.retry import call, error_code, paginate
from ..config import Config
from ..desired import tags as stack_tags
from ..aws.discovery import tagdict
from ..desired import owned
from . import plan as P
from .issue import Material, issue, new_account_key

SM_READ = ("secretsmanager:GetSecretValue",)
SM_WRITE = ("secretsmanager:CreateSecret", "secretsmanager:TagResource", "secretsmanager:PutSecretValue",
            "secretsmanager:GetSecretValue", "secretsmanager:RestoreSecret")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CertificateProvider:
    kinds = (P.ACCOUNT_KIND, P.CERT_KIND)
    # read-only calls of live(): one list per region
    discovery_permissions = ("secretsmanager:ListSecrets",)

    def __init__(self, txt_factory: Callable[[Config], object] | None = None, now: Callable[[], dt.datetime] = _now):
        self.txt_factory = txt_factory
        self.now = now
        self._executors = {P.ACCOUNT_KIND: AccountExecutor(), P.CERT_KIND: CertificateExecutor(self)}

    def regions(self, engine) -> list[str]:
        rs = list(engine.regions())
        if engine.config.home_region not in rs:
            rs.append(engine.config.home_region)
        return rs

    def live(self, engine, inv) -> list[Resource]:
        config = engine.config
        out: list[Resource] = []
        now = self.now()
        for region in self.regions(engine):
            sm = engine.clients.client("secretsmanager", region)
            for s in paginate(sm, "list_secrets", "SecretList", Filters=[
                    {"Key": "tag-key", "Values": [P.TAG_KIND]},
                    {"Key": "tag-value", "Values": [P.CERT_KIND, P.ACCOUNT_KIND]}]):
                t = tagdict(s.get("Tags"))
                if not owned(config, t) or s.get("DeletedDate"):
                    continue
                r = P.live_resource(s["Name"], region, s["ARN"], t, now)
                if r is not None:
                    out.append(r)
        return out

    def desired(self, engine, inv) -> list[Resource]:
        config = engine.config
        if not config.hosts or not config.settings.domain_name:
            return []
        desired = P.desired_resources(config)
        live = {(r.kind, r.region, r.name): r for r in inv.extra if r.kind == P.CERT_KIND}
        for d in desired:
            if d.kind != P.CERT_KIND:
                continue
            digest = P.names_digest(d.data["names"])
            # regions that already hold this certificate, fresh: copy from there instead of re-issuing
            d.data["sources"] = [r for (k, r, n), lr in live.items()
                                 if n == d.name and lr.data.get("digest") == digest and lr.data.get("fresh")]
        return desired

    def executor(self, kind: str) -> Executor:
        return self._executors[kind]

    # ---- shared by the executors of one run
    def txt(self, rc: RunContext):
        with rc.lock:
            if ("certs", "txt") not in rc.shared:
                if self.txt_factory is not None:
                    rc.shared[("certs", "txt")] = self.txt_factory(rc.config)
                else:
                    from .dns01 import CloudflareTxt

                    rc.shared[("certs", "txt")] = CloudflareTxt(rc.config)
            return rc.shared[("certs", "txt")]


def _lock(rc: RunContext, key: tuple) -> threading.Lock:
    with rc.lock:
        return rc.shared.setdefault(("lock",) + key, threading.Lock())


def account_key(rc: RunContext) -> str:
    """The stack's ACME account key: read from Secrets Manager, or made and stored once."""
    config = rc.config
    with _lock(rc, ("acme-account",)):
        cached = rc.get(("certs", "account-key"))
        if cached:
            return cached
        sm = rc.clients.client("secretsmanager", config.home_region)
        name = P.account_secret_name(config)
        try:
            value = call(sm, "get_secret_value", SecretId=name)["SecretString"]
        except Exception as e:  # noqa: BLE001
            if error_code(e) not in ("ResourceNotFoundException",):
                raise
            value = new_account_key()
            tags = dict(stack_tags(config), **{P.TAG_KIND: P.ACCOUNT_KIND,
                                                P.TAG_DIRECTORY: config.settings.acme_directory[:256]})
            try:
                call(sm, "create_secret", Name=name, SecretString=value, Tags=tag_list(tags),
                     Description=f"provision {config.slug}/{config.stack}: ACME account key")
            except Exception as e2:  # noqa: BLE001
                if error_code(e2) == "ResourceExistsException":  # an earlier create whose answer was lost
                    value = call(sm, "get_secret_value", SecretId=name)["SecretString"]
                elif error_code(e2) == "InvalidRequestException" and "deletion" in str(e2).lower():
                    call(sm, "restore_secret", SecretId=name)
                    call(sm, "put_secret_value", SecretId=name, SecretString=value)
                else:
                    raise
        rc.put(("certs", "account-key"), value)
        return value


class AccountExecutor(Executor):
    kind = P.ACCOUNT_KIND
    permissions = {"create": SM_WRITE, "update": SM_WRITE, "delete": ("secretsmanager:DeleteSecret",)}

    def create(self, rc: RunContext, a: Action) -> None:
        account_key(rc)

    update = create

    def delete(self, rc: RunContext, a: Action) -> None:
        _delete_secret(rc, a)


def _delete_secret(rc: RunContext, a: Action) -> None:
    sm = rc.clients.client("secretsmanager", a.region)
    try:
        call(sm, "delete_secret", SecretId=a.live.id if a.live else a.name, ForceDeleteWithoutRecovery=True)
    except Exception as e:  # noqa: BLE001
        if error_code(e) != "ResourceNotFoundException":
            raise


class CertificateExecutor(Executor):
    kind = P.CERT_KIND
    permissions = {"create": SM_WRITE, "update": SM_WRITE, "delete": ("secretsmanager:DeleteSecret",)}

    def __init__(self, provider: CertificateProvider):
        self.provider = provider

    def material(self, rc: RunContext, a: Action) -> Material:
        names = tuple(a.desired.data["names"])
        digest = P.names_digest(names)
        key = ("certs", "material", digest)
        with _lock(rc, key):
            got = rc.get(key)
            if got is not None:
                return got
            for region in a.desired.data.get("sources", []):
                sm = rc.clients.client("secretsmanager", region)
                try:
                    m = Material.from_secret(call(sm, "get_secret_value", SecretId=a.name)["SecretString"])
                except Exception:  # noqa: BLE001 - unreadable copy: issue a new one instead
                    continue
                if P.names_digest(m.names) == digest and P.renewal_state(m.not_after.isoformat(), self.provider.now()) == P.NOT_DUE:
                    rc.put(key, m)
                    return m
            rc.progress(f"requesting a certificate for {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} "
                        f"from {rc.config.settings.acme_directory}")
            m = issue(rc.config.settings.acme_directory, account_key(rc), names, self.provider.txt(rc),
                      progress=rc.progress)
            rc.put(key, m)
            return m

    def create(self, rc: RunContext, a: Action) -> None:
        m = self.material(rc, a)
        sm = rc.clients.client("secretsmanager", a.region)
        tags = dict(stack_tags(rc.config), **P.cert_tags(m.names, m.not_after))
        token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{a.region}/{a.name}/{tags[P.TAG_NAMES]}/{tags[P.TAG_NOT_AFTER]}"))
        try:
            call(sm, "create_secret", Name=a.name, SecretString=m.to_secret(), ClientRequestToken=token,
                 Tags=tag_list(tags), Description=f"provision {rc.config.slug}/{rc.config.stack}: TLS certificate")
            return
        except Exception as e:  # noqa: BLE001
            code = error_code(e)
            if code == "InvalidRequestException" and "deletion" in str(e).lower():
                call(sm, "restore_secret", SecretId=a.name)
            elif code != "ResourceExistsException":
                raise
        self._put(sm, a.name, m, tags)

    def update(self, rc: RunContext, a: Action) -> None:
        m = self.material(rc, a)
        sm = rc.clients.client("secretsmanager", a.region)
        self._put(sm, a.name, m, dict(stack_tags(rc.config), **P.cert_tags(m.names, m.not_after)))

    @staticmethod
    def _put(sm, name: str, m: Material, tags: dict[str, str]) -> None:
        # value first, tags after: an interruption between them leaves tags that say "renew", never
        # tags that claim a certificate the secret does not hold
        call(sm, "put_secret_value", SecretId=name, SecretString=m.to_secret())
        call(sm, "tag_resource", SecretId=name, Tags=tag_list(tags))

    def delete(self, rc: RunContext, a: Action) -> None:
        _delete_secret(rc, a)
