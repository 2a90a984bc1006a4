"""The two-level lock: a local flock plus a DynamoDB lease in home_region (moto server over HTTP)."""
from __future__ import annotations

import threading
import time

import boto3
import pytest

from provisioner.app import run_apply, run_destroy, run_reconcile
from provisioner.aws.clients import Clients
from provisioner.errors import LockHeldError
from provisioner.lock import StackLock
from tests.test_engine_common import fast, mutating, options, two_region_doc, write_config  # noqa: F401


@pytest.fixture
def cfg(aws, fast, tmp_path):
    return write_config(tmp_path, two_region_doc())


@pytest.mark.parametrize("run", [run_apply, run_destroy, run_reconcile])
@pytest.mark.parametrize("same_dir", [True, False], ids=["same-state-dir", "two-state-dirs"])
def test_second_run_exits_at_once_naming_the_holder(cfg, aws, tmp_path, run, same_dir):
    held = StackLock(Clients(), cfg, tmp_path / "a", holder="alice@box-1 pid 4242").acquire()
    try:
        aws.clear_calls()
        opts, _ = options(tmp_path / ("a" if same_dir else "b"))
        t0 = time.monotonic()
        with pytest.raises(LockHeldError, match="alice@box-1 pid 4242"):
            run(cfg, opts)
        assert time.monotonic() - t0 < 5
        # nothing changed but the (refused) lease write
        assert [m for m in mutating(aws) if m != ("dynamodb", "PutItem")] == []
    finally:
        held.release()
    opts, _ = options(tmp_path / "b")
    assert run_apply(cfg, opts) == 0


def test_two_concurrent_applies_one_exits_naming_the_holder(cfg, aws, tmp_path):
    aws.faults.latency(0.03)  # so the two runs overlap
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def go(name):
        opts, _ = options(tmp_path / name)
        start.wait()
        try:
            results[name] = run_apply(cfg, opts)
        except LockHeldError as e:
            results[name] = e

    threads = [threading.Thread(target=go, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    aws.faults.clear()
    errors = [r for r in results.values() if isinstance(r, LockHeldError)]
    assert sorted(str(type(r).__name__) for r in results.values()) == ["LockHeldError", "int"]
    assert "pid" in str(errors[0]) and "locked by" in str(errors[0])
    assert [r for r in results.values() if not isinstance(r, LockHeldError)] == [0]


def test_lease_is_renewed_while_held_and_an_abandoned_one_expires(cfg, aws, tmp_path):
    a = StackLock(Clients(), cfg, tmp_path / "a", ttl=1.0, holder="runner-a").acquire()
    time.sleep(2.0)  # longer than the ttl: only renewal keeps it
    with pytest.raises(LockHeldError, match="runner-a"):
        StackLock(Clients(), cfg, tmp_path / "b", holder="runner-b").acquire()
    # runner-a dies without releasing: no more renewals
    a._stop.set()
    a._thread.join()
    a._unlock_local()
    time.sleep(1.2)
    b = StackLock(Clients(), cfg, tmp_path / "b", holder="runner-b").acquire()
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName="c3-llamacpp-dev-lock", Key={"pk": {"S": "lease"}}, ConsistentRead=True)["Item"]
    assert item["holder"]["S"] == "runner-b" and float(item["expires"]["N"]) > time.time()
    b.release()
    got = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName="c3-llamacpp-dev-lock", Key={"pk": {"S": "lease"}}, ConsistentRead=True)
    assert "Item" not in got


def test_lock_table_lives_in_home_region_tagged(cfg, aws, tmp_path):
    opts, _ = options(tmp_path / "s")
    assert run_apply(cfg, opts) == 0
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    arn = ddb.describe_table(TableName="c3-llamacpp-dev-lock")["Table"]["TableArn"]
    tags = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=arn)["Tags"]}
    assert tags["provision:stack"] == "dev" and tags["provision:slug"] == "c3-llamacpp"
    assert boto3.client("dynamodb", region_name="eu-west-1").list_tables()["TableNames"] == []
