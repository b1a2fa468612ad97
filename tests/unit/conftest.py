"""Shared fixtures of the unit tests."""

import boto3
import pytest


@pytest.fixture
def moto_s3(monkeypatch):
    """An in-process moto S3 client (no local stack): the stack's endpoint variables are set aside."""
    from moto import mock_aws

    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")
