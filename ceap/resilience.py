"""How CEAP behaves when something it calls keeps failing: one circuit breaker and one backoff
policy, used by the scoring stage (a model endpoint), the Serving API's eligibility checks
and the store and connector clients that retry."""

from __future__ import annotations

import random
import threading
import time


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures → half-open after ``cooldown``
    seconds (one trial call; success closes, failure reopens). ``cooldown=None``: once open
    it stays open (a batch run stops calling a dead model for the rest of the run)."""

    def __init__(self, failures: int = 5, cooldown: float | None = 10.0) -> None:
        self.failures, self.cooldown = failures, cooldown
        self._count, self._opened_at, self._trial = 0, None, False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self.cooldown is None or time.monotonic() - self._opened_at < self.cooldown:
            return "open"
        return "half_open"

    @property
    def consecutive_failures(self) -> int:
        return self._count

    def allow(self) -> bool:
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._trial:
                self._trial = True
                return True
            return False

    def record(self, ok: bool) -> bool:
        """Records a call's outcome; True when this failure opened the circuit."""
        with self._lock:
            self._trial = False
            if ok:
                self._count, self._opened_at = 0, None
                return False
            self._count += 1
            was_open = self._opened_at is not None
            if was_open or self._count >= self.failures:
                self._opened_at = time.monotonic()
            return not was_open and self._opened_at is not None


def backoff_delay(attempt: int, base: float = 0.05, cap: float = 2.0, jitter: bool = True) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): exponential from ``base``, capped
    at ``cap``, with jitter (a random 50-100 %) so retrying clients do not move in step."""
    delay = min(cap, base * 2**attempt)
    return delay * random.uniform(0.5, 1.0) if jitter else delay
