"""What the remote scorers (Bedrock, SageMaker) share: a boto3 client with timeouts and
retries from botocore's own machinery, and a token-bucket rate limit per worker."""

from __future__ import annotations

import threading
import time

from pydantic import BaseModel, ConfigDict, Field


class RemoteOptions(BaseModel):
    """Connection settings every remote scorer accepts."""

    model_config = ConfigDict(extra="forbid")
    region: str | None = None
    """AWS region (default: the environment's)."""
    endpoint_url: str | None = None
    """Override the service endpoint (VPC endpoints, local fakes)."""
    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=20)
    """Attempts per call, retried by botocore (``adaptive`` mode: backoff and throttling)."""
    rate_per_s: float | None = Field(default=None, gt=0)
    """Calls per second per worker (a token bucket); none means unlimited."""
    burst: int = Field(default=1, ge=1)


def client(service: str, options: RemoteOptions):
    """A boto3 client whose timeouts and retries come from the options."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=options.connect_timeout_s,
        read_timeout=options.read_timeout_s,
        retries={"total_max_attempts": options.max_attempts, "mode": "adaptive"},
    )
    return boto3.client(
        service, region_name=options.region, endpoint_url=options.endpoint_url, config=config
    )


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take()`` waits for one."""

    def __init__(self, rate: float | None, burst: int = 1, clock=time.monotonic, sleep=time.sleep):
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Blocks until a token is free; returns the seconds waited."""
        if self.rate is None:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            self._tokens -= 1  # may go negative: the wait below pays it back
        if wait:
            self._sleep(wait)
        return wait
