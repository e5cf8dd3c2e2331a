"""The streaming graph fed by TestStream: every event ends with exactly one outcome in the
ledger (candidate, duplicate, late, filtered, dead letter), and cooling delays set
deliver_after. TestStream runs on Beam's BundleBasedDirectRunner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.testing.test_stream import TestStream

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from connectors.events import lines_to_batch
from pipelines.graph import candidate_graph
from stores.sqlite import SqliteStore
from transforms.outcomes import WriteOutcomes

PROGRAM = """
program: ratings
action: rate
subject_type: video
events: {type: event_log, options: {path: unused}, delay: 10m, max_lateness: 2d}
fields: {customer_id: customer_id, subject_id: video_id, event_time: completed_at, context: [device]}
filters:
  - {type: expression, options: {keep: "watched_pct > 0.8", reason: watched 80% or less}}
scoring: {models: [{id: m, type: column, options: {column: watched_pct}}]}
channels: [{type: push}]
"""


def batch(start: int, *events: dict | str):
    lines = [
        (start + i, (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n")
        for i, e in enumerate(events)
    ]
    return lines_to_batch(lines, "test-log")


def test_each_event_ends_with_exactly_one_outcome(tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    recent, old = (now - timedelta(minutes=5)).isoformat(), (now - timedelta(days=3)).isoformat()
    good = {
        "customer_id": "c1",
        "video_id": "v1",
        "completed_at": recent,
        "watched_pct": 0.9,
        "device": "tv",
    }
    program = parse_program(read_yaml(PROGRAM))
    ctx = RunContext(program="ratings", now=now, store=f"sqlite:///{tmp_path}/ceap.db", streaming=True,
                     deliver_delay=timedelta(minutes=10))  # fmt: skip
    stream = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements([batch(0, good, good, {**good, "video_id": "v2", "completed_at": old})])
        .advance_processing_time(1)
        .advance_watermark_to(10)
        .add_elements(
            [
                batch(
                    3,
                    "{oops",
                    {**good, "customer_id": None},
                    {**good, "customer_id": "c2", "watched_pct": 0.5},
                )
            ]
        )
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(
        runner=BundleBasedDirectRunner(), options=PipelineOptions(["--streaming"])
    ) as p:
        rows = p | stream
        for i, outcome in enumerate(candidate_graph(rows, program, ctx)):
            _ = outcome | f"Outcomes[{i}]" >> WriteOutcomes(ctx)

    store = SqliteStore(tmp_path / "ceap.db")
    ledger = {
        r["position"]: (r["outcome"], r["reason"])
        for r in store.table("event_outcomes").to_pylist()
    }
    assert ledger == {
        0: ("candidate", None),
        1: ("duplicate", "events: duplicate event"),
        2: ("filtered", "events: late event"),
        3: (
            "dead_letter",
            "not a JSON object: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        4: ("dead_letter", "missing customer_id (column 'customer_id')"),
        5: ("filtered", "0:expression: watched 80% or less"),
    }
    [candidate] = store.table("candidates").to_pylist()
    assert (candidate["customer_id"], candidate["subject_id"]) == ("c1", "v1")
    assert candidate["deliver_after"] == (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads(candidate["context"]) == {"device": "tv"}
