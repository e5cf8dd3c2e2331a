"""Fixtures shared by the export tests against moto's S3 server (S3 files, Glue catalog)."""

from __future__ import annotations

import uuid

import pytest

from tests.pipelines.test_export import seeded_store


@pytest.fixture
def export_store(tmp_path) -> str:
    """The SQLite store of tests/pipelines/test_export.py (two programs, three tables)."""
    return seeded_store(tmp_path)


@pytest.fixture
def s3_bucket(moto_endpoint):
    """A boto3 S3 client on the moto server and a fresh bucket of the test's own."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"ceap-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket
