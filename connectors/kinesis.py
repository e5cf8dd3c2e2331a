"""``kinesis``: an Amazon Kinesis Data Stream as a streaming source, read natively with boto3.

Not Beam's ``apache_beam.io.kinesis`` (a cross-language Java transform: expansion service,
JVM): the graph stays pure Python, fused on the in-process FnApiRunner like ``event_log``,
and unchanged on Dataflow. ``read_events()`` is ``Impulse -> ListShards -> ReadShard``:

- ``ListShards`` (a plain DoFn, once per start) lists the shards, open and closed, skips
  those read to their end, and makes a child shard wait for its listed, unfinished parents
  (``ParentShardId`` / ``AdjacentParentShardId``): a partition key's events stay in order.
- ``ReadShard`` (an unbounded splittable DoFn, one element per shard) reads with
  ``GetShardIterator`` / ``GetRecords``. Its restriction is a range of *sequence numbers*
  (up to 129 digits: Python ints); it claims each micro-batch's last one, so a checkpoint
  split resumes ``AFTER_SEQUENCE_NUMBER`` exactly. At most 5 reads a second per shard (the
  Kinesis limit), a poll every ``poll_seconds`` when caught up, a backoff (up to 30 s) on
  ``ProvisionedThroughputExceeded`` or a transient error; a closed shard ends when
  ``GetRecords`` returns no next iterator.

A record's Data is one JSON event (else a dead letter with its text, never a crash); its
ledger position is a stable 63-bit hash of (shard id, sequence number), ``stable_position``.

Checkpoints (``stores/checkpoints.py``): once a micro-batch's ``yield`` returns (the fused
stage has then processed it and recorded its outcomes) the shard's last sequence number is
saved as ``kinesis:<stream>:<shard>``; a closed shard read to its end also gets ``...:end``.
A restart resumes each shard after its checkpoint; one without starts at ``iterator``
(a child of a shard already read: at its TRIM_HORIZON). A crash between a batch and its
checkpoint replays the batch, harmlessly: positions are stable, sinks idempotent. Positions
are hashes, not ordered offsets, so ``on_batch`` (``stream_batches`` ranges) is not called.

Limits: shards created by a reshard *while the job runs* are read from the next start (a
watcher SDF upstream of the reader would not fuse); KPL-aggregated records are not
de-aggregated (dead letters); with ``LATEST`` a shard that never had a record restarts at
LATEST. Credentials: the usual AWS chain; ``endpoint_url`` / ``$CEAP_AWS_ENDPOINT_URL``
point the client at moto or LocalStack.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import WalltimeWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration
from pydantic import BaseModel, ConfigDict, Field

from ceap import stopping
from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.base import Connector
from connectors.events import lines_to_batch, stable_position

log = logging.getLogger(__name__)

ENDPOINT_ENV = "CEAP_AWS_ENDPOINT_URL"
END = 10**130
"""Past any sequence number (Kinesis: at most 129 decimal digits)."""
MIN_READ_SECONDS = 0.2
"""Kinesis serves 5 GetRecords calls per second per shard."""
SLICE_SECONDS = 1.0
"""How long one shard reads a backlog before yielding the bundle to the other shards
(the FnApiRunner runs the shards of one stage one after the other)."""
MAX_BACKOFF_SECONDS = 30.0
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


@dataclass(frozen=True)
class Shard:
    """One shard to read: the ``ReadShard`` element."""

    stream: str
    shard_id: str
    start: int = 0
    """The first sequence number not read yet; 0: start at ``iterator``."""
    iterator: str = "TRIM_HORIZON"
    parents: tuple[str, ...] = ()
    """Listed parent shards to finish first."""
    ending: int | None = None
    """A closed shard's last sequence number (at listing)."""

    @property
    def key(self) -> str:
        return checkpoint_key(self.stream, self.shard_id)


def checkpoint_key(stream: str, shard_id: str) -> str:
    return f"kinesis:{stream}:{shard_id}"


def records_to_batch(shard: Shard, records: list[dict[str, Any]]) -> pa.RecordBatch:
    """GetRecords' records as one micro-batch of events (``lines_to_batch``: non-JSON data
    keeps its text and an error, so it becomes a dead letter)."""
    lines = [(stable_position(shard.shard_id, r["SequenceNumber"]), r["Data"]) for r in records]
    return lines_to_batch(lines, shard.key)


