"""End to end: ``run.py --mode streaming`` as a subprocess, fed through the event log,
killed with SIGKILL mid-stream, restarted, then stopped with SIGINT. Every event must end
as exactly one outcome (candidate or a recorded rejection), none twice, and the
candidates must be exactly the events' distinct keys that pass the filter.

``kill_restart_and_drain`` and ``assert_each_event_once`` are the scenario and its checks,
for any store (tests/e2e/test_streaming_dynamodb.py runs them on DynamoDB)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.event_log import EventLog
from stores.spec import open_store

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """
program: ratings
action: rate
subject_type: video
events: {{type: event_log, options: {{path: {log}}}, delay: 10m}}
fields: {{customer_id: customer_id, subject_id: video_id, event_time: completed_at}}
filters:
  - {{type: expression, options: {{keep: "watched_pct > 0.8"}}}}
scoring: {{models: [{{id: m, type: column, options: {{column: watched_pct}}}}]}}
channels: [{{type: in_app}}]
"""


def start(home: Path, configs: Path, store: str | None = None) -> subprocess.Popen:
    """``run.py --mode streaming`` on the default store of ``home``, or on ``store``."""
    env = {**os.environ, "CEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--program", "ratings", "--mode", "streaming",
         "--config-dir", str(configs), *(["--store", store] if store else [])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def ledger_size(home: Path) -> int:
    try:
        with sqlite3.connect(home / "ceap.db") as con:
            return con.execute("SELECT count(*) FROM event_outcomes").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def wait_for(
    home: Path, n: int, proc: subprocess.Popen, timeout: float = 60,
    size: Callable[[], int] | None = None, every: float = 0.05,
) -> None:  # fmt: skip
    """Waits until ``n`` events have an outcome (``size()``: the ledger's, default the SQLite
    store of ``home``), polling every ``every`` seconds; fails if the run ends first."""
    size = size or (lambda: ledger_size(home))
    deadline = time.monotonic() + timeout
    while (done := size()) < n:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"only {done} of {n} events accounted"
        time.sleep(every)


def events(first: int, count: int) -> list[dict]:
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return [
        {"customer_id": f"c{i % 97}", "video_id": f"v{i}", "completed_at": at, "watched_pct": 0.5 + (i % 5) / 10}
        for i in range(first, first + count)
    ]  # fmt: skip


def kill_restart_and_drain(
    tmp_path: Path, store: str | None = None, size: Callable[[], int] | None = None,
    every: float = 0.05, timeout: float = 60,
) -> tuple[list[dict], Path]:  # fmt: skip
    """Feeds 1,201 events, kills the run mid-stream, resends 50 (an at-least-once upstream),
    restarts, waits until all 1,251 have an outcome and stops the run with SIGINT. Returns
    the events sent and the config directory; ``store``, ``size``, ``every``: as in
    ``start`` and ``wait_for``."""
    log, home, configs = tmp_path / "log", tmp_path / "home", tmp_path / "configs"
    configs.mkdir()
    (configs / "ratings.yaml").write_text(PROGRAM.format(log=log))
    event_log = EventLog(log)
    sent: list[dict] = []
    wait = {"size": size or (lambda: ledger_size(home)), "every": every, "timeout": timeout}

    def feed() -> None:  # events keep arriving before, during and after the crash
        for chunk in range(12):
            batch = events(chunk * 100, 100)
            event_log.append(batch)
            sent.extend(batch)
            time.sleep(0.03)

    proc = start(home, configs, store)
    warm_up = events(5000, 1)  # the stream is up once its first event is accounted for
    event_log.append(warm_up)
    sent.extend(warm_up)
    wait_for(home, 1, proc, **wait)
    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_for(home, 150, proc, **wait)
    proc.send_signal(signal.SIGKILL)  # mid-stream: no drain, no goodbye
    proc.wait(timeout=10)
    feeder.join()
    at_crash = wait["size"]()
    assert at_crash < 1201, "the crash must leave events unaccounted"
    print("accounted at the crash:", at_crash)

    resend = sent[:50]  # an upstream at-least-once retry: the same events again
    event_log.append(resend)
    proc = start(home, configs, store)
    wait_for(home, 1251, proc, **wait)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "draining" in err and "funnel [ratings]" in out
    return sent, configs


def assert_each_event_once(store: str, sent: list[dict], configs: Path) -> None:
    """Each event has exactly one outcome (the 50 resent ones: duplicate), the candidates
    and outbox rows are exactly the distinct keys that pass the filter, and the Serving API
    returns them once their 10-minute cooling period is over."""
    db = open_store(store)
    try:
        outcomes = db.table("event_outcomes").select(["position", "outcome"]).to_pylist()
        candidates = db.table("candidates").select(["customer_id", "subject_id"]).to_pylist()
        outbox = db.table("outbox").num_rows
    finally:
        db.close()
    positions = [o["position"] for o in outcomes]
    assert len(positions) == len(set(positions)) == 1251  # each event exactly once
    kinds = [o["outcome"] for o in outcomes]
    assert kinds.count("duplicate") == 50
    expected = {(e["customer_id"], e["video_id"]) for e in sent if e["watched_pct"] > 0.8}
    assert {(c["customer_id"], c["subject_id"]) for c in candidates} == expected
    assert len(candidates) == kinds.count("candidate") == len(expected) == outbox

    # ... and the Serving API returns them (after their 10-minute cooling period).
    from fastapi.testclient import TestClient

    from serving.app import create_app

    later = datetime.now(UTC) + timedelta(hours=1)
    app = create_app(store, config_dir=configs, api_keys=["k"], clock=lambda: later)
    customer = sorted(expected)[0][0]
    with TestClient(app) as client:
        body = client.get(
            f"/v1/customers/{customer}/candidates?limit=100", headers={"X-API-Key": "k"}
        ).json()
        early = TestClient(create_app(store, config_dir=configs, api_keys=["k"]))
        cooling = early.get(
            f"/v1/customers/{customer}/candidates", headers={"X-API-Key": "k"}
        ).json()
    assert {c["subject_id"] for c in body["candidates"]} == {
        s for c, s in expected if c == customer
    }
    assert cooling["candidates"] == []  # still within the cooling period


@pytest.mark.slow
def test_kill_restart_and_drain_account_for_every_event_once(tmp_path):
    sent, configs = kill_restart_and_drain(tmp_path)  # on the embedded default store
    assert_each_event_once(f"sqlite:///{tmp_path / 'home' / 'ceap.db'}", sent, configs)
