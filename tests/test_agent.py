"""The instance agent (userdata/agent.py) against moto (EC2, Secrets Manager, Auto Scaling, via the
`aws` fixture's server and its fault layer, which answers and records the lifecycle calls moto lacks)
and our IMDSv2 emulator, with several agents as threads, each with its own IMDS view.

"llama-server answers a chat completion" is played by tests/imds_emulator.LlamaStub, a tiny local
HTTP stand-in for the OpenAI endpoint, used ONLY in these agent tests and the agent bench: the real
llama-server is tested by the container's tests. DrainFront likewise stands in for Traefik's switch.
"""
from __future__ import annotations

import os
import stat
import time

import pytest

from tests.test_agent_world import API_KEY, ASG, HF_TOKEN, World, wait_for

pytestmark = pytest.mark.timeout(180)

HOSTS8 = [f"llm-{i}.example.com" for i in range(8)]


@pytest.fixture
def world_factory(aws, tmp_path):
    worlds = []

    def make(instances, hosts, **kw):
        w = World(tmp_path, instances, hosts, **kw)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        w.close()


def lifecycle(aws, action, hook=None, result=None):
    """Instance ids of the recorded lifecycle calls of one kind."""
    out = []
    for c in aws.calls:
        if c.service == "autoscaling" and c.action == action and c.status == 200:
            p = c.params
            if (hook is None or p.get("LifecycleHookName") == hook) and (
                    result is None or p.get("LifecycleActionResult") == result):
                out.append(p.get("InstanceId"))
    return out


def serving(w, iid):
    n = w.nodes[iid]
    return n.agent is not None and n.agent.ready_once and n.agent.address is not None


def test_eight_agents_booting_at_once_end_with_eight_distinct_addresses(aws, world_factory):
    w = world_factory(8, HOSTS8)
    ids = w.group_instances()
    assert len(ids) == 8
    for iid in ids:
        w.nodes[iid].stub.state = "ok"
    t0 = time.monotonic()
    for iid in ids:
        w.start(w.nodes[iid])
    wait_for(lambda: all(serving(w, i) for i in ids), 60, what="8 agents serving")
    elapsed = time.monotonic() - t0
    holders = w.holders()
    assert sorted(h for h in holders.values() if h) == sorted(ids), holders
    assert len(set(holders.values())) == 8
    for iid in ids:
        host = open(w.nodes[iid].path("host")).read().strip()
        assert holders[host] == iid  # its hostname is its address's provision:host tag
        assert w.tags(iid)["provision:phase"] == "ready"
    # InService = ready: each completed its launch action once it served.
    assert sorted(lifecycle(aws, "CompleteLifecycleAction", "provision-launch", "CONTINUE")) == sorted(ids)
    assoc = [c for c in aws.calls if c.action == "AssociateAddress"]
    assert all(c.params.get("AllowReassociation") == "false" for c in assoc)
    print(f"race: 8 agents, {len(set(holders.values()))} distinct addresses, {elapsed:.2f}s, "
          f"{len(assoc)} AssociateAddress calls")


def test_agents_never_take_a_ready_current_instances_address(aws, world_factory):
    w = world_factory(5, HOSTS8[:3])
    ids = w.group_instances()
    for iid in ids:
        w.nodes[iid].stub.state = "ok"
        w.start(w.nodes[iid])
    wait_for(lambda: sum(serving(w, i) for i in ids) == 3, 60, what="3 agents serving")
    first = w.holders()
    time.sleep(2.0)  # the two spare agents keep polling: nobody may ask or steal
    assert w.holders() == first
    idle = [i for i in ids if i not in first.values()]
    assert len(idle) == 2
    for iid in ids:
        assert "provision:handover-to" not in w.tags(iid)
        assert not os.path.exists(w.nodes[iid].path("drain"))
    for iid in idle:
        assert w.tags(iid)["provision:phase"] == "ready"
        assert iid not in lifecycle(aws, "CompleteLifecycleAction", "provision-launch")
    # A holder refuses a request even if one arrives (say, from a confused replacement).
    holder = first[HOSTS8[0]]
    w.ec2.create_tags(Resources=[holder], Tags=[{"Key": "provision:handover-to", "Value": idle[0]}])
    wait_for(lambda: "provision:handover-to" not in w.tags(holder), 10, what="request refused")
    assert w.holders() == first


