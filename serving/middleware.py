"""The request layer in front of the API: API keys (constant-time compare), the body size
cap, and latency/status metrics per route template (never per customer id)."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from prometheus_client import (
    Counter,
    Histogram,
)

LATENCY = Histogram(
    "ceap_http_request_duration_seconds", "Request latency by route", ["method", "route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)  # fmt: skip


REQUESTS = Counter(
    "ceap_http_requests", "Requests by route and status", ["method", "route", "status"]
)


SIGNED = "/v1/webhooks/"
"""Provider webhooks authenticate by their signature (SNS, X-Hub-Signature-256), not a key."""
FEEDBACK_PATHS = ("/v1/webhooks/", "/v1/deliveries")
FEEDBACK_MAX_BODY = 256 * 1024
"""An SNS notification may be 256 KiB; a batch of deliveries, 500 events."""


class Observe:
    """ASGI middleware: latency and status per route template (never per customer id) and
    the body size cap, also for chunked bodies with no Content-Length."""

    def __init__(self, app: Any, max_body: int, keys: list[bytes]) -> None:
        self.app, self.max_body, self.keys = app, max_body, keys

    def authenticated(self, headers: dict[bytes, bytes]) -> bool:
        """X-API-Key or Bearer against every key, each compare constant-time."""
        given = [headers.get(b"x-api-key", b"")]
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer":
            given.append(token.strip())
        ok = False
        for value in filter(None, given):
            for key in self.keys:
                ok |= hmac.compare_digest(value, key)
        return ok

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        response = None
        path = scope["path"]
        limit = FEEDBACK_MAX_BODY if path.startswith(FEEDBACK_PATHS) else self.max_body
        if (
            path.startswith("/v1/")
            and not path.startswith(SIGNED)
            and not self.authenticated(headers)
        ):
            response = JSONResponse({"detail": "missing or invalid API key"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        elif not length.isdigit() or int(length) > limit:
            response = JSONResponse({"detail": "request body too large"}, status_code=413)
        if response is not None:
            REQUESTS.labels(scope["method"], "unmatched", str(response.status_code)).inc()
            return await response(scope, receive, send)
        seen = [0]

        async def counted() -> dict:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                raise HTTPException(413, "request body too large")
            return message

        async def observed(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, counted, observed)
        finally:
            route = scope.get("route")
            name = route.path if route is not None else "unmatched"
            LATENCY.labels(scope["method"], name).observe(time.perf_counter() - start)
            REQUESTS.labels(scope["method"], name, str(status[0])).inc()


def configured_keys(given: list[str] | None) -> list[bytes]:
    keys = given if given is not None else os.environ.get("CEAP_API_KEYS", "").split(",")
    return [k.strip().encode() for k in keys if k.strip()]
