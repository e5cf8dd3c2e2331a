"""What every stage of one program's run may need to know, picklable for Beam workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ceap.errors import ConfigError
from ceap.mode import BATCH, STREAMING, Mode


@dataclass(frozen=True)
class RunContext:
    program: str
    now: datetime
    """The run's reference time (``--now``; wall clock by default), tz-aware UTC."""
    store: str = "sqlite"
    """Store spec: ``sqlite`` (``$CEAP_HOME/ceap.db``), ``sqlite:///path.db``, ``dynamodb://prefix``."""
    run_id: str = ""
    config_dir: str = "configs"
    deliver_delay: timedelta = timedelta(0)
    """The program's cooling period: deliver_after = event_time + this."""
    mode: Mode = BATCH
    """Batch or streaming: what each stage does differently (``ceap/mode.py``)."""
    extras: dict = field(default_factory=dict)
    live_clock: bool = False
    """Streaming without ``--now``: each micro-batch is processed at the time it arrives
    (``current()``), not at the stream's start: after a month of uptime, a candidate made
    from the latest event must not be created already past its TTL."""
    streaming: bool = False
    """Shorthand for ``mode=STREAMING`` (set from the mode otherwise); stages ask ``mode``."""

    def __post_init__(self) -> None:
        if self.streaming and self.mode == BATCH:
            object.__setattr__(self, "mode", STREAMING)
        object.__setattr__(self, "streaming", self.mode == STREAMING)

    @staticmethod
    def utcnow() -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def current(self) -> datetime:
        """The time a stage processes its batch at: the run's reference time, or, on a live
        clock, the wall clock now (created_at, expires_at, filter windows, ``now``)."""
        return RunContext.utcnow() if self.live_clock else self.now


def parse_now(text: str | None, flag: str = "--now") -> datetime | None:
    """A command line's reference time: ISO-8601 (``2026-11-25``, ``2026-11-25T10:00:00Z``;
    naive taken as UTC), as UTC; None when not given. A bad value is a ConfigError naming
    the flag, reported without a traceback."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r} is not an ISO-8601 time (e.g. 2026-11-25 or 2026-11-25T10:00:00Z)"
        ) from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
