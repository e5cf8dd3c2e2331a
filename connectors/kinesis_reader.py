"""Reading one Kinesis shard: ``ReadShard``, an unbounded splittable DoFn whose element is
a ``Shard`` and whose restriction is a range of *sequence numbers* (up to 129 digits: Python
ints). It reads with ``GetShardIterator`` / ``GetRecords`` and claims each micro-batch's last
sequence number, so a checkpoint split resumes ``AFTER_SEQUENCE_NUMBER`` exactly. At most 5
reads a second per shard (the Kinesis limit), a poll every ``poll_seconds`` when caught up, a
backoff (up to 30 s) on ``ProvisionedThroughputExceeded`` or a transient error; a closed
shard ends when ``GetRecords`` returns no next iterator.

Once a micro-batch's ``yield`` returns (the fused stage has then processed it and recorded
its outcomes) the shard's last sequence number is saved as its checkpoint; a closed shard
read to its end also gets ``...:end``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import WalltimeWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration

from ceap import stopping
from ceap.errors import ConnectorError
from connectors.events import lines_to_batch, stable_position
from connectors.kinesis_api import error_code, transient
from connectors.kinesis_shards import Checkpointing, Shard, checkpoint_key

log = logging.getLogger("connectors.kinesis")  # the connector's one logger, as before the split

END = 10**130
"""Past any sequence number (Kinesis: at most 129 decimal digits)."""
MIN_READ_SECONDS = 0.2
"""Kinesis serves 5 GetRecords calls per second per shard."""
SLICE_SECONDS = 1.0
"""How long one shard reads a backlog before yielding the bundle to the other shards
(the FnApiRunner runs the shards of one stage one after the other)."""
MAX_BACKOFF_SECONDS = 30.0


def records_to_batch(shard: Shard, records: list[dict[str, Any]]) -> pa.RecordBatch:
    """GetRecords' records as one micro-batch of events (``lines_to_batch``: non-JSON data
    keeps its text and an error, so it becomes a dead letter)."""
    lines = [(stable_position(shard.shard_id, r["SequenceNumber"]), r["Data"]) for r in records]
    return lines_to_batch(lines, shard.key)


@dataclass
class _ShardState:
    """What this worker knows of a shard between two deferrals (an optimisation: the
    restriction alone is enough to resume)."""

    iterator: str | None = None
    position: int = -1
    """The restriction start ``iterator`` reads from."""
    due: float = 0.0
    """Monotonic time before which the shard is not read again."""
    backoff: float = 0.0


class ReadShard(Checkpointing, beam.DoFn, RestrictionProvider):
    """Unbounded reader of one shard: ``Shard`` -> micro-batches of its events.

    Args:
      options: the connector's options.
      program: the program whose checkpoints this reader keeps (None: no checkpoints).
      store: the store spec whose SQLite file holds them (``RunContext.store``).
    """

    def setup(self) -> None:
        super().setup()
        self._shards: dict[str, _ShardState] = {}
        self._finished: set[str] = set()

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        shard: Shard,
        tracker=beam.DoFn.RestrictionParam(),
        watermark=beam.DoFn.WatermarkEstimatorParam(WalltimeWatermarkEstimator.default_provider()),
    ):
        state = self._shards.setdefault(shard.shard_id, _ShardState())
        if not self._wait(state) or stopping.requested():
            tracker.try_claim(END - 1)  # the rest of the shard is not read: the stream ends
            return
        if self._parents_pending(shard):
            self._defer(tracker, state, self._options.poll_seconds)
            return
        deadline = time.monotonic() + SLICE_SECONDS
        while True:
            start = tracker.current_restriction().start
            try:
                response = self._get_records(shard, state, start)
            except Exception as exc:  # noqa: BLE001 - classified: transient ones back off
                if not transient(exc):
                    raise ConnectorError(f"kinesis: reading {shard.key}: {exc}") from exc
                state.backoff = min(max(2 * state.backoff, 1.0), MAX_BACKOFF_SECONDS)
                log.warning("kinesis: %s: %s; retrying in %.0f s", shard.key, exc, state.backoff)
                self._defer(tracker, state, state.backoff)
                return
            state.backoff = 0.0
            records = response.get("Records", [])
            following = response.get("NextShardIterator")
            last_read = start - 1
            if records:
                last = records[-1]["SequenceNumber"]
                last_read = int(last)
                if not tracker.try_claim(last_read):
                    return
                state.iterator, state.position = following, last_read + 1
                yield records_to_batch(shard, records)
                # On the fused stage the batch is processed once ``yield`` returns: its
                # outcomes are recorded, so the shard may move past it.
                self._save(shard.key, last)
            else:
                state.iterator = following
            if following is None or (shard.ending is not None and last_read >= shard.ending):
                self._finish(shard, last_read)
                tracker.try_claim(END - 1)
                return
            behind = len(records) >= self._options.max_records or bool(
                response.get("MillisBehindLatest")
            )
            if not behind or time.monotonic() >= deadline or stopping.requested():
                break
            if not self._wait(state, MIN_READ_SECONDS):
                break
        self._defer(tracker, state, MIN_READ_SECONDS if behind else self._options.poll_seconds)

    # -- reading ------------------------------------------------------------------------
    def _get_records(self, shard: Shard, state: _ShardState, start: int) -> dict[str, Any]:
        if state.iterator is None or state.position != start:
            state.iterator, state.position = self._shard_iterator(shard, start), start
        try:
            response = self._client.get_records(
                ShardIterator=state.iterator, Limit=self._options.max_records
            )
        except Exception as exc:
            if error_code(exc) != "ExpiredIteratorException":
                raise
            state.iterator = self._shard_iterator(shard, start)  # iterators live 5 minutes
            response = self._client.get_records(
                ShardIterator=state.iterator, Limit=self._options.max_records
            )
        state.due = time.monotonic() + MIN_READ_SECONDS
        return response

    def _shard_iterator(self, shard: Shard, start: int) -> str:
        request: dict[str, Any] = {"StreamName": shard.stream, "ShardId": shard.shard_id}
        if start > 0:
            request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            request["StartingSequenceNumber"] = str(start - 1)
        else:
            request["ShardIteratorType"] = shard.iterator
        return self._client.get_shard_iterator(**request)["ShardIterator"]

    # -- pacing: the FnApiRunner ignores a deferral's delay, so the reader waits itself ---
    def _wait(self, state: _ShardState, at_least: float = 0.0) -> bool:
        """Sleeps until the shard is due; False when a stop is requested meanwhile."""
        until = max(state.due, time.monotonic() + at_least)
        while (left := until - time.monotonic()) > 0:
            if stopping.requested():
                return False
            time.sleep(min(left, 0.05))
        return True

    def _defer(self, tracker, state: _ShardState, seconds: float) -> None:
        seconds = max(seconds, MIN_READ_SECONDS)
        state.due = time.monotonic() + seconds
        tracker.defer_remainder(Duration.of(seconds))

    # -- checkpoints ----------------------------------------------------------------------
    def _save(self, key: str, value: str) -> None:
        if self._checkpoints is not None:
            self._checkpoints.set_checkpoint(self._program, key, value)

    def _finish(self, shard: Shard, last_read: int) -> None:
        log.info("kinesis: %s read to its end (closed shard)", shard.key)
        self._finished.add(shard.shard_id)
        self._save(shard.key + ":end", str(max(last_read, 0)))

    def _parents_pending(self, shard: Shard) -> bool:
        if not shard.parents or self._checkpoints is None:
            return False  # without checkpoints a parent elsewhere could never be seen done
        for parent in shard.parents:
            if parent in self._finished:
                continue
            key = checkpoint_key(shard.stream, parent) + ":end"
            if self._checkpoints.get_checkpoint(self._program, key) is None:
                return True
            self._finished.add(parent)
        return False

    # -- the restriction: sequence numbers from the start to the end of time ------------
    def initial_restriction(self, shard: Shard) -> OffsetRange:
        return OffsetRange(shard.start, END)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return _ShardTracker(restriction)

    def restriction_size(self, shard: Shard, restriction: OffsetRange) -> int:
        return 1

    def truncate(self, shard: Shard, restriction: OffsetRange) -> None:
        return None  # on drain nothing more is read


class _ShardTracker(OffsetRestrictionTracker):
    """Checkpoints only (fraction 0): a shard is read by one reader, in sequence order;
    splitting its sequence numbers in two would start a second reader mid-shard."""

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder > 0:
            return None
        return super().try_split(0)
