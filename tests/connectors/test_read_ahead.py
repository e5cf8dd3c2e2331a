"""A source's splits on the in-process runner with one worker: read as one element, the
next split's first batch ahead of this one's end, every row tagged exactly as a split per
element tags it; other runners keep a split per element (parallel across workers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from connectors.base import ORIGIN_COLUMN, Connector

EVENTS: list[str] = []
LAST_SEEN = threading.Event()


class _Three(Connector):
    """Three splits of two batches; records when each split starts being read."""

    def splits(self) -> list[str]:
        return ["s0", "s1", "s2"]

    def read_split(self, split, columns=None, *, text_columns=()) -> Iterator[pa.RecordBatch]:
        EVENTS.append(f"start {split}")
        for b in range(2):
            yield pa.record_batch({"id": [f"{split}-{b}-{i}" for i in range(3)]})


def rows(batch: pa.RecordBatch) -> list[tuple]:
    split = batch.schema.metadata[b"ceap.split"].decode()
    ids, origins = batch.column("id").to_pylist(), batch.column(ORIGIN_COLUMN).to_pylist()
    return [(split, i, o) for i, o in zip(ids, origins, strict=True)]


def slow_at_split_end(batch: pa.RecordBatch) -> pa.RecordBatch:
    if batch.column("id")[0].as_py() == "s0-1-0":  # the first split's last batch
        time.sleep(0.3)  # the reader has this long to start the next split
        EVENTS.append("s0 done")
    return batch


EXPECTED = [
    (s, f"{s}-{b}-{i}", 3 * b + i) for s in ("s0", "s1", "s2") for b in range(2) for i in range(3)
]


def run(options: PipelineOptions, splits: int) -> None:
    """Reads _Three; checks its rows and how many elements carried its splits."""
    EVENTS.clear()
    with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
        read = p | _Three().read(["id"])
        assert_that(read | beam.Map(slow_at_split_end) | beam.FlatMap(rows), equal_to(EXPECTED))
        elements = read.producer.inputs[0]  # the Create of the splits
        if splits == 1:  # the splits ride with the read, not typed part by part as an element
            assert elements.element_type is int
        counted = elements | beam.combiners.Count.Globally()
        assert_that(counted, equal_to([splits]), label="SplitElements")


def test_one_worker_reads_the_next_split_while_this_one_ends():
    run(PipelineOptions([]), splits=1)
    assert EVENTS.index("start s1") < EVENTS.index("s0 done")
    assert [e for e in EVENTS if e.startswith("start")] == ["start s0", "start s1", "start s2"]


def test_parallel_workers_keep_a_split_per_element():
    run(PipelineOptions(["--direct_num_workers=2"]), splits=3)
