"""A stream runs for weeks: each micro-batch is processed at its own time, not at the time the
stream started. With ``store: {ttl: 2m}``, an event 150 s into the stream used to get an
``expires_at`` before its own arrival, and the API served nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from transforms.filters.expression import ExpressionFilter
from transforms.sinks import candidate_records

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PROGRAM = """
program: ratings
action: rate
subject_type: video
events: {type: event_log, options: {path: unused}}
fields: {customer_id: customer_id, subject_id: video_id}
scoring: {models: [{id: m, type: column, options: {column: score}}]}
store: {ttl: 2m}
channels: [{type: in_app}]
"""


def batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "customer_id": ["c1"], "subject_id": ["v1"], "score": [0.5], "model_id": ["m"],
        "treatment": ["m"],
        "event_time": pa.array([START + timedelta(seconds=150)], pa.timestamp("us", tz="UTC")),
    })  # fmt: skip


def test_a_live_clock_stamps_each_batch_with_its_own_time(monkeypatch):
    program = parse_program(read_yaml(PROGRAM), "ratings.yaml")
    arrived = START + timedelta(seconds=150)
    monkeypatch.setattr(RunContext, "utcnow", staticmethod(lambda: arrived))
    live = RunContext(program="ratings", now=START, streaming=True, live_clock=True)
    row = candidate_records(batch(), program, live).to_pylist()[0]
    assert row["created_at"] == "2026-11-25T10:02:30Z"
    assert row["expires_at"] == "2026-11-25T10:04:30Z"  # after the event: still servable
    pinned = RunContext(program="ratings", now=START, streaming=True)  # --now: a fixed time
    assert candidate_records(batch(), program, pinned).to_pylist()[0]["expires_at"] == (
        "2026-11-25T10:02:00Z"
    )


def test_a_filter_window_moves_with_the_live_clock(monkeypatch):
    keep = {"keep": "event_time >= now - duration('1m')"}
    clock = [START + timedelta(seconds=150)]
    monkeypatch.setattr(RunContext, "utcnow", staticmethod(lambda: clock[0]))
    live = RunContext(program="ratings", now=START, streaming=True, live_clock=True)
    flt = ExpressionFilter(keep, live)
    flt.setup()
    kept, removed, _ = flt.split(batch())
    assert kept.num_rows == 1  # the event is 0 s old at its arrival, not 150 s in the future
    clock[0] = START + timedelta(minutes=10)  # ten minutes later, the same event is stale
    kept, removed, _ = flt.split(batch())
    assert kept.num_rows == 0 and removed.num_rows == 1


def test_streaming_without_now_runs_on_a_live_clock(monkeypatch, tmp_path):
    import run as cli
    from transforms.funnel import Funnel

    seen = {}

    def run_streaming(program, ctx, beam_args):
        seen["ctx"] = ctx
        return Funnel(program.program)

    monkeypatch.setattr("pipelines.streaming.run_streaming", run_streaming)
    monkeypatch.setattr("ceap.stopping.install", lambda *a, **k: None)
    monkeypatch.setenv("CEAP_HOME", str(tmp_path))
    cli.main(["--program", "video_ratings", "--mode", "streaming"])
    assert seen["ctx"].live_clock is True
    cli.main(["--program", "video_ratings", "--mode", "streaming", "--now", "2026-11-25"])
    assert seen["ctx"].live_clock is False
