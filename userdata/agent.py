#!/usr/bin/env python3
"""provision instance agent: serves this host's address only when ready, hands it on when at risk.

Runs on every GPU instance as a systemd service (never in a container); needs only boto3.
It imports nothing from provisioner/: everything comes from its JSON config (/etc/provision/agent.json,
rendered into the user data) and from IMDS (v2, with a token) and AWS tags.

Tags it uses on instances of its cluster (docs/internals.md):
  provision:phase       booting|downloading|loading|ready|draining (its own instance)
  provision:at-risk     rebalance|interruption|terminating|unhealthy (its own; absent when none)
  provision:handover-to instance id of a ready replacement asking for the holder's address
                        (written on the holder by the replacement, removed by the holder)
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

LOG = logging.getLogger("provision-agent")
T_PHASE, T_RISK, T_HANDOVER = "provision:phase", "provision:at-risk", "provision:handover-to"
T_HOST, T_LTVER = "provision:host", "aws:ec2launchtemplate:version"
EXIT_RISKS = ("interruption", "terminating")

DEFAULTS = {
    "region": None,  # else IMDS placement/region
    "asg_name": None,
    "launch_hook": "provision-launch",
    "terminate_hook": "provision-terminate",
    "api_key_secret": None,
    "hf_token_secret": None,
    "tls_secret_prefix": None,  # "{slug}/{stack}/tls/"
    "api_name": "model",
    "imds_url": "http://169.254.169.254",
    "llama_url": "http://127.0.0.1:8080",
    "secrets_dir": "/run/provision/secrets",
    "tls_cert_file": "/etc/traefik/certs/tls.crt",  # Traefik's default certificate (llama.yml)
    "tls_key_file": "/etc/traefik/certs/tls.key",
    "host_file": "/run/provision/host",
    "traefik_tls_file": None,  # a Traefik dynamic-config file naming the certificate files
    "drain_file": "/etc/traefik/dynamic/drain.yml",  # container/traefik: present = draining
    "drain_on": None,  # content written to drain_file when draining; None: "draining\n"
    "drain_off": None,  # content written when serving; None: drain_file is removed
    "owner_uid": 10001,
    "owner_gid": 10001,
    "start_command": None,  # argv run once the secrets are in place (docker compose up -d)
    "restart_interval": 120.0,  # re-run start_command this often while nothing listens yet
    "poll_interval": 2.0,
    "heartbeat_interval": 300.0,
    "launch_timeout": 7200.0,
    "unhealthy_after": 300.0,  # seconds of failed checks after ready before SetInstanceHealth
    "cert_poll_interval": 3600.0,
    "drain_probe_url": None,  # the front (Traefik): draining once it answers 503 here
    "drain_settle": 1.0,  # without a probe: seconds the front takes to apply the drain switch
    "drain_timeout": 90.0,  # in-flight generations get this long to finish
    "handover_wait": 60.0,  # an exiting holder waits this long for a replacement to ask
    "request_timeout": 180.0,  # a replacement's request is dropped after this long
    "check_timeout": 30.0,  # seconds for the chat completion check
}


def load_config(path_or_dict) -> dict:
    raw = path_or_dict
    if not isinstance(raw, dict):
        with open(raw, encoding="utf-8") as f:
            raw = json.load(f)
    cfg = dict(DEFAULTS)
    cfg.update(raw)
    for key in ("slug", "stack", "cluster"):
        if not cfg.get(key):
            raise ValueError(f"agent config: '{key}' is required")
    if not cfg.get("asg_name"):
        cfg["asg_name"] = f"{cfg['slug']}-{cfg['stack']}-{cfg['cluster']}"
    if not cfg.get("tls_secret_prefix"):
        cfg["tls_secret_prefix"] = f"{cfg['slug']}/{cfg['stack']}/tls/"
    return cfg


class Imds:
    """IMDSv2: a session token from PUT /latest/api/token, sent with every GET."""

    def __init__(self, base: str, timeout: float = 2.0):
        self.base, self.timeout = base.rstrip("/"), timeout
        self._token, self._expires = None, 0.0

    def _fetch_token(self) -> str:
        req = urllib.request.Request(
            self.base + "/latest/api/token", method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            self._token, self._expires = r.read().decode(), time.monotonic() + 21000
        return self._token

    def get(self, path: str) -> str | None:
        """The value at latest/meta-data/{path}, or None when absent (404)."""
        for attempt in (0, 1):
            token = self._token if self._token and time.monotonic() < self._expires else None
            token = token or self._fetch_token()
            req = urllib.request.Request(f"{self.base}/latest/meta-data/{path}",
                                         headers={"X-aws-ec2-metadata-token": token})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    return r.read().decode()
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return None
                if e.code == 401 and attempt == 0:
                    self._token = None
                    continue
                raise
        return None


def host_covered(host: str, names) -> bool:
    """A certificate name covers host exactly, or as a one-label wildcard (*.example.com)."""
    host = host.lower().rstrip(".")
    for name in names or ():
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _expiry(doc: dict) -> datetime.datetime:
    try:
        t = datetime.datetime.fromisoformat(str(doc.get("not_after")).replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def write_private(path: str, data: str, uid: int | None, gid: int | None, mode: int = 0o400) -> None:
    """Atomically replace path with data, mode 0400, owned by uid:gid when we may chown."""
    d = os.path.dirname(path)
    os.makedirs(d, mode=0o711, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.chmod(tmp, mode)
        if os.geteuid() == 0 and uid is not None:
            os.chown(tmp, uid, gid if gid is not None else uid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Agent:
    def __init__(self, config, stop: threading.Event | None = None):
        self.cfg = load_config(config)
        self.stop = stop or threading.Event()
        self.imds = Imds(self.cfg["imds_url"])
        self.instance_id = self.region = None
        self.phase = self.risk_tag = None
        self.address = None  # the EIP dict we hold
        self.host = None
        self.ready_once = False  # llama answered and we hold an address since this boot
        self.launch_done = False
        self.started = time.monotonic()
        self.last_heartbeat = self.last_cert_poll = self.last_start = 0.0
        self.cert_version = None
        self.unhealthy_since = None
        self.marked_unhealthy = False
        self.request = None  # (holder id, allocation id, since) of our pending hand-over request
        self.exit_since = None
        self.exit_done = False
        self.drained = False
        self.rebooted = False  # we held an address when we started: InService already
        self.events = []  # (monotonic, what) for tests and the bench

    # ---------------------------------------------------------------- plumbing
    def _event(self, what: str) -> None:
        self.events.append((time.monotonic(), what))
        LOG.info("%s: %s", self.instance_id, what)

    def _clients(self) -> None:
        conf = BotoConfig(retries={"max_attempts": 8, "mode": "adaptive"},
                          connect_timeout=5, read_timeout=20)
        s = boto3.session.Session(region_name=self.region)
        self.ec2 = s.client("ec2", config=conf)
        self.asg = s.client("autoscaling", config=conf)
        self.sm = s.client("secretsmanager", config=conf)

    def identify(self) -> None:
        self.instance_id = self.imds.get("instance-id")
        self.region = self.cfg["region"] or self.imds.get("placement/region")
        if not self.instance_id or not self.region:
            raise RuntimeError("IMDS gave no instance-id or region")
        self._clients()

    def learn_group(self) -> None:
        """Group and cluster from our own tags (the rendered config names them too)."""
        try:
            tags = self.my_tags()
        except (ClientError, BotoCoreError) as e:
            LOG.warning("own tags not readable: %s", e)
            return
        group = tags.get("aws:autoscaling:groupName")
        if group and group != self.cfg["asg_name"]:
            LOG.warning("group from tags %s differs from the config's %s: using the tag", group, self.cfg["asg_name"])
            self.cfg["asg_name"] = group
        cluster = tags.get("provision:cluster")
        if cluster and cluster != self.cfg["cluster"]:
            LOG.warning("instance tag provision:cluster=%s but config says %s", cluster, self.cfg["cluster"])

    def _tag(self, key: str, value: str | None, resource: str | None = None) -> None:
        resource = resource or self.instance_id
        if value is None:
            self.ec2.delete_tags(Resources=[resource], Tags=[{"Key": key}])
        else:
            self.ec2.create_tags(Resources=[resource], Tags=[{"Key": key, "Value": value}])

    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self._tag(T_PHASE, phase)
            self.phase = phase
            self._event(f"phase {phase}")

    def _instances(self, ids) -> dict:
        out = {}
        ids = [i for i in ids if i]
        if not ids:
            return out
        try:
            pages = self.ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
            for page in pages:
                for res in page["Reservations"]:
                    for inst in res["Instances"]:
                        inst["Tags"] = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                        out[inst["InstanceId"]] = inst
        except ClientError as e:
            if "InvalidInstanceID" not in e.response["Error"]["Code"]:
                raise
            for i in ids:  # one of them is gone: ask one by one
                if len(ids) > 1:
                    out.update(self._instances([i]))
        return out

    def my_tags(self) -> dict:
        r = self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [self.instance_id]}])
        return {t["Key"]: t["Value"] for t in r["Tags"]}

    def addresses(self) -> list:
        c = self.cfg
        r = self.ec2.describe_addresses(Filters=[
            {"Name": "tag:provision:slug", "Values": [c["slug"]]},
            {"Name": "tag:provision:stack", "Values": [c["stack"]]},
            {"Name": "tag:provision:cluster", "Values": [c["cluster"]]},
        ])
        for a in r["Addresses"]:
            a["Tags"] = {t["Key"]: t["Value"] for t in a.get("Tags", [])}
        return r["Addresses"]

    def _lifecycle(self, hook: str, result: str | None) -> None:
        kw = dict(LifecycleHookName=hook, AutoScalingGroupName=self.cfg["asg_name"],
                  InstanceId=self.instance_id)
        try:
            if result is None:
                self.asg.record_lifecycle_action_heartbeat(**kw)
            else:
                self.asg.complete_lifecycle_action(LifecycleActionResult=result, **kw)
                self._event(f"lifecycle {hook} {result}")
        except ClientError as e:  # no action pending (after a reboot, or already completed)
            LOG.info("lifecycle %s %s: %s", hook, result or "heartbeat", e)

    # ---------------------------------------------------------------- IMDS state
    def read_risk(self) -> str | None:
        if self.imds.get("spot/instance-action"):
            return "interruption"
        if (self.imds.get("autoscaling/target-lifecycle-state") or "").strip() == "Terminated":
            return "terminating"
        if self.marked_unhealthy:
            return "unhealthy"
        if self.imds.get("events/recommendations/rebalance"):
            return "rebalance"
        return None

    # ---------------------------------------------------------------- secrets and certificate
    def _secret(self, name: str) -> tuple:
        r = self.sm.get_secret_value(SecretId=name)
        return r.get("SecretString") or r["SecretBinary"].decode(), r.get("VersionId")

    def fetch_secrets(self) -> None:
        c = self.cfg
        for key, fname in (("api_key_secret", "api-key"), ("hf_token_secret", "hf-token")):
            if c.get(key):
                value, _ = self._secret(c[key])
                write_private(os.path.join(c["secrets_dir"], fname), value,
                              c["owner_uid"], c["owner_gid"])
        self._event("secrets written")

    def poll_certificate(self, host: str) -> bool:
        """Write the newest certificate covering host when it changed. True when written."""
        prefix, best = self.cfg["tls_secret_prefix"], None
        pages = self.sm.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [prefix]}])
        for page in pages:
            for s in page["SecretList"]:
                if not s["Name"].startswith(prefix):
                    continue
                try:
                    raw, version = self._secret(s["ARN"])
                    doc = json.loads(raw)
                except (ClientError, ValueError) as e:
                    LOG.warning("certificate secret %s unreadable: %s", s["Name"], e)
                    continue
                if host_covered(host, doc.get("names")) and doc.get("certificate"):
                    if best is None or _expiry(doc) > _expiry(best[0]):
                        best = (doc, version, s["Name"])
        self.last_cert_poll = time.monotonic()
        if best is None:
            LOG.info("no certificate covers %s yet: Traefik serves its default one", host)
            return False
        doc, version, name = best
        digest = hashlib.sha256((doc["certificate"] + doc["private_key"]).encode()).hexdigest()
        if digest == self.cert_version:
            return False
        c = self.cfg
        write_private(c["tls_key_file"], doc["private_key"], c["owner_uid"], c["owner_gid"])
        write_private(c["tls_cert_file"], doc["certificate"], c["owner_uid"], c["owner_gid"], mode=0o444)
        if c.get("traefik_tls_file"):
            # Traefik skips a reload whose configuration looks the same, and does not watch the
            # certificate files themselves: name them by content, in a file it watches (last).
            d, tag = os.path.dirname(c["tls_cert_file"]), digest[:12]
            cert, key = os.path.join(d, f"tls-{tag}.crt"), os.path.join(d, f"tls-{tag}.key")
            write_private(key, doc["private_key"], c["owner_uid"], c["owner_gid"])
            write_private(cert, doc["certificate"], c["owner_uid"], c["owner_gid"], mode=0o444)
            body = (f"# written by provision-agent: {name} {doc.get('not_after', '')}\n"
                    f"tls:\n  certificates:\n    - certFile: {cert}\n      keyFile: {key}\n")
            write_private(c["traefik_tls_file"], body, None, None, mode=0o444)
            for f in os.listdir(d):
                if f.startswith("tls-") and tag not in f:
                    os.unlink(os.path.join(d, f))
        self.cert_version = digest
        self._event(f"certificate {name} written for {host}")
        return True

    def set_host(self, host: str | None) -> None:
        if host and host != self.host:
            self.host = host
            write_private(self.cfg["host_file"], host + "\n", None, None, mode=0o444)
            try:
                self.poll_certificate(host)
            except (ClientError, BotoCoreError) as e:
                LOG.warning("certificate for %s: %s", host, e)

    # ---------------------------------------------------------------- llama-server
    def _http(self, method: str, path: str, body=None, timeout: float = 5.0):
        headers = {"Content-Type": "application/json"}
        key_file = os.path.join(self.cfg["secrets_dir"], "api-key")
        if self.cfg.get("api_key_secret") and os.path.exists(key_file):
            with open(key_file, encoding="utf-8") as f:
                headers["Authorization"] = "Bearer " + f.read().strip()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.cfg["llama_url"].rstrip("/") + path, data=data,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def llama_state(self) -> str:
        """downloading (nothing listens yet), loading (not answering chat yet) or ok."""
        try:
            status, _ = self._http("GET", "/health")
        except (OSError, urllib.error.URLError):
            return "downloading"
        if status != 200:
            return "loading"
        try:
            status, raw = self._http("POST", "/v1/chat/completions", {
                "model": self.cfg["api_name"], "max_tokens": 1,
                "messages": [{"role": "user", "content": "Say OK."}]},
                timeout=self.cfg["check_timeout"])
            if status == 200 and json.loads(raw).get("choices"):
                return "ok"
        except (OSError, ValueError, urllib.error.URLError):
            pass
        return "loading"

    def in_flight(self) -> int | None:
        """Generations under way (llama-server /slots), None when it cannot tell."""
        try:
            status, raw = self._http("GET", "/slots")
            if status == 200:
                return sum(1 for s in json.loads(raw) if s.get("is_processing"))
        except (OSError, ValueError, urllib.error.URLError):
            pass
        return None

    def set_drain(self, on: bool) -> None:
        path, c = self.cfg["drain_file"], self.cfg
        if on:
            write_private(path, c["drain_on"] or "draining\n", None, None, mode=0o444)
        elif c["drain_off"] is not None:
            write_private(path, c["drain_off"], None, None, mode=0o444)
        elif os.path.exists(path):
            os.unlink(path)
        if on != self.drained:
            self._event("drain on" if on else "drain off")
        self.drained = on

    def wait_front_drained(self) -> None:
        """Traefik applies the switch after its file watcher fires: until then new requests still
        reach llama-server, so counting generations in flight before that would be too early."""
        url = self.cfg.get("drain_probe_url")
        if not url:
            self.stop.wait(self.cfg["drain_settle"])
            return
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the host's own front
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                urllib.request.urlopen(url, timeout=2, context=ctx).close()
            except urllib.error.HTTPError as e:
                if e.code == 503:
                    return
            except OSError:
                return  # the front is not there: nothing reaches llama-server through it
            self.stop.wait(0.1)

    def drain(self) -> None:
        """503 for new requests; wait (bounded) for generations in flight to finish."""
        self.set_drain(True)
        self.set_phase("draining")
        self.wait_front_drained()
        deadline = time.monotonic() + self.cfg["drain_timeout"]
        while time.monotonic() < deadline and not self.stop.is_set():
            n = self.in_flight()
            if n == 0:
                return
            if n is None:  # cannot tell: give in-flight requests a short fixed grace
                self.stop.wait(min(2.0, self.cfg["drain_timeout"]))
                return
            self.stop.wait(0.2)

    # ---------------------------------------------------------------- launch template versions
    def _group_version(self) -> int | None:
        r = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.cfg["asg_name"]])
        if not r["AutoScalingGroups"]:
            return None
        g = r["AutoScalingGroups"][0]
        spec = g.get("LaunchTemplate") or (
            g.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {})
            .get("LaunchTemplateSpecification"))
        if not spec:
            return None
        v = str(spec.get("Version") or "$Default")
        if v.isdigit():
            return int(v)
        kw = ({"LaunchTemplateIds": [spec["LaunchTemplateId"]]} if spec.get("LaunchTemplateId")
              else {"LaunchTemplateNames": [spec["LaunchTemplateName"]]})
        lt = self.ec2.describe_launch_templates(**kw)["LaunchTemplates"][0]
        return int(lt["LatestVersionNumber" if v == "$Latest" else "DefaultVersionNumber"])

    @staticmethod
    def _version(inst: dict) -> int | None:
        v = inst["Tags"].get(T_LTVER, "")
        return int(v) if v.isdigit() else None

    def outdated(self, inst: dict, group_version: int | None) -> bool:
        v = self._version(inst)
        return group_version is not None and v is not None and v < group_version

    # ---------------------------------------------------------------- claiming
    def find_own_address(self, addrs=None):
        for a in addrs if addrs is not None else self.addresses():
            if a.get("InstanceId") == self.instance_id:
                return a
        return None

    def try_claim(self) -> dict | None:
        """Hold an address: ours already, a free one, or one handed over. None: not yet."""
        addrs = self.addresses()
        own = self.find_own_address(addrs)
        if own:
            self.request = None
            return own
        for _ in range(3):  # a lost race: look again (the others' claims are visible now)
            own = self.find_own_address(addrs)
            if own:  # e.g. our association applied but its answer was lost: keep that one
                self._event(f"claimed free {own.get('PublicIp')}")
                return own
            free = [a for a in addrs if not a.get("InstanceId") and not a.get("AssociationId")]
            if not free:
                break
            # Rendezvous order: agents booting together try different addresses first.
            a = min(free, key=lambda a: hashlib.sha256(
                (self.instance_id + a["AllocationId"]).encode()).hexdigest())
            if a["Tags"].get(T_HOST):
                self.set_host(a["Tags"][T_HOST])  # certificate in place before traffic comes
            try:
                self.ec2.associate_address(AllocationId=a["AllocationId"],
                                           InstanceId=self.instance_id, AllowReassociation=False)
            except ClientError as e:
                LOG.info("lost the race for %s: %s", a.get("PublicIp"), e.response["Error"]["Code"])
                addrs = self.addresses()
                continue
            own = self.find_own_address()
            if own:
                self._event(f"claimed free {own.get('PublicIp')}")
                return own
            addrs = self.addresses()
        self.request_handover(addrs)
        return None

    def _waiting(self, other: str, addrs) -> bool:
        """Another instance asked first: it is running, ready and still holds no address."""
        o = self._instances([other]).get(other)
        return (o is not None and o["State"]["Name"] == "running"
                and o["Tags"].get(T_PHASE) == "ready"
                and not any(x.get("InstanceId") == other for x in addrs))

    def request_handover(self, addrs) -> None:
        held = [a for a in addrs if a.get("InstanceId")]
        if not held:
            return
        insts = self._instances({a["InstanceId"] for a in held} | {self.instance_id})
        me = insts.get(self.instance_id)
        gv = self._group_version()
        if me is not None and self.outdated(me, gv):
            return  # an outdated replacement never takes over
        now = time.monotonic()
        if self.request:
            holder, alloc, since = self.request
            h = insts.get(holder)
            if h and h["Tags"].get(T_HANDOVER) == self.instance_id:
                if now - since < self.cfg["request_timeout"]:
                    return  # still waiting for that holder
                self._tag(T_HANDOVER, None, holder)  # withdraw it: never two holders moving to us
            self.request = None
        ranked = []
        for a in held:
            h = insts.get(a["InstanceId"])
            if h is None or h["State"]["Name"] not in ("pending", "running"):
                # The holder is gone or going: it cannot hand over; take the address directly.
                try:
                    self.ec2.associate_address(AllocationId=a["AllocationId"],
                                               InstanceId=self.instance_id, AllowReassociation=True)
                    self._event(f"took {a.get('PublicIp')} from stopped holder")
                    return
                except ClientError as e:
                    LOG.info("take-over of %s failed: %s", a.get("PublicIp"), e)
                    continue
            risk = h["Tags"].get(T_RISK)
            rank = {"terminating": 0, "interruption": 0, "unhealthy": 1, "rebalance": 2}.get(risk)
            if rank is None and self.outdated(h, gv):
                rank = 3
            if rank is None:
                continue  # a ready, current, healthy holder: never
            other = h["Tags"].get(T_HANDOVER)
            if other and other != self.instance_id and self._waiting(other, addrs):
                continue  # another replacement asked first and is still waiting
            ranked.append((rank, a, h))
        if not ranked:
            return
        ranked.sort(key=lambda x: x[0])
        _, a, h = ranked[0]
        if a["Tags"].get(T_HOST):
            self.set_host(a["Tags"][T_HOST])
        self._tag(T_HANDOVER, self.instance_id, h["InstanceId"])
        self.request = (h["InstanceId"], a["AllocationId"], now)
        self._event(f"requested {a.get('PublicIp')} from {h['InstanceId']} ({h['Tags'].get(T_RISK) or 'outdated'})")

    # ---------------------------------------------------------------- holder side
    def handle_request(self, risk: str | None) -> None:
        """A replacement asked for our address: hand it over if we may, else refuse."""
        requester = self.my_tags().get(T_HANDOVER)
        if not requester or not self.address:
            return
        may = risk is not None
        if not may:
            me = self._instances([self.instance_id]).get(self.instance_id)
            may = me is not None and self.outdated(me, self._group_version())
        r = self._instances([requester]).get(requester)
        ok = (r is not None and r["State"]["Name"] == "running"
              and r["Tags"].get(T_PHASE) == "ready"
              and all(r["Tags"].get(f"provision:{k}") == self.cfg[k] for k in ("slug", "stack", "cluster"))
              and not self.find_own_address([a for a in self.addresses() if a.get("InstanceId") == requester]))
        if not may or not ok:
            LOG.info("hand-over request from %s refused (may=%s requester ok=%s)", requester, may, ok)
            self._tag(T_HANDOVER, None)
            return
        self._event(f"hand-over to {requester} ({risk or 'outdated'})")
        self.drain()
        # Draining took a while: is the request still standing and the requester still without
        # an address? (Associating a second address to it would silently take its first.)
        if (self.my_tags().get(T_HANDOVER) != requester
                or any(a.get("InstanceId") == requester for a in self.addresses())):
            LOG.info("hand-over to %s withdrawn while draining", requester)
            if risk not in EXIT_RISKS:
                self.set_drain(False)
                self.set_phase("ready")
            return
        self.ec2.associate_address(AllocationId=self.address["AllocationId"], InstanceId=requester,
                                   AllowReassociation=True)
        self._event(f"address {self.address.get('PublicIp')} moved to {requester}")
        self.address = None
        self._tag(T_HANDOVER, None)

    def exit_path(self, risk: str) -> None:
        """Interruption or termination: drain, hand over if asked in time, else disassociate."""
        if self.exit_since is None:
            self.exit_since = time.monotonic()
            self._event(f"exit path ({risk})")
            if self.address:
                self.drain()
            else:
                self.set_drain(True)
                self.set_phase("draining")
        if self.address:
            self.handle_request(risk)
        if self.address and time.monotonic() - self.exit_since >= self.cfg["handover_wait"]:
            self.address = self.find_own_address()
            if self.address:
                self.ec2.disassociate_address(AssociationId=self.address["AssociationId"])
                self._event(f"disassociated {self.address.get('PublicIp')}")
            self.address = None
        if not self.address and not self.exit_done and risk == "terminating":
            self._lifecycle(self.cfg["terminate_hook"], "CONTINUE")
            self.exit_done = True

    # ---------------------------------------------------------------- main loop
    def step(self) -> None:
        """One pass of the control loop (tests call it; run() loops over it)."""
        now = time.monotonic()
        risk = self.read_risk()
        if risk != self.risk_tag:
            self._tag(T_RISK, risk)
            self.risk_tag = risk
            self._event(f"at-risk {risk}")
        if risk in EXIT_RISKS:
            if self.address is None and self.exit_since is None:
                self.address = self.find_own_address()
            self.exit_path(risk)
            return
        state = self.llama_state()
        if not self.ready_once:
            if state != "ok":
                self.set_phase("downloading" if state == "downloading" else "loading")
                if state == "downloading" and now - self.last_start >= self.cfg["restart_interval"]:
                    self.start_services()
            else:
                self.set_phase("ready")
                self.address = self.try_claim()
                if self.address:
                    self.set_host(self.address["Tags"].get(T_HOST))
                    self.ready_once = True
                    self._event(f"serving {self.address.get('PublicIp')} as {self.host}")
                    if not self.launch_done:
                        self._lifecycle(self.cfg["launch_hook"], "CONTINUE")
                        self.launch_done = True
            if not self.ready_once and self.rebooted:
                # After a reboot we are InService and hold an address: not back within the
                # launch timeout means unhealthy, for the group to replace us.
                if now - self.started > self.cfg["launch_timeout"] and not self.marked_unhealthy:
                    self.mark_unhealthy()
            elif not self.ready_once and not self.launch_done:
                if now - self.started > self.cfg["launch_timeout"]:
                    self._event("launch timeout: abandoning")
                    self._lifecycle(self.cfg["launch_hook"], "ABANDON")
                    self.launch_done = True
                elif now - self.last_heartbeat >= self.cfg["heartbeat_interval"]:
                    self._lifecycle(self.cfg["launch_hook"], None)
                    self.last_heartbeat = now
            return
        # Serving (or handed over): keep the address, the certificate and the health honest.
        if self.address is not None:
            self.address = self.find_own_address()
            if self.address is None:
                self._event("address no longer ours")
        if self.address is not None:
            self.handle_request(risk)
        elif not self.drained:
            self.address = self.try_claim()  # lost it without handing over: claim again
        if self.host and now - self.last_cert_poll >= self.cfg["cert_poll_interval"]:
            try:
                self.poll_certificate(self.host)
            except (ClientError, BotoCoreError) as e:
                LOG.warning("certificate poll: %s", e)
        if state == "ok":
            self.unhealthy_since = None
        elif self.unhealthy_since is None:
            self.unhealthy_since = now
        elif now - self.unhealthy_since > self.cfg["unhealthy_after"] and not self.marked_unhealthy:
            self.mark_unhealthy()

    def start_services(self) -> None:
        """docker compose up -d (idempotent): at boot, and again while nothing listens yet
        (an image pull that failed, say)."""
        self.last_start = time.monotonic()
        if self.cfg.get("start_command"):
            r = subprocess.run(self.cfg["start_command"], check=False)
            self._event(f"start command exited {r.returncode}")

    def mark_unhealthy(self) -> None:
        self.asg.set_instance_health(InstanceId=self.instance_id, HealthStatus="Unhealthy",
                                     ShouldRespectGracePeriod=False)
        self.marked_unhealthy = True
        self._event("marked Unhealthy")

    def boot(self) -> None:
        while not self.stop.is_set():
            try:
                self.identify()
                break
            except (OSError, RuntimeError, urllib.error.URLError) as e:
                LOG.warning("IMDS not answering yet: %s", e)
                self.stop.wait(2)
        self.set_phase("booting")
        self.set_drain(False)
        self.learn_group()
        while not self.stop.is_set():
            try:
                self.fetch_secrets()
                break
            except (ClientError, BotoCoreError, OSError) as e:
                LOG.warning("secrets not readable yet: %s", e)
                self.stop.wait(5)
        while not self.stop.is_set():
            try:
                self.rebooted = self.find_own_address() is not None
                break
            except (ClientError, BotoCoreError) as e:
                LOG.warning("addresses not readable yet: %s", e)
                self.stop.wait(5)
        if self.rebooted:
            self._event("restarted while holding an address (reboot)")
        self.start_services()

    def run(self) -> None:
        self.boot()
        while not self.stop.is_set():
            try:
                self.step()
            except (ClientError, BotoCoreError, OSError, urllib.error.URLError) as e:
                LOG.warning("step failed (retrying): %s", e)
            poll = self.cfg["poll_interval"]
            if self.exit_since is not None and self.address is not None:
                poll = min(poll, 0.25)  # draining, waiting for a replacement: answer it quickly
            self.stop.wait(poll)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="provision instance agent")
    p.add_argument("--config", default="/etc/provision/agent.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s")
    agent = Agent(args.config)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())  # systemd stop: end the loop
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
