"""Issue 16, item 2: while a stream runs, every event's outcome is durable within about a
second of its micro-batch, filtered events included (they used to wait 40-100 s, behind
a Flatten that held the filters' outcomes until the endless stage finished)."""

from __future__ import annotations

import signal
import sqlite3
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.event_log import EventLog
from tests.e2e.test_streaming_e2e import events, start, wait_for

ENRICHED = """
program: ratings
action: rate
subject_type: video
events: {{type: event_log, options: {{path: {log}}}, delay: 10m}}
fields: {{customer_id: customer_id, subject_id: video_id, event_time: completed_at}}
enrich:
  - {{type: parquet, key: customer_id, options: {{path: {customers}}}, columns: [engagement]}}
filters:
  - {{name: completion, type: expression, options: {{keep: "watched_pct > 0.8"}}}}
  - {{name: engaged, type: expression, options: {{keep: "engagement >= 0.2"}}}}
  - {{name: not_full, type: expression, options: {{keep: "watched_pct < 0.95"}}}}
scoring: {{models: [{{id: m, type: column, options: {{column: watched_pct}}}}]}}
channels: [{{type: in_app}}]
"""


def outcome_kinds(home) -> dict[str, int]:
    with sqlite3.connect(home / "ceap.db") as con:
        rows = con.execute("SELECT outcome, count(*) FROM event_outcomes GROUP BY 1").fetchall()
    return dict(rows)


@pytest.mark.slow
def test_filtered_events_are_accounted_while_the_stream_runs(tmp_path):
    log, home, configs = tmp_path / "log", tmp_path / "home", tmp_path / "configs"
    configs.mkdir()
    customers = tmp_path / "customers.parquet"  # c0 ... c96, the odd ones not engaged
    ids = [f"c{i}" for i in range(97)]
    engagement = [0.1 if i % 2 else 0.5 for i in range(97)]
    pq.write_table(pa.table({"customer_id": ids, "engagement": engagement}), customers)
    (configs / "ratings.yaml").write_text(ENRICHED.format(log=log, customers=customers))
    event_log = EventLog(log)
    proc = start(home, configs)
    try:
        event_log.append([e | {"watched_pct": 0.9} for e in events(9000, 1)])
        wait_for(home, 1, proc)  # the stream is up
        # Every filter drops some: watched too little, not engaged (odd), watched in full.
        rejected = [e | {"watched_pct": 0.5} for e in events(0, 20)]
        rejected += [
            e | {"watched_pct": 0.9} for e in events(20, 20) if int(e["customer_id"][1:]) % 2
        ]
        rejected += [e | {"watched_pct": 0.97, "customer_id": "c0"} for e in events(40, 10)]
        event_log.append(rejected)
        sent = time.monotonic()
        deadline = sent + 5  # a generous bound: the micro-batch is ~50 ms, the bug ~40 s
        while outcome_kinds(home).get("filtered", 0) < len(rejected):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, f"outcomes so far: {outcome_kinds(home)}"
            time.sleep(0.05)
        assert outcome_kinds(home) == {"candidate": 1, "filtered": len(rejected)}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
