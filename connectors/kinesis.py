"""``kinesis``: an Amazon Kinesis Data Stream as a streaming source, read natively with boto3.

Not Beam's ``apache_beam.io.kinesis`` (a cross-language Java transform: expansion service,
JVM): the graph stays pure Python, fused on the in-process FnApiRunner like ``event_log``,
and unchanged on Dataflow. ``read_events()`` is ``Impulse -> ListShards -> ReadShard``:

- ``ListShards`` (``kinesis_shards.py``: a plain DoFn, once per start) lists the shards,
  open and closed, skips those read to their end, and makes a child shard wait for its
  listed, unfinished parents (``ParentShardId`` / ``AdjacentParentShardId``): a partition
  key's events stay in order.
- ``ReadShard`` (``kinesis_reader.py``: an unbounded splittable DoFn, one element per shard)
  reads with ``GetShardIterator`` / ``GetRecords``. Its restriction is a range of *sequence
  numbers* (up to 129 digits: Python ints); it claims each micro-batch's last one, so a
  checkpoint split resumes ``AFTER_SEQUENCE_NUMBER`` exactly. At most 5 reads a second per
  shard (the Kinesis limit), a poll every ``poll_seconds`` when caught up, a backoff (up to
  30 s) on ``ProvisionedThroughputExceeded`` or a transient error; a closed shard ends when
  ``GetRecords`` returns no next iterator.

The options, the boto3 client and the retryable errors are in ``kinesis_api.py``. Each poll
round ends a bundle (the shards of a stage take turns), one to five a second: the
in-process FnApiRunner adds their metrics up as they end (``pipelines/runner_metrics.py``),
or the stop of a run past about 1,000 of them failed with ``RecursionError``.

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

import apache_beam as beam

from ceap.plugins import connectors
from connectors.base import Connector
from connectors.kinesis_api import ENDPOINT_ENV, KinesisOptions
from connectors.kinesis_reader import ReadShard, records_to_batch
from connectors.kinesis_shards import ListShards, Shard, checkpoint_key

# The names code and tests import from here. The client is looked up where the DoFns make
# it: a test replaces ``connectors.kinesis_api.kinesis_client``.
__all__ = [
    "ENDPOINT_ENV", "KinesisConnector", "KinesisOptions", "ListShards", "ReadShard", "Shard",
    "checkpoint_key", "records_to_batch",
]  # fmt: skip

log = logging.getLogger(__name__)


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
