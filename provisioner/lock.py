"""The stack's two-level lock (CONTRACT §4).

1. A local lock: `fcntl.flock` on `{state_dir}/{stack}.lock` (two runs on one machine).
2. A lease that two machines see: an item in the DynamoDB table `P-lock` in `home_region`, written
   with a condition (absent or expired), naming holder and expiry, renewed by a thread while the run
   lasts. A second run exits 1 at once, naming the holder.

The same table keeps one more item: the regions the stack has used, so a run from another machine
(or after the state file was deleted) finds resources in a region no longer in the config.
"""
from __future__ import annotations

import fcntl
import getpass
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .config import Config
from .desired import lock_table, tags
from .errors import LockHeldError
from .aws.clients import Clients
from .aws.retry import call, error_code

PERMISSIONS = (
    "dynamodb:CreateTable", "dynamodb:TagResource", "dynamodb:DescribeTable", "dynamodb:PutItem",
    "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:DeleteTable",
)
LEASE_KEY = "lease"
REGIONS_KEY = "regions"


def holder_name() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


class StackLock:
    def __init__(self, clients: Clients, config: Config, state_dir: Path, *, ttl: float = 60.0,
                 holder: str | None = None):
        self.clients = clients
        self.config = config
        self.state_dir = Path(state_dir)
        self.ttl = ttl
        self.holder = holder or holder_name()
        self.token = uuid.uuid4().hex
        self.table = lock_table(config)
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.drop_table = False  # set once the stack is destroyed: release() removes the table too
        self.lost: str | None = None

    @property
    def ddb(self):
        return self.clients.client("dynamodb", self.config.home_region)

    # -- local
    def _lock_local(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.state_dir / f"{self.config.stack}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 200).decode(errors="replace").strip() or "another run"
            os.close(fd)
            raise LockHeldError(f"stack '{self.config.stack}' is locked by {other} (local lock {path})",
                                hint="wait for that run to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, self.holder.encode())
        self._fd = fd

    def _unlock_local(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    # -- DynamoDB
    def ensure_table(self) -> None:
        try:
            call(self.ddb, "create_table", TableName=self.table, BillingMode="PAY_PER_REQUEST",
                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                 Tags=[{"Key": k, "Value": v} for k, v in tags(self.config, name=self.table).items()])
        except Exception as e:  # noqa: BLE001
            if error_code(e) != "ResourceInUseException":
                raise
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            t = call(self.ddb, "describe_table", TableName=self.table, after_create=True)["Table"]
            if t.get("TableStatus") == "ACTIVE":
                return
            time.sleep(1)

    def _put_lease(self, *, renew: bool) -> None:
        now = time.time()
        item = {"pk": {"S": LEASE_KEY}, "holder": {"S": self.holder}, "token": {"S": self.token},
                "expires": {"N": f"{now + self.ttl:.3f}"}}
        if renew:
            cond = dict(ConditionExpression="#t = :me", ExpressionAttributeNames={"#t": "token"},
                        ExpressionAttributeValues={":me": {"S": self.token}})
        else:
            cond = dict(ConditionExpression="attribute_not_exists(pk) OR #e < :now OR #t = :me",
                        ExpressionAttributeNames={"#e": "expires", "#t": "token"},
                        ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}, ":me": {"S": self.token}})
        call(self.ddb, "put_item", TableName=self.table, Item=item, **cond)

    def _acquire_lease(self) -> None:
        for _ in range(2):
            try:
                self._put_lease(renew=False)
                return
            except Exception as e:  # noqa: BLE001
                code = error_code(e)
                if code == "ResourceNotFoundException":
                    self.ensure_table()
                    continue
                if code == "ConditionalCheckFailedException":
                    got = call(self.ddb, "get_item", TableName=self.table, Key={"pk": {"S": LEASE_KEY}},
                               ConsistentRead=True).get("Item", {})
                    who = got.get("holder", {}).get("S", "another run")
                    exp = float(got.get("expires", {}).get("N", "0") or 0)
                    until = time.strftime("%H:%M:%S UTC", time.gmtime(exp)) if exp else "?"
                    raise LockHeldError(
                        f"stack '{self.config.stack}' is locked by {who} (lease in DynamoDB table "
                        f"{self.table}, {self.config.home_region}, until {until})",
                        hint="wait for that run to finish; an abandoned lease expires by itself") from None
                raise
        raise LockHeldError(f"cannot create the lock table {self.table} in {self.config.home_region}")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._put_lease(renew=True)
            except Exception as e:  # noqa: BLE001
                if error_code(e) == "ConditionalCheckFailedException":
                    self.lost = "the lease was taken over by another run"
                    return
                # transient: the next beat tries again; the lease lasts ttl

    def acquire(self) -> "StackLock":
        self._lock_local()
        try:
            self._acquire_lease()
        except BaseException:
            self._unlock_local()
            raise
        self._thread = threading.Thread(target=self._renew_loop, name="lock-renew", daemon=True)
        self._thread.start()
        return self

    def release(self, *, drop_table: bool | None = None) -> None:
        drop_table = self.drop_table if drop_table is None else drop_table
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            self._release_remote(drop_table)
        except Exception:  # noqa: BLE001 - never mask the run's own outcome; the lease expires by itself
            pass
        finally:
            self._unlock_local()

    def _release_remote(self, drop_table: bool) -> None:
        if True:
            if drop_table:
                try:
                    call(self.ddb, "delete_table", TableName=self.table)
                except Exception as e:  # noqa: BLE001
                    if error_code(e) != "ResourceNotFoundException":
                        raise
            else:
                try:
                    call(self.ddb, "delete_item", TableName=self.table, Key={"pk": {"S": LEASE_KEY}},
                         ConditionExpression="#t = :me", ExpressionAttributeNames={"#t": "token"},
                         ExpressionAttributeValues={":me": {"S": self.token}})
                except Exception as e:  # noqa: BLE001
                    if error_code(e) not in ("ConditionalCheckFailedException", "ResourceNotFoundException"):
                        raise

    def __enter__(self) -> "StackLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- the regions record
    def record_regions(self, regions: set[str]) -> None:
        call(self.ddb, "update_item", TableName=self.table, Key={"pk": {"S": REGIONS_KEY}},
             UpdateExpression="ADD #r :r", ExpressionAttributeNames={"#r": "regions"},
             ExpressionAttributeValues={":r": {"SS": sorted(regions)}})

    def forget_regions(self, regions: set[str]) -> None:
        if regions:
            call(self.ddb, "update_item", TableName=self.table, Key={"pk": {"S": REGIONS_KEY}},
                 UpdateExpression="DELETE #r :r", ExpressionAttributeNames={"#r": "regions"},
                 ExpressionAttributeValues={":r": {"SS": sorted(regions)}})


def known_regions(clients: Clients, config: Config) -> set[str]:
    """Regions the stack has used, from the lock table (empty when it does not exist)."""
    try:
        got = call(clients.client("dynamodb", config.home_region), "get_item", TableName=lock_table(config),
                   Key={"pk": {"S": REGIONS_KEY}}, ConsistentRead=True)
    except Exception as e:  # noqa: BLE001
        if error_code(e) == "ResourceNotFoundException":
            return set()
        raise
    return set(got.get("Item", {}).get("regions", {}).get("SS", []))
