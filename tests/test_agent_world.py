"""A little world for instance-agent tests and the agent bench (helpers only: no tests here).

moto (through the `aws` fixture's emulator: AWS_ENDPOINT_URL is set) holds the launch template,
the Auto Scaling group, its instances, the Elastic IPs and the secrets; tests/imds_emulator.py
gives each instance its own IMDSv2 view; each instance gets a test-only llama-server stand-in
(LlamaStub) and a drain-switch front (DrainFront), and its own directories. Agents run as threads.
"""
from __future__ import annotations

import datetime
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from tests.imds_emulator import DrainFront, ImdsEmulator, ImdsView, LlamaStub
from userdata.agent import Agent

SLUG, STACK, CLUSTER = "demo", "dev", "gpu"
ASG = f"{SLUG}-{STACK}-{CLUSTER}"
API_KEY = "sk-agent-test-7b1f0c2e9d"
HF_TOKEN = "hf_agentTestToken0123456789"
TAGS = {"provision:slug": SLUG, "provision:stack": STACK, "provision:cluster": CLUSTER}


def make_cert(names: list[str], days: int = 90) -> dict:
    """A real self-signed certificate + key in the certificates issue's secret format."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .sign(key, hashes.SHA256()))
    return {
        "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "private_key": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "names": names,
        "not_after": (now + datetime.timedelta(days=days)).isoformat(),
    }


class TraefikFront:
    def __init__(self, proc, url: str) -> None:
        self.proc, self.url = proc, url

    def stop(self) -> None:
        self.proc.terminate()


@dataclass
class Node:
    instance_id: str
    view: ImdsView
    stub: LlamaStub
    front: object  # DrainFront | TraefikFront: .url, .stop()
    dir: str
    cfg: dict
    stop: threading.Event = field(default_factory=threading.Event)
    agent: Agent | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None

    def path(self, *p: str) -> str:
        return os.path.join(self.dir, *p)


class World:
    def __init__(self, tmp: str, instances: int, hosts: list[str], gen_seconds: float = 0.0,
                 front: str = "stub", **cfg_overrides) -> None:
        """front: "stub" (DrainFront) or "traefik" (the real traefik binary with the shipped
        config, as tests/container/procs.start_traefik runs it)."""
        self.tmp, self.gen_seconds, self.overrides = str(tmp), gen_seconds, cfg_overrides
        self.front_kind = front
        self.ec2 = boto3.client("ec2")
        self.asg = boto3.client("autoscaling")
        self.sm = boto3.client("secretsmanager")
        self.imds = ImdsEmulator().start()
        lt = self.ec2.create_launch_template(
            LaunchTemplateName=ASG,
            LaunchTemplateData=self.template_data("g5.xlarge"))
        self.lt_id = lt["LaunchTemplate"]["LaunchTemplateId"]
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=ASG, MinSize=0, MaxSize=20, DesiredCapacity=instances,
            LaunchTemplate={"LaunchTemplateId": self.lt_id, "Version": "1"},
            AvailabilityZones=["us-east-1a"])
        for name, value in ((f"{SLUG}/{STACK}/api-key", API_KEY),
                            (f"{SLUG}/{STACK}/{CLUSTER}/hf-token", HF_TOKEN)):
            self.sm.create_secret(Name=name, SecretString=value)
        self.certs = {}
        if hosts:
            domain = hosts[0].split(".", 1)[1]
            self.put_cert("wildcard", [f"*.{domain}"])
        self.alloc = {}  # host -> allocation id
        for host in hosts:
            tags = dict(TAGS, **{"provision:host": host, "Name": f"{SLUG}-{STACK}-{host}"})
            a = self.ec2.allocate_address(Domain="vpc", TagSpecifications=[{
                "ResourceType": "elastic-ip",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
            self.alloc[host] = a["AllocationId"]
        self.nodes: dict[str, Node] = {}
        for iid in self.group_instances():
            self.add_node(iid)

    # ---------------------------------------------------------------------------- aws side
    @staticmethod
    def template_data(instance_type: str) -> dict:
        """Like the engine's launch template: instances carry the stack's tags from launch."""
        return {"ImageId": "ami-12c6146b", "InstanceType": instance_type, "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()]}]}

    def put_cert(self, cert_name: str, names: list[str], days: int = 90) -> dict:
        doc = make_cert(names, days)
        name = f"{SLUG}/{STACK}/tls/{cert_name}"
        if cert_name in self.certs:
            self.sm.put_secret_value(SecretId=name, SecretString=json.dumps(doc))
        else:
            self.sm.create_secret(Name=name, SecretString=json.dumps(doc))
        self.certs[cert_name] = doc
        return doc

    def group_instances(self) -> list[str]:
        g = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])["AutoScalingGroups"][0]
        return sorted(i["InstanceId"] for i in g["Instances"])

    def launch(self, version: str = "1") -> Node:
        """A replacement instance (as capacity rebalancing or a rollout would launch it)."""
        r = self.ec2.run_instances(MinCount=1, MaxCount=1,
                                   LaunchTemplate={"LaunchTemplateId": self.lt_id, "Version": version})
        iid = r["Instances"][0]["InstanceId"]
        self.asg.attach_instances(AutoScalingGroupName=ASG, InstanceIds=[iid])
        return self.add_node(iid)

    def holders(self) -> dict:
        """host -> instance id holding its address (None when free)."""
        out = {}
        for a in self.ec2.describe_addresses(AllocationIds=list(self.alloc.values()))["Addresses"]:
            host = {t["Key"]: t["Value"] for t in a.get("Tags", [])}["provision:host"]
            out[host] = a.get("InstanceId") or None
        return out

    def tags(self, iid: str) -> dict:
        r = self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}])
        return {t["Key"]: t["Value"] for t in r["Tags"]}

    # ---------------------------------------------------------------------------- instance side
    def add_node(self, iid: str) -> Node:
        d = os.path.join(self.tmp, iid)
        os.makedirs(d, exist_ok=True)
        view = self.imds.add(iid)
        stub = LlamaStub(iid, api_key=API_KEY, gen_seconds=self.gen_seconds)
        cfg = {
            "slug": SLUG, "stack": STACK, "cluster": CLUSTER, "asg_name": ASG,
            "api_key_secret": f"{SLUG}/{STACK}/api-key",
            "hf_token_secret": f"{SLUG}/{STACK}/{CLUSTER}/hf-token",
            "api_name": "test-model",
            "imds_url": view.url, "llama_url": stub.url,
            "secrets_dir": os.path.join(d, "secrets"), "tls_cert_file": os.path.join(d, "tls", "tls.crt"),
            "tls_key_file": os.path.join(d, "tls", "tls.key"),
            "host_file": os.path.join(d, "host"), "drain_file": os.path.join(d, "drain"),
            "traefik_tls_file": os.path.join(d, "dynamic", "tls.yml"),
            "poll_interval": 0.1, "drain_settle": 0.0, "heartbeat_interval": 0.3, "drain_timeout": 5.0,
            "handover_wait": 2.0, "request_timeout": 10.0, "unhealthy_after": 1.0,
            "cert_poll_interval": 3600.0, "check_timeout": 10.0,
        }
        if self.front_kind == "traefik":
            from tests.container.procs import start_traefik
            from tests.support import free_port
            from userdata import agent_config, UserDataContext
            rendered = agent_config(UserDataContext(slug=SLUG, stack=STACK, cluster=CLUSTER,
                                                    region="us-east-1", image="i", api_name="m"))
            port = free_port()
            proc, dyn = start_traefik(Path(d), port, free_port(), stub.url,
                                      Path(cfg["tls_cert_file"]), Path(cfg["tls_key_file"]))
            front = TraefikFront(proc, f"https://127.0.0.1:{port}")
            cfg.update(drain_file=str(dyn / "drain.yml"), drain_on=rendered["drain_on"],
                       traefik_tls_file=str(dyn / "provision-tls.yml"),
                       drain_probe_url=f"https://127.0.0.1:{port}/health")
        else:
            front = DrainFront(os.path.join(d, "drain"), stub.url)
        cfg.update(self.overrides)
        node = Node(iid, view, stub, front, d, cfg)
        self.nodes[iid] = node
        return node

    def start(self, node: Node) -> Node:
        node.stop = threading.Event()
        node.agent = Agent(node.cfg, stop=node.stop)

        def run():
            try:
                node.agent.run()
            except BaseException as e:  # surfaced by the test through node.error
                node.error = e
                raise

        node.thread = threading.Thread(target=run, name=f"agent-{node.instance_id}", daemon=True)
        node.thread.start()
        return node

    def stop_agent(self, node: Node) -> None:
        node.stop.set()
        if node.thread:
            node.thread.join(timeout=30)
            assert not node.thread.is_alive(), f"agent {node.instance_id} did not stop"

    def close(self) -> None:
        for n in self.nodes.values():
            n.stop.set()
        for n in self.nodes.values():
            if n.thread:
                n.thread.join(timeout=30)
            n.stub.stop()
            n.front.stop()
        self.imds.stop()


def wait_for(pred, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
