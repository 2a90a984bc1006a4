"""Fixtures for the AWS emulator (moto server + our recording / fault layer).

Usage (any test module; conftest.py loads this plugin):
    def test_x(aws):                       # moto state, faults and calls are fresh for each test
        ec2 = boto3.client("ec2")          # AWS_ENDPOINT_URL etc. already point at the emulator
        aws.faults.throttle("DescribeInstances", 2)   # next 2 calls answer RequestLimitExceeded
        aws.faults.fail_mutating(3)        # 3rd mutating call from now: 500, not applied
        aws.faults.lose_answer(1)          # next mutating call: applied by moto, answered 500
        aws.faults.throttle_rate(0.2, seed=1); aws.faults.latency(0.05)
        ...
        assert ("ec2", "RunInstances") in [(c.service, c.action) for c in aws.calls]
        aws.lifecycle_actions              # CompleteLifecycleAction / heartbeat params seen
`aws_emulator` (session scope) is the running server; `aws.url` is its endpoint. boto3 retries
throttles by itself: pass Config(retries={"total_max_attempts": 1}) to see the first error.
"""
from __future__ import annotations

import pytest

from provisioner.emulators.aws import AwsEmulator

AWS_REGION = "us-east-1"


@pytest.fixture(scope="session")
def aws_emulator():
    emu = AwsEmulator(port=0).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def aws(aws_emulator, monkeypatch):
    aws_emulator.reset()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_emulator.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    yield aws_emulator
    aws_emulator.faults.clear()
