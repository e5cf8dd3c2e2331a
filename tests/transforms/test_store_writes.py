"""The store sink: a batch run gathers a worker's ranked rows into as few writes as it can;
a streaming run stores each batch as it comes and only then records its outcomes."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from ceap.context import RunContext
from ceap.mode import BATCH, STREAMING
from configs.schema import parse_program, read_yaml
from stores.sqlite import SqliteStore
from transforms.dead_letters import dead_letters
from transforms.sinks import _DeadLetterFn, _WriteFn

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PROGRAM = """
program: ratings
action: rate
subject_type: video
source: {type: parquet, options: {path: unused}}
fields: {customer_id: customer_id, subject_id: video_id}
scoring: {models: [{id: m, type: column, options: {column: score}}]}
channels: [{type: in_app}]
"""


def ranked(first: int, n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "customer_id": [f"c{i}" for i in range(first, first + n)],
        "subject_id": ["v1"] * n, "score": [0.5] * n, "model_id": ["m"] * n,
        "treatment": ["m"] * n, "event_time": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        "_ceap_origin": pa.array(range(first, first + n), pa.int64()),
    })  # fmt: skip


class Spy(SqliteStore):
    """Records the rows of each candidate write and each dead-letter write."""

    writes: list[int] = []
    letters: list[int] = []

    def upsert_candidates(self, candidates):
        Spy.writes.append(candidates.num_rows)
        return super().upsert_candidates(candidates)

    def write_dead_letters(self, rows):
        Spy.letters.append(rows.num_rows)
        return super().write_dead_letters(rows)


def sink(tmp_path, mode, monkeypatch, letters: bool = False):
    """The candidate sink (or the dead-letter sink) of a run in ``mode``, writing to a Spy."""
    Spy.writes, Spy.letters = [], []
    monkeypatch.setattr("transforms.store_fn.open_store", lambda spec: Spy(tmp_path / "c.db"))
    ctx = RunContext(program="ratings", now=NOW, store="sqlite", mode=mode)
    fn = _DeadLetterFn(ctx) if letters else _WriteFn(parse_program(read_yaml(PROGRAM)), ctx)
    fn.setup()
    fn.start_bundle()
    return fn


def stored(tmp_path) -> tuple[int, int]:
    store = SqliteStore(tmp_path / "c.db")
    try:
        con = store.connection
        return tuple(
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("candidates", "outbox")
        )
    finally:
        store.close()


def test_a_batch_run_stores_a_bundles_ranked_rows_in_one_write(tmp_path, monkeypatch):
    fn = sink(tmp_path, BATCH, monkeypatch)
    for first in (0, 10, 20):  # three ranking buckets' output
        assert list(fn.process(ranked(first, 10))) == []
    assert Spy.writes == []  # gathered, nothing written yet
    fn.finish_bundle()
    fn.teardown()
    assert Spy.writes == [30]
    assert stored(tmp_path) == (30, 30)


def test_a_streaming_run_stores_each_batch_before_its_outcomes(tmp_path, monkeypatch):
    fn = sink(tmp_path, STREAMING, monkeypatch)
    outcomes = list(fn.process(ranked(0, 4)))
    assert Spy.writes == [4] and stored(tmp_path) == (4, 4)
    assert outcomes and outcomes[0].value.column("outcome").to_pylist() == ["candidate"] * 4
    fn.finish_bundle()
    fn.teardown()
    assert Spy.writes == [4]


def letters(first: int, n: int) -> pa.Table:
    return dead_letters(
        "ratings", "candidates", pa.table({"customer_id": [""] * n}), ["missing customer_id"] * n,
        [f"split#{i}" for i in range(first, first + n)], NOW,
    )  # fmt: skip


def test_a_batch_run_writes_a_bundles_dead_letters_in_one_transaction(tmp_path, monkeypatch):
    fn = sink(tmp_path, BATCH, monkeypatch, letters=True)
    for first in (0, 3, 6):  # three source batches' bad rows
        assert list(fn.process(letters(first, 3))) == []
    assert Spy.letters == []
    fn.finish_bundle()
    fn.teardown()
    assert Spy.letters == [9]
    store = SqliteStore(tmp_path / "c.db")
    assert store.connection.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 9
    store.close()


def test_a_streaming_run_writes_each_batchs_dead_letters_before_their_outcomes(
    tmp_path, monkeypatch
):
    fn = sink(tmp_path, STREAMING, monkeypatch, letters=True)
    outcomes = list(fn.process(letters(0, 2)))
    assert Spy.letters == [2] and outcomes[0].column("position").to_pylist() == [0, 1]
    fn.finish_bundle()
    fn.teardown()
    assert Spy.letters == [2]


class FailingOutbox(SqliteStore):
    def enqueue_outbox(self, rows):
        super().enqueue_outbox(rows)
        raise OSError("disk full")


def test_a_batchs_candidates_and_outbox_rows_commit_together(tmp_path, monkeypatch):
    """A write that fails after the candidates leaves neither: no candidate without its ask."""
    monkeypatch.setattr(
        "transforms.store_fn.open_store", lambda s: FailingOutbox(tmp_path / "c.db")
    )
    ctx = RunContext(program="ratings", now=NOW, store="sqlite", mode=BATCH)
    fn = _WriteFn(parse_program(read_yaml(PROGRAM)), ctx)
    fn.setup()
    fn.start_bundle()
    list(fn.process(ranked(0, 5)))
    with pytest.raises(OSError, match="disk full"):
        fn.finish_bundle()
    fn.teardown()
    assert stored(tmp_path) == (0, 0)