def kinesis_client(options: KinesisOptions) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = options.endpoint_url or os.environ.get(ENDPOINT_ENV) or None
    config = Config(retries={"mode": "standard", "max_attempts": 3})
    return boto3.session.Session().client(
        "kinesis", region_name=options.region, endpoint_url=endpoint, config=config
    )


def _error_code(exc: Exception) -> str | None:
    from botocore.exceptions import ClientError

    return exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None


def _transient(exc: Exception) -> bool:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return _error_code(exc) in _RETRYABLE or isinstance(exc, BotoConnectionError | HTTPClientError)


class _Checkpointing:
    """Where the reader DoFns find the program's checkpoints (none without a run context)."""

    def __init__(self, options: KinesisOptions, program: str | None, store: str | None) -> None:
        super().__init__()
        self._options = options
        self._program = program
        self._store = store

    def setup(self) -> None:
        self._client = kinesis_client(self._options)
        self._checkpoints = None
        if self._program is not None:
            from stores.checkpoints import Checkpoints

            self._checkpoints = Checkpoints(self._store)

    def teardown(self) -> None:
        if getattr(self, "_checkpoints", None) is not None:
            self._checkpoints.close()
            self._checkpoints = None


class ListShards(_Checkpointing, beam.DoFn):
    """Impulse -> one ``Shard`` per shard still to read, with where to start it."""

    def process(self, _: Any):
        stream = self._options.stream
        shards = self._list()
        ids = {s["ShardId"] for s in shards}
        saved = (
            self._checkpoints.checkpoints(self._program, checkpoint_key(stream, ""))
            if self._checkpoints is not None
            else {}
        )
        finished = {i for i in ids if checkpoint_key(stream, i) + ":end" in saved}
        for s in shards:
            shard_id = s["ShardId"]
            if shard_id in finished:
                continue
            parents = [s.get("ParentShardId"), s.get("AdjacentParentShardId")]
            parents = [p for p in parents if p]
            last = saved.get(checkpoint_key(stream, shard_id))
            # A child of a shard this program read continues its records: from the start.
            read_parent = any(checkpoint_key(stream, p) in saved for p in parents)
            ending = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
            yield Shard(
                stream=stream,
                shard_id=shard_id,
                start=int(last) + 1 if last else 0,
                iterator="TRIM_HORIZON" if read_parent else self._options.iterator,
                parents=tuple(p for p in parents if p in ids and p not in finished),
                ending=int(ending) if ending else None,
            )

    def _list(self) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        shards: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamName": self._options.stream}
        try:
            while True:
                page = self._client.list_shards(**request)
                shards += page.get("Shards", [])
                if not page.get("NextToken"):
                    break
                request = {"NextToken": page["NextToken"]}  # not with StreamName
        except (BotoCoreError, ClientError) as exc:
            raise ConnectorError(
                f"kinesis: cannot list the shards of stream {self._options.stream!r}: {exc}"
            ) from exc
        if not shards:
            raise ConnectorError(f"kinesis: stream {self._options.stream!r} has no shards")
        return sorted(shards, key=lambda s: s["ShardId"])


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


class ReadShard(_Checkpointing, beam.DoFn, RestrictionProvider):
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
                if not _transient(exc):
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
            if _error_code(exc) != "ExpiredIteratorException":
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


@connectors.register("kinesis")
class KinesisConnector(Connector):
    Options = KinesisOptions

    def read_events(self, start: int = 0, on_batch=None, context=None) -> beam.PTransform:
        """PBegin -> unbounded PCollection[RecordBatch] of the stream's events.

        Args:
          start: ignored (positions are hashes; each shard resumes from its checkpoint).
          on_batch: not called (see the module docstring); the streaming pipeline's
            ``RecordBatches`` carries the run context (``._ctx``) used when ``context`` is None.
          context: the ``RunContext`` whose program and store keep the checkpoints; with
            none, every start reads from ``iterator``.
        """
        context = context if context is not None else getattr(on_batch, "_ctx", None)
        program = getattr(context, "program", None)
        store = getattr(context, "store", None)
        if program is None:
            log.warning(
                "kinesis: no run context: shard checkpoints are off, a restart reads from %s",
                self.options.iterator,
            )
        return _ReadKinesis(self.options, program, store)


class _ReadKinesis(beam.PTransform):
    def __init__(self, options: KinesisOptions, program: str | None, store: str | None) -> None:
        super().__init__()
        self._options, self._program, self._store = options, program, store

    def expand(self, pbegin):
        args = (self._options, self._program, self._store)
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "ListShards" >> beam.ParDo(ListShards(*args))
            | "ReadShard" >> beam.ParDo(ReadShard(*args))
        )
