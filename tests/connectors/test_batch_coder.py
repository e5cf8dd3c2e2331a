"""RecordBatchCoder: batches cross stage boundaries as Arrow IPC and are sized without being
encoded; a batch run pickles none of its batches."""

from __future__ import annotations

import pickle

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.batch_coder import RecordBatchCoder, batches
from tests.pipelines.test_migration import deliveries, home, program, run, write  # noqa: F401


def _batch() -> pa.RecordBatch:
    batch = pa.record_batch({"customer_id": ["c1", None, "c3"], "score": [0.5, None, 1.0]})
    return batch.replace_schema_metadata({b"ceap.split": b"part-0"})


def test_a_batch_round_trips_with_its_schema_metadata():
    coder = RecordBatchCoder()
    back = coder.decode(coder.encode(_batch()))
    assert back.equals(_batch()) and back.schema.metadata == {b"ceap.split": b"part-0"}


def test_anything_else_round_trips_too():
    coder = RecordBatchCoder()
    table = pa.table({"a": [1, 2]})
    assert coder.decode(coder.encode(table)).equals(table)
    assert coder.decode(coder.encode({"k": 1})) == {"k": 1}


def test_a_batch_is_sized_from_its_buffers_not_by_encoding_it(monkeypatch):
    coder = RecordBatchCoder()
    monkeypatch.setattr(coder, "encode", lambda _: (_ for _ in ()).throw(AssertionError))
    assert coder.estimate_size(_batch()) == _batch().nbytes


def test_batch_steps_shuffle_their_batches_through_the_coder():
    with TestPipeline() as p:
        rows = (
            p
            | beam.Create([0, 1])
            | batches(beam.Map(lambda i: pa.record_batch({"i": [i, i + 10]})))
            | beam.Reshuffle()
            | beam.Map(lambda b: sorted(b.column("i").to_pylist()))
        )
        assert_that(rows, equal_to([[0, 10], [1, 11]]))


def test_a_batch_run_pickles_no_batch(tmp_path, home, monkeypatch):  # noqa: F811
    """Beam sizes sampled elements by encoding them: with its pickling coder that copied
    whole batches (1.2 s of a 10M-row run)."""
    pickled: list[str] = []
    real = pickle.dumps

    def dumps(value, *args, **kwargs):
        pickled.append(type(value).__name__)
        return real(value, *args, **kwargs)

    monkeypatch.setattr(pickle, "dumps", dumps)
    source = write(tmp_path / "src", deliveries())
    funnel, _ = run(program(f"{{type: parquet, options: {{path: {source}}}}}"), tmp_path, "b")
    assert funnel.read == 300 and funnel.candidates > 0
    assert "RecordBatch" not in pickled
