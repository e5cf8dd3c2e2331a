"""Provider plumbing shared by adapters: AWS clients and JSON-over-HTTP calls, with one
classification of failures (retryable or not) so no adapter re-implements it."""

from __future__ import annotations

import os
from typing import Any

import httpx

from channels.base import Result


def aws_client(service: str, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client; ``endpoint_url`` (or ``$AWS_ENDPOINT_URL``) points at moto or LocalStack."""
    import boto3

    return boto3.client(
        service,
        region_name=region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
    )


def aws_result(key: str, call: Any, **kwargs: Any) -> Result:
    """Calls ``call(**kwargs)``; throttling and server errors are retryable, the rest not."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        retryable = status >= 500 or "Throttl" in code
        return Result(key, False, error=f"{code}: {exc}", retryable=retryable)
    except BotoCoreError as exc:
        return Result(key, False, error=f"{type(exc).__name__}: {exc}")
    return Result(key, True, provider_id=response.get("MessageId"))


class HttpSender:
    """One pooled HTTP client per adapter (connections reused across batches)."""

    def __init__(self, timeout: float = 10.0, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def post(self, key: str, url: str, payload: dict[str, Any]) -> Result:
        """POSTs ``payload`` with ``Idempotency-Key: key``; 429 and 5xx are retryable."""
        try:
            response = self._client.post(url, json=payload, headers={"Idempotency-Key": key})
        except httpx.HTTPError as exc:
            return Result(key, False, error=f"{type(exc).__name__}: {exc}")
        if response.status_code >= 400:
            retryable = response.status_code == 429 or response.status_code >= 500
            return Result(key, False, error=f"HTTP {response.status_code}: {response.text[:200]}",
                          retryable=retryable)  # fmt: skip
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        ident = body.get("name") or (body.get("messages") or [{}])[0].get("id")
        return Result(key, True, provider_id=ident)

    def close(self) -> None:
        self._client.close()
