"""Each streaming run leaves its own ``runs`` row: ids came from the uptime clock, so a run
started at the same uptime (after a reboot, in a new container) replaced an earlier one's."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from ceap import stopping
from ceap.context import RunContext
from ceap.mode import STREAMING
from configs.schema import parse_program, read_yaml
from pipelines.streaming import run_streaming
from tests.alert_receiver import webhook  # noqa: F401 - the fixture

PROGRAM = """
program: ratings
action: rate
subject_type: video
events: {{type: event_log, options: {{path: {log}}}}}
fields: {{customer_id: customer_id, subject_id: video_id, event_time: completed_at}}
scoring: {{models: [{{id: m, type: column, options: {{column: watched_pct}}}}]}}
channels: [{{type: in_app}}]
"""


@pytest.mark.slow
def test_two_streaming_runs_started_at_the_same_uptime_keep_two_rows(tmp_path, monkeypatch):
    program = parse_program(read_yaml(PROGRAM.format(log=tmp_path / "log")))
    ctx = RunContext(program="ratings", now=datetime(2026, 1, 1, tzinfo=UTC),
                     store=f"sqlite:///{tmp_path / 'ceap.db'}", mode=STREAMING)  # fmt: skip
    monkeypatch.setattr("pipelines.streaming.time.perf_counter", lambda: 16581.0)
    for _ in range(2):
        timer = threading.Timer(3.0, stopping.request)  # an empty stream, stopped after 3 s
        timer.start()
        run_streaming(program, ctx, [])
        timer.join()
    with sqlite3.connect(tmp_path / "ceap.db") as con:
        ids = [r[0] for r in con.execute("SELECT run_id FROM runs WHERE mode = 'streaming'")]
    assert len(ids) == len(set(ids)) == 2


def test_a_failed_streaming_run_leaves_a_failed_row_and_its_alert(tmp_path, monkeypatch, webhook):  # noqa: F811
    """As a batch run does: the alert names the run whose ``runs`` row says ``failed``."""
    import pipelines.streaming

    def broken(*_args):
        raise RuntimeError("the event source is gone")

    monkeypatch.setattr(pipelines.streaming, "build_streaming_pipeline", broken)
    program = parse_program(read_yaml(PROGRAM.format(log=tmp_path / "log")))
    ctx = RunContext(program="ratings", now=datetime(2026, 1, 1, tzinfo=UTC),
                     store=f"sqlite:///{tmp_path / 'ceap.db'}", mode=STREAMING)  # fmt: skip
    with pytest.raises(RuntimeError, match="gone"):
        run_streaming(program, ctx, [])
    with sqlite3.connect(tmp_path / "ceap.db") as con:
        ((run_id, status, error),) = con.execute("SELECT run_id, status, error FROM runs")
    assert status == "failed" and "gone" in error
    assert [(a["kind"], a["subject"]) for a in webhook] == [("run_failed", run_id)]