def _handover(aws, w, notice):
    (host,) = w.alloc
    ids = w.group_instances()
    old = w.nodes[ids[0]]
    old.stub.state = "ok"
    w.start(old)
    wait_for(lambda: serving(w, old.instance_id), 30, what="first holder serving")
    new = w.launch()
    new.stub.state = "ok"
    w.start(new)
    wait_for(lambda: w.tags(new.instance_id).get("provision:phase") == "ready", 30, what="replacement ready")
    time.sleep(0.5)
    assert w.holders()[host] == old.instance_id  # a healthy, current holder keeps it
    notice(old)
    wait_for(lambda: w.holders()[host] == new.instance_id, 30, what="address moved")
    wait_for(lambda: serving(w, new.instance_id), 10, what="replacement serving")
    assert open(new.path("host")).read().strip() == host
    assert os.path.exists(old.path("drain"))  # the old one answers 503 to anything new
    assert w.tags(old.instance_id)["provision:phase"] == "draining"
    assert "provision:handover-to" not in w.tags(old.instance_id)
    assert new.instance_id in lifecycle(aws, "CompleteLifecycleAction", "provision-launch", "CONTINUE")
    moves = [c for c in aws.calls if c.action == "AssociateAddress" and c.params.get("InstanceId") == new.instance_id]
    assert moves and moves[-1].params.get("AllowReassociation") == "true"
    return old, new


