"""Whether a channel step is failing: consecutive failed sends per (program, step), across
dispatch rounds, raised as a ``channel_failing`` alert (ceap/alerts.py) once they reach
``CEAP_ALERT_CHANNEL_FAILURES`` (default 5) with no success between them.

Only provider sends count (a row with no address or on the suppression list is not the
channel failing); a retryable failure counts like a permanent one (a provider down is what
an operator must hear about). A success resets the count; the alert itself is raised once
per (program, step) per process."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ceap import alerts
from ceap.errors import ConfigError

FAILURES_ENV = "CEAP_ALERT_CHANNEL_FAILURES"


def threshold_from_env() -> int:
    """``$CEAP_ALERT_CHANNEL_FAILURES`` (default 5, also when empty): a whole number of at
    least 1, or a ConfigError before the dispatcher leases anything (not a crash at the
    first send)."""
    text = os.environ.get(FAILURES_ENV, "").strip() or "5"
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise ConfigError(
            f"{FAILURES_ENV}={text!r}: expected a whole number of consecutive failed sends, "
            "at least 1 (default 5)"
        )
    return int(text)


class ChannelHealth:
    def __init__(self, threshold: int | None = None) -> None:
        if threshold is not None and threshold < 1:
            raise ValueError(f"threshold {threshold}: at least one failed send")
        self.threshold = threshold or threshold_from_env()
        self._failing: dict[tuple[str, str], int] = {}
        self._last: dict[tuple[str, str], str] = {}

    def record(self, route, results: Iterable) -> None:
        """Counts one chunk's send ``results`` (``channels.base.Result``: ``ok``, ``error``)
        for ``route``, the dispatcher's step (``.program.program``, ``.config.step`` and
        ``.config.type``)."""
        program, step, channel = route.program.program, route.config.step, route.config.type
        key = (program, step)
        for result in results:
            if result.ok:
                self._failing[key] = 0
                continue
            self._failing[key] = self._failing.get(key, 0) + 1
            self._last[key] = result.error or "?"
        failures = self._failing.get(key, 0)
        if failures >= self.threshold:
            alerts.alert(
                "channel_failing", program,
                f"program {program}: channel {channel} (step {step}) failing: {failures} "
                f"consecutive sends failed, last: {self._last[key]}"[:500],
                subject=step,
                details={"channel": channel, "step": step, "consecutive_failures": failures,
                         "last_error": self._last[key][:500]},
            )  # fmt: skip
