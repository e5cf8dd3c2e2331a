"""What every streaming source shares: parsed events as Arrow micro-batches with their
positions, stable positions for sources without an ordered log, and the batching step of
the sources whose reads are Beam's own (Pub/Sub, Kafka)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from connectors.base import ERROR_COLUMN, ORIGIN_COLUMN, RAW

_MASK63 = (1 << 63) - 1


def lines_to_batch(lines: list[tuple[int, bytes]], log: str) -> pa.RecordBatch:
    """Parsed events as one Arrow batch; a line that is not a JSON object keeps its text
    and an error, so it reaches the dead-letter sink instead of stopping the stream."""
    rows: list[dict[str, Any]] = []
    for _, line in lines:
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("an event must be a JSON object")
            rows.append(event)
        except ValueError as exc:
            rows.append(
                {
                    ERROR_COLUMN: f"not a JSON object: {exc}"[:300],
                    RAW: line.decode(errors="replace")[:2000],
                }
            )
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = {}
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Mixed types across events (a number here, text there): keep them as text.
            columns[name] = pa.array(
                [
                    None if v is None else json.dumps(v) if not isinstance(v, str) else v
                    for v in values
                ],
                pa.string(),
            )
    columns[ORIGIN_COLUMN] = pa.array(np.array([p for p, _ in lines], dtype=np.int64))
    batch = pa.RecordBatch.from_pydict(columns)
    return batch.replace_schema_metadata({b"ceap.split": log.encode()})


def stable_position(*parts: str) -> int:
    """A message's position in the outcome ledger: the first 8 bytes of the sha256 of its
    identity (``shard, sequence number``; a Pub/Sub message id; ``topic, partition,
    offset``) as a non-negative 63-bit integer, the same on every replay."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & _MASK63


class EventBatches(beam.PTransform):
    """PCollection[(position, message bytes)] -> PCollection[RecordBatch] of JSON events
    (micro-batches of at most ``max_batch``), labelled ``label`` as their split.

    Shared by the message-queue sources whose reads are Beam's own (pubsub, kafka).
    """

    def __init__(self, label: str, max_batch: int) -> None:
        super().__init__()
        self._label = label
        self._max = max_batch

    def expand(self, messages):
        label = self._label
        return (
            messages
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._max)
            | "ToArrow" >> beam.Map(lambda lines: lines_to_batch(list(lines), label))
        )