def test_replacement_takes_over_from_an_interrupted_instance(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    old, new = _handover(aws, w, lambda n: n.view.spot_notice(120))
    assert w.tags(old.instance_id)["provision:at-risk"] == "interruption"


def test_replacement_takes_over_from_a_terminating_instance_then_it_completes(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    old, new = _handover(aws, w, lambda n: n.view.terminate())  # the terminate lifecycle hook
    assert w.tags(old.instance_id)["provision:at-risk"] == "terminating"
    wait_for(lambda: old.instance_id in lifecycle(aws, "CompleteLifecycleAction", "provision-terminate", "CONTINUE"),
             10, what="terminate action completed")
    assert not [c for c in aws.calls if c.action == "DisassociateAddress"]  # moved, not dropped


def test_replacement_takes_over_from_one_with_a_rebalance_recommendation(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    (host,) = w.alloc
    old = w.nodes[w.group_instances()[0]]
    old.stub.state = "ok"
    w.start(old)
    wait_for(lambda: serving(w, old.instance_id), 30, what="holder serving")
    old.view.rebalance_recommendation()
    wait_for(lambda: w.tags(old.instance_id).get("provision:at-risk") == "rebalance", 10, what="at-risk tag")
    time.sleep(0.5)
    # A recommendation alone keeps it serving ...
    assert w.holders()[host] == old.instance_id
    assert not os.path.exists(old.path("drain"))
    assert w.tags(old.instance_id)["provision:phase"] == "ready"
    # ... until a ready replacement asks.
    new = w.launch()
    new.stub.state = "loading"
    w.start(new)
    time.sleep(0.5)
    assert w.holders()[host] == old.instance_id  # not ready: no request yet
    assert "provision:handover-to" not in w.tags(old.instance_id)
    new.stub.state = "ok"
    wait_for(lambda: w.holders()[host] == new.instance_id, 30, what="address moved")
    wait_for(lambda: serving(w, new.instance_id), 10, what="replacement serving")
    assert os.path.exists(old.path("drain"))
    assert new.instance_id in lifecycle(aws, "CompleteLifecycleAction", "provision-launch", "CONTINUE")


def test_replacement_takes_over_from_an_older_launch_template_version(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    (host,) = w.alloc
    old = w.nodes[w.group_instances()[0]]
    old.stub.state = "ok"
    w.start(old)
    wait_for(lambda: serving(w, old.instance_id), 30, what="holder serving")
    w.ec2.create_launch_template_version(LaunchTemplateId=w.lt_id,
                                         LaunchTemplateData=w.template_data("g5.2xlarge"))
    w.asg.update_auto_scaling_group(AutoScalingGroupName=ASG, LaunchTemplate={
        "LaunchTemplateId": w.lt_id, "Version": "2"})
    new = w.launch(version="2")
    new.stub.state = "ok"
    w.start(new)
    wait_for(lambda: w.holders()[host] == new.instance_id, 30, what="address moved to the new version")
    assert os.path.exists(old.path("drain"))


def test_termination_without_replacement_disassociates_and_completes(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    (host,) = w.alloc
    old = w.nodes[w.group_instances()[0]]
    old.stub.state = "ok"
    w.start(old)
    wait_for(lambda: serving(w, old.instance_id), 30, what="holder serving")
    old.view.terminate()  # the terminate lifecycle hook: target-lifecycle-state Terminated
    wait_for(lambda: os.path.exists(old.path("drain")), 10, what="drain")
    wait_for(lambda: w.holders()[host] is None, 20, what="disassociated")
    wait_for(lambda: old.instance_id in lifecycle(aws, "CompleteLifecycleAction", "provision-terminate", "CONTINUE"),
             10, what="terminate action completed")
    # Disassociated, never released: the address is still allocated and tagged.
    assert w.ec2.describe_addresses(AllocationIds=[w.alloc[host]])["Addresses"]
    assert not [c for c in aws.calls if c.action == "ReleaseAddress"]


def test_secret_files_are_0400_and_never_in_the_environment(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    n = w.nodes[w.group_instances()[0]]
    n.stub.state = "ok"
    w.start(n)
    wait_for(lambda: serving(w, n.instance_id), 30, what="serving")
    wait_for(lambda: os.path.exists(n.path("tls", "tls.key")), 10, what="certificate written")
    key = w.certs["wildcard"]["private_key"]
    keys = [os.path.join("tls", f) for f in os.listdir(n.path("tls")) if f.endswith(".key")]
    assert len(keys) == 2  # tls.key (Traefik's default) and its content-named copy
    secret_files = {os.path.join("secrets", "api-key"): API_KEY,
                    os.path.join("secrets", "hf-token"): HF_TOKEN, **{k: key for k in keys}}
    for rel, value in secret_files.items():
        p = n.path(rel)
        st = os.stat(p)
        assert stat.S_IMODE(st.st_mode) == 0o400, (p, oct(st.st_mode))
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (10001, 10001)
        assert open(p).read() == value
    assert API_KEY not in "".join(os.environ.values())
    for root, _, files in os.walk(n.dir):  # only the secret files hold secret values
        for f in files:
            p = os.path.join(root, f)
            if os.path.relpath(p, n.dir) in secret_files:
                continue
            text = open(p).read()
            assert API_KEY not in text and HF_TOKEN not in text and "PRIVATE KEY" not in text, p


def test_renewed_certificate_reaches_the_file(aws, world_factory):
    w = world_factory(1, ["chat.example.com"], cert_poll_interval=0.5)
    n = w.nodes[w.group_instances()[0]]
    n.stub.state = "ok"
    w.start(n)
    wait_for(lambda: serving(w, n.instance_id), 30, what="serving")
    wait_for(lambda: os.path.exists(n.path("tls", "tls.crt")), 10, what="certificate written")
    assert open(n.path("tls", "tls.crt")).read() == w.certs["wildcard"]["certificate"]
    traefik = open(n.path("dynamic", "tls.yml")).read()
    named = [line.split(": ", 1)[1] for line in traefik.splitlines() if "certFile:" in line]
    assert open(named[0]).read() == w.certs["wildcard"]["certificate"]
    # A certificate naming the host exactly and expiring later wins over the wildcard.
    renewed = w.put_cert("chat", ["chat.example.com"], days=180)
    wait_for(lambda: open(n.path("tls", "tls.crt")).read() == renewed["certificate"], 10,
             what="new certificate in the file")
    assert open(n.path("tls", "tls.key")).read() == renewed["private_key"]
    traefik = open(n.path("dynamic", "tls.yml")).read()  # Traefik's watched file names the new one
    named = [line.split(": ", 1)[1] for line in traefik.splitlines() if "certFile:" in line]
    assert open(named[0]).read() == renewed["certificate"]
    assert len(os.listdir(n.path("tls"))) == 4  # old content-named copies are gone
    # Renewal of that secret (a new version) reaches the file too.
    again = w.put_cert("chat", ["chat.example.com"], days=200)
    wait_for(lambda: open(n.path("tls", "tls.crt")).read() == again["certificate"], 10,
             what="renewed certificate in the file")


def test_no_certificate_yet_still_serves(aws, world_factory):
    w = world_factory(1, ["solo.other.org"])  # the only cert covers *.other.org ... remove it
    w.sm.delete_secret(SecretId=f"demo/dev/tls/wildcard", ForceDeleteWithoutRecovery=True)
    n = w.nodes[w.group_instances()[0]]
    n.stub.state = "ok"
    w.start(n)
    wait_for(lambda: serving(w, n.instance_id), 30, what="serving without a certificate")
    assert not os.path.exists(n.path("tls", "tls.crt"))  # Traefik keeps its default certificate


def test_phases_heartbeats_while_downloading_then_ready(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    n = w.nodes[w.group_instances()[0]]
    w.start(n)  # stub "down": nothing listens, as while the model downloads
    wait_for(lambda: w.tags(n.instance_id).get("provision:phase") == "downloading", 10, what="downloading")
    wait_for(lambda: len(lifecycle(aws, "RecordLifecycleActionHeartbeat", "provision-launch")) >= 2, 10,
             what="heartbeats")
    n.stub.state = "loading"
    wait_for(lambda: w.tags(n.instance_id).get("provision:phase") == "loading", 10, what="loading")
    assert w.holders()[HOSTS8[0]] is None  # no address before it answers a chat completion
    assert not lifecycle(aws, "CompleteLifecycleAction")
    n.stub.state = "ok"
    wait_for(lambda: serving(w, n.instance_id), 10, what="serving")
    phases = [what for _, what in n.agent.events if what.startswith("phase ")]
    assert phases == ["phase booting", "phase downloading", "phase loading", "phase ready"]
    assert n.stub.completions >= 1  # readiness came from a chat completion, not /health alone


def test_start_command_runs_at_boot_and_again_while_nothing_listens(aws, world_factory, tmp_path):
    marker = tmp_path / "starts"
    w = world_factory(1, HOSTS8[:1], restart_interval=0.5,
                      start_command=["sh", "-c", f"echo up >> {marker}"])
    n = w.nodes[w.group_instances()[0]]
    w.start(n)  # the stub stays "down": as if the image pull failed
    wait_for(lambda: marker.exists() and len(marker.read_text().split()) >= 3, 10, what="re-runs")
    n.stub.state = "ok"
    wait_for(lambda: serving(w, n.instance_id), 10, what="serving")
    runs = len(marker.read_text().split())
    time.sleep(1.0)
    assert len(marker.read_text().split()) == runs  # serving: no more starts
    # the secrets were in place before the first start
    assert os.path.exists(n.path("secrets", "api-key"))


def test_launch_timeout_abandons(aws, world_factory):
    w = world_factory(1, HOSTS8[:1], launch_timeout=1.0)
    n = w.nodes[w.group_instances()[0]]
    w.start(n)
    wait_for(lambda: n.instance_id in lifecycle(aws, "CompleteLifecycleAction", "provision-launch", "ABANDON"),
             10, what="ABANDON")


def test_unhealthy_after_ready_marks_the_instance(aws, world_factory):
    w = world_factory(1, HOSTS8[:1])
    n = w.nodes[w.group_instances()[0]]
    n.stub.state = "ok"
    w.start(n)
    wait_for(lambda: serving(w, n.instance_id), 30, what="serving")
    n.stub.state = "loading"  # llama-server stops answering
    def health():
        r = w.asg.describe_auto_scaling_instances(InstanceIds=[n.instance_id])
        return r["AutoScalingInstances"][0]["HealthStatus"].upper() == "UNHEALTHY"
    wait_for(health, 15, what="SetInstanceHealth Unhealthy")
    calls = [c for c in aws.calls if c.action == "SetInstanceHealth"]
    assert calls[-1].params.get("ShouldRespectGracePeriod") == "false"
    wait_for(lambda: w.tags(n.instance_id).get("provision:at-risk") == "unhealthy", 5, what="at-risk tag")


def test_reboot_rebuilds_state_from_tags_and_imds(aws, world_factory):
    w = world_factory(2, HOSTS8[:1])
    ids = w.group_instances()
    a, b = w.nodes[ids[0]], w.nodes[ids[1]]
    for n in (a, b):
        n.stub.state = "ok"
        w.start(n)
    wait_for(lambda: w.holders()[HOSTS8[0]] in ids, 30, what="one holder")
    holder = w.nodes[w.holders()[HOSTS8[0]]]
    wait_for(lambda: serving(w, holder.instance_id), 10, what="holder serving")
    w.stop_agent(holder)
    # A reboot: /run is a tmpfs (secrets, host, drain file gone), llama-server restarts.
    for sub in ("secrets", "tls"):
        for f in os.listdir(holder.path(sub)):
            os.unlink(holder.path(sub, f))
    os.unlink(holder.path("host"))
    holder.stub.state = "down"
    aws.clear_calls()
    w.start(holder)
    wait_for(lambda: os.path.exists(holder.path("secrets", "api-key")), 10, what="secrets again")
    time.sleep(0.5)
    assert w.holders()[HOSTS8[0]] == holder.instance_id  # the spare did not take it meanwhile
    holder.stub.state = "ok"
    wait_for(lambda: serving(w, holder.instance_id), 20, what="serving again")
    assert open(holder.path("host")).read().strip() == HOSTS8[0]
    # It kept its own address: no association succeeded (the spare may still have lost its boot race).
    assert not [c for c in aws.calls if c.action == "AssociateAddress"
                and (c.status == 200 or c.params.get("InstanceId") == holder.instance_id)]
    assert w.tags(holder.instance_id)["provision:phase"] == "ready"


def test_reboot_that_never_comes_back_marks_unhealthy(aws, world_factory):
    w = world_factory(1, HOSTS8[:1], launch_timeout=1.5)
    n = w.nodes[w.group_instances()[0]]
    n.stub.state = "ok"
    w.start(n)
    wait_for(lambda: serving(w, n.instance_id), 30, what="serving")
    w.stop_agent(n)
    n.stub.state = "loading"  # after the reboot llama-server never answers again
    w.start(n)
    wait_for(lambda: any(c.action == "SetInstanceHealth" for c in aws.calls), 15, what="SetInstanceHealth")
    assert "restarted while holding an address (reboot)" in [e for _, e in n.agent.events]
    assert not lifecycle(aws, "CompleteLifecycleAction", "provision-launch", "ABANDON")


def test_shipped_agent_runs_as_a_process_from_the_rendered_user_data(aws, world_factory, tmp_path):
    """The agent exactly as the user data ships it (docstrings stripped), started like systemd
    starts it (`python3 agent.py --config FILE`), with only its local endpoints and paths moved."""
    import json
    import signal
    import subprocess
    import sys

    import yaml

    from userdata import UserDataContext, render_user_data
    from tests.test_agent_world import CLUSTER, SLUG, STACK

    w = world_factory(1, HOSTS8[:1])
    n = w.nodes[w.group_instances()[0]]
    n.stub.state = "ok"
    text = render_user_data(UserDataContext(
        slug=SLUG, stack=STACK, cluster=CLUSTER, region="us-east-1", image="img", api_name="test-model",
        hf_token_secret=f"{SLUG}/{STACK}/{CLUSTER}/hf-token"))
    files = {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}
    agent = tmp_path / "agent.py"
    agent.write_text(files["/opt/provision/agent.py"])
    cfg = json.loads(files["/etc/provision/agent.json"])
    local = {k: n.cfg[k] for k in ("imds_url", "llama_url", "secrets_dir", "tls_cert_file", "tls_key_file",
                                   "host_file", "drain_file", "traefik_tls_file")}
    cfg.update(local, start_command=None, drain_probe_url=None, poll_interval=0.2)
    conf = tmp_path / "agent.json"
    conf.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, str(agent), "--config", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: w.holders()[HOSTS8[0]] == n.instance_id, 60, what="the process claimed the address")
        wait_for(lambda: n.instance_id in lifecycle(aws, "CompleteLifecycleAction", "provision-launch", "CONTINUE"),
                 20, what="launch action completed")
        assert w.tags(n.instance_id)["provision:phase"] == "ready"
        assert open(n.cfg["secrets_dir"] + "/api-key").read() == API_KEY
        assert w.imds.token_puts >= 1 and w.imds.unauthorized == 0  # IMDSv2, token on every GET
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out  # SIGTERM (systemd stop) ends the loop cleanly
    assert "claimed free" in out and "Traceback" not in out, out


def test_imds_emulator_wants_a_token(aws, world_factory):
    import urllib.error
    import urllib.request

    w = world_factory(1, [])
    view = next(iter(w.nodes.values())).view
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(view.url + "/latest/meta-data/instance-id", timeout=5)
    assert e.value.code == 401
    req = urllib.request.Request(view.url + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    token = urllib.request.urlopen(req, timeout=5).read().decode()
    get = urllib.request.Request(view.url + "/latest/meta-data/instance-id",
                                 headers={"X-aws-ec2-metadata-token": token})
    assert urllib.request.urlopen(get, timeout=5).read().decode() == view.instance_id
    view.spot_notice(120)
    get = urllib.request.Request(view.url + "/latest/meta-data/spot/instance-action",
                                 headers={"X-aws-ec2-metadata-token": token})
    assert '"action": "terminate"' in urllib.request.urlopen(get, timeout=5).read().decode()


def test_contention_three_replacements_two_holders_at_risk(aws, world_factory):
    """Two holders get rebalance recommendations while three ready replacements look for an
    address: each address moves exactly once, to two different replacements; the third idles."""
    w = world_factory(2, HOSTS8[:2])
    holders = [w.nodes[i] for i in w.group_instances()]
    for n in holders:
        n.stub.state = "ok"
        w.start(n)
    wait_for(lambda: all(serving(w, n.instance_id) for n in holders), 30, what="holders serving")
    spares = [w.launch() for _ in range(3)]
    for n in spares:
        n.stub.state = "ok"
        w.start(n)
    wait_for(lambda: all(w.tags(n.instance_id).get("provision:phase") == "ready" for n in spares), 30,
             what="spares ready")
    for n in holders:
        n.view.rebalance_recommendation()
    spare_ids = {n.instance_id for n in spares}
    wait_for(lambda: set(w.holders().values()) <= spare_ids, 40, what="both addresses on replacements")
    time.sleep(1.0)  # let any stray request play out
    final = w.holders()
    assert len(set(final.values())) == 2 and set(final.values()) <= spare_ids
    moves = [c.params["InstanceId"] for c in aws.calls
             if c.action == "AssociateAddress" and c.status == 200 and c.params.get("InstanceId") in spare_ids]
    assert sorted(moves) == sorted(final.values()), moves  # each replacement got exactly one move
    for n in holders:
        assert os.path.exists(n.path("drain"))
    idle = spare_ids - set(final.values())
    assert len(idle) == 1 and w.tags(idle.pop())["provision:phase"] == "ready"


def test_lost_answers_and_throttling_never_give_an_instance_two_addresses(aws, world_factory):
    """AssociateAddress applied but answered 500 (boto3 retries: AlreadyAssociated to ourselves),
    plus throttled reads: each agent still ends with exactly one address, all distinct."""
    w = world_factory(4, HOSTS8[:4])
    ids = w.group_instances()
    aws.faults.lose_answer(1, action="AssociateAddress", n=2)
    aws.faults.throttle_rate(0.2, seed=3, actions=["DescribeAddresses", "DescribeInstances", "CreateTags"])
    for iid in ids:
        w.nodes[iid].stub.state = "ok"
        w.start(w.nodes[iid])
    wait_for(lambda: all(serving(w, i) for i in ids), 60, what="4 agents serving")
    aws.faults.clear()
    assert sorted(h for h in w.holders().values()) == sorted(ids)
    assert any(c.fault == "lose" for c in aws.calls)
    for iid in ids:
        held = w.ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [iid]}])["Addresses"]
        assert len(held) == 1, (iid, held)
