"""The Kinesis connector's side of the AWS API: its options, its boto3 client, and which
errors are worth retrying (throttling, service hiccups, a dropped connection) and which
are not (a missing stream, no permission: the run fails with the reason)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ENDPOINT_ENV = "CEAP_AWS_ENDPOINT_URL"
_RETRYABLE = {
    "ProvisionedThroughputExceededException", "LimitExceededException",
    "KMSThrottlingException", "InternalFailure", "ServiceUnavailable", "ThrottlingException",
}  # fmt: skip


class KinesisOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_.-]+$")
    """The stream's name."""
    region: str | None = None
    """AWS region; else the AWS default (``AWS_REGION`` / profile)."""
    endpoint_url: str | None = None
    """Kinesis endpoint override (moto, LocalStack); also ``$CEAP_AWS_ENDPOINT_URL``."""
    iterator: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    """Where a shard with no checkpoint starts: its oldest record, or records put from now."""
    poll_seconds: float = Field(default=1.0, gt=0, le=300)
    """How long a caught-up shard waits before asking again."""
    max_records: int = Field(default=10_000, ge=1, le=10_000)
    """Most records per GetRecords call (one micro-batch); 10,000 is the Kinesis maximum."""


def kinesis_client(options: KinesisOptions) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = options.endpoint_url or os.environ.get(ENDPOINT_ENV) or None
    config = Config(retries={"mode": "standard", "max_attempts": 3})
    return boto3.session.Session().client(
        "kinesis", region_name=options.region, endpoint_url=endpoint, config=config
    )


def error_code(exc: Exception) -> str | None:
    """The AWS error code of a ``ClientError`` (``ExpiredIteratorException`` ...), else None."""
    from botocore.exceptions import ClientError

    return exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None


def transient(exc: Exception) -> bool:
    """Whether a failed call is worth retrying after a backoff."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return error_code(exc) in _RETRYABLE or isinstance(exc, BotoConnectionError | HTTPClientError)
