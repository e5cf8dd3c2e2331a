"""``event_log``: the embedded streaming source, an append-only log of JSON lines.

The log is a directory of segment files ``00000000.jsonl``, ``00000001.jsonl`` ...; writers
append whole lines under an exclusive lock (``run.py emit``) and roll to a new segment past
``segment_bytes``. A position is ``segment * 2**40 + byte offset``, one integer that orders
every line of the log; it is each event's identity in the outcome ledger.

The reader is an unbounded splittable DoFn: it claims the last byte of each micro-batch it
emits, so its residual starts exactly at the next line, and it polls when it has caught
up. Where it starts is decided by the caller (the last fully accounted position).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import WalltimeWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration
from pydantic import BaseModel, ConfigDict, Field

from ceap import stopping
from ceap.file_fields import file_field
from ceap.plugins import connectors
from connectors.base import Connector
from connectors.events import lines_to_batch

SEGMENT = 1 << 40
BUNDLE_SECONDS = 30.0
"""How long the reader keeps one bundle open, polling, before handing back to the runner:
restarting a bundle of the fused stage pauses it ~150 ms (measured: 1 s bundles put p99 at
~140 ms, 10 s at ~85 ms). Exactly-once rests on the outcome ledger, not on bundle ends."""
END = 1 << 62


def position(segment: int, offset: int) -> int:
    return segment * SEGMENT + offset


class EventLog:
    """The log directory: append events, read complete lines from a position."""

    def __init__(self, path: str | Path, segment_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self.segment_bytes = segment_bytes

    def segments(self) -> list[int]:
        if not self.path.is_dir():
            return []
        return sorted(int(p.stem) for p in self.path.glob("*.jsonl") if p.stem.isdigit())

    def segment_path(self, segment: int) -> Path:
        return self.path / f"{segment:08d}.jsonl"

    def append(self, events: Iterable[dict[str, Any]]) -> list[int]:
        """Appends events atomically (one locked write); returns their positions."""
        lines = [json.dumps(e, separators=(",", ":"), default=str).encode() + b"\n" for e in events]
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            segments = self.segments()
            segment = segments[-1] if segments else 0
            target = self.segment_path(segment)
            if target.exists() and target.stat().st_size >= self.segment_bytes:
                segment += 1
                target = self.segment_path(segment)
            with open(target, "ab") as out:
                start = out.tell()
                out.write(b"".join(lines))
                out.flush()
                os.fsync(out.fileno())
        positions, offset = [], start
        for line in lines:
            positions.append(position(segment, offset))
            offset += len(line)
        return positions

    def read(self, start: int, max_lines: int) -> tuple[list[tuple[int, bytes]], int]:
        """Complete lines from ``start`` (at most ``max_lines``) and the position after them;
        moves on to the next segment once a segment is finished and a later one exists."""
        segment, offset = divmod(start, SEGMENT)
        segments = self.segments()
        while True:
            path = self.segment_path(segment)
            lines: list[tuple[int, bytes]] = []
            if path.exists():
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    pos = offset
                    for line in handle:
                        if not line.endswith(b"\n"):
                            break  # a line still being written
                        lines.append((position(segment, pos), line))
                        pos += len(line)
                        if len(lines) >= max_lines:
                            break
                    offset = pos
            if lines:
                return lines, position(segment, offset)
            later = [s for s in segments if s > segment]
            if not later:
                return [], position(segment, offset)
            segment, offset = later[0], 0


class TailLog(beam.DoFn, RestrictionProvider):
    """Unbounded reader of an event log: Impulse -> micro-batches of events.

    Args:
      path: the log directory.
      start: the position to read from (restart: the first unaccounted event).
      poll_seconds: how long to wait when caught up.
      max_batch: most events per micro-batch.
      on_batch: called with (first position, end position, events) before a batch is
        emitted, so the run can record what it read (restart accounting).
    """

    def __init__(
        self, path: str, start: int, poll_seconds: float, max_batch: int, on_batch=None
    ) -> None:
        self._path = path
        self._poll = poll_seconds
        self._max = max_batch
        self._on_batch = on_batch
        self._start = start

    def setup(self) -> None:
        self._log = EventLog(self._path)

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: Any,
        tracker=beam.DoFn.RestrictionParam(),
        watermark=beam.DoFn.WatermarkEstimatorParam(WalltimeWatermarkEstimator.default_provider()),
    ):
        # Poll inside the bundle for a while: in the fused streaming stage a bundle that
        # ends and restarts costs more than the wait itself.
        deadline = time.monotonic() + BUNDLE_SECONDS
        start = tracker.current_restriction().start
        while time.monotonic() < deadline:
            if stopping.requested():
                tracker.try_claim(END - 1)  # the rest of the log is not read: the stream ends
                return
            lines, end = self._log.read(start, self._max)
            if not lines:
                if end > start and not tracker.try_claim(end - 1):  # moved to a new segment
                    return
                start = end
                time.sleep(self._poll)
                continue
            if not tracker.try_claim(end - 1):
                return
            if self._on_batch is not None:
                self._on_batch(lines[0][0], end, len(lines))
            yield lines_to_batch(lines, self._path)
            start = end
        tracker.defer_remainder(Duration.of(0))

    # -- the restriction: positions from the start to the end of time ----------------------
    def initial_restriction(self, element: Any) -> OffsetRange:
        return OffsetRange(self._start, END)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: Any, restriction: OffsetRange) -> int:
        return 1

    def truncate(self, element: Any, restriction: OffsetRange) -> None:
        return None  # on drain nothing more is read


class EventLogOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = file_field(min_length=1)
    """The log directory (created by the first ``emit``)."""
    poll_seconds: float = Field(default=0.01, gt=0, le=10)
    max_batch: int = Field(default=5000, ge=1)


@connectors.register("event_log")
class EventLogConnector(Connector):
    Options = EventLogOptions

    def log(self) -> EventLog:
        return EventLog(self.options.path)

    def read_events(self, start: int = 0, on_batch=None) -> beam.PTransform:
        o = self.options
        fn = TailLog(o.path, start, o.poll_seconds, o.max_batch, on_batch)
        return _ReadLog(fn)


class _ReadLog(beam.PTransform):
    def __init__(self, fn: TailLog) -> None:
        super().__init__()
        self._fn = fn

    def expand(self, pbegin):
        fn = self._fn
        return pbegin | "Impulse" >> beam.Impulse() | "Tail" >> beam.ParDo(fn)
