"""End to end, as an operator runs a day: batch (``run.py --program reviews``) on a generated
warehouse -> dispatch with every channel in shadow mode -> responses through the Serving API
-> export -> report; the exported row counts and the report's numbers are checked against
the store."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from configs.schema import load_program
from sample import generate_warehouse
from serving.app import create_app

ROOT = Path(__file__).resolve().parents[2]
KEY = {"X-API-Key": "e2e"}

pytestmark = pytest.mark.slow


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"run.py {args[0]}: {result.stderr[-3000:]}"
    return result


def shadow_configs(tmp_path: Path, warehouse: Path) -> Path:
    """The seed reviews program on this warehouse, every channel in shadow mode."""
    configs = tmp_path / "configs"
    configs.mkdir()
    text = (ROOT / "configs" / "reviews.yaml").read_text().replace("data/warehouse", str(warehouse))
    head, channels = text.split("\nchannels:\n")
    channels = re.sub(r"^(  - type: \w+)$", r"\1\n    shadow: true", channels, flags=re.M)
    (configs / "reviews.yaml").write_text(f"{head}\nchannels:\n{channels}")
    program = load_program(configs / "reviews.yaml")
    assert program.channels and all(c.shadow for c in program.channels)
    return configs


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql, params).fetchall()


def test_batch_dispatch_responses_export_report(tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    warehouse, home = tmp_path / "wh", tmp_path / "home"
    generate_warehouse(warehouse, rows=3_000, seed=11, as_of=now)
    configs = shadow_configs(tmp_path, warehouse)
    db = home / "ceap.db"

    run_cli(["--program", "reviews", "--config-dir", str(configs)], home)
    [(day,)] = query(db, "SELECT DISTINCT substr(created_at, 1, 10) FROM candidates")
    client = TestClient(create_app(f"sqlite:///{db}", config_dir=configs, api_keys=["e2e"]))

    def respond(keys: list[tuple]) -> None:
        for customer, subject in keys:
            body = {"program": "reviews", "customer_id": customer, "subject_id": subject,
                    "response": {"stars": 5}}  # fmt: skip
            assert client.post("/v1/responses", json=body, headers=KEY).status_code < 300

    # Two customers answer before any message: consumed, so never reached (unattributed).
    none = query(db, "SELECT customer_id, subject_id FROM candidates ORDER BY score DESC LIMIT 2")
    respond(none)
    later = (now + timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")  # every email row is due
    run_cli(["dispatch", "--now", later, "--config-dir", str(configs)], home)
    statuses = dict(query(db, "SELECT status, count(*) FROM outbox GROUP BY 1"))
    assert statuses.get("shadowed", 0) > 0 and "sent" not in statuses  # shadow: nothing sent
    assert statuses.get("suppressed", 0) >= 2 * len(none)

    # Then four reached on both channels answer, and (when there are) two reached on one.
    both = query(db, "SELECT customer_id, subject_id FROM outbox WHERE status = 'shadowed' "
                 "GROUP BY 1, 2 HAVING count(*) = 2 ORDER BY 1, 2 LIMIT 4")  # fmt: skip
    one = query(db, "SELECT customer_id, subject_id FROM outbox WHERE status = 'shadowed' "
                "GROUP BY 1, 2 HAVING count(*) = 1 ORDER BY 1, 2 LIMIT 2")  # fmt: skip
    assert len(both) == 4
    respond([*both, *one])
    responded = len(both) + len(one) + len(none)

    out = tmp_path / "export"
    run_cli(["export", "--date", day, "--output", str(out)], home)
    run_cli(["export", "--date", day, "--output", str(out)], home)  # idempotent
    low, high = day, (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    expected = {
        "candidates": query(db, "SELECT program, count(*) FROM candidates WHERE created_at >= ? "
                            "AND created_at < ? GROUP BY 1", (low, high)),
        "outbox": query(db, "SELECT program, count(*) FROM outbox WHERE (created_at >= ? AND "
                        "created_at < ?) OR (sent_at >= ? AND sent_at < ?) GROUP BY 1",
                        (low, high, low, high)),
        "responses": query(db, "SELECT program, count(*) FROM responses WHERE created_at >= ? "
                           "AND created_at < ? GROUP BY 1", (low, high)),
    }  # fmt: skip
    for table, rows in expected.items():
        got = duckdb.sql(
            f"SELECT program, count(*) FROM read_parquet('{out}/{table}/*/*/*.parquet', "
            f"hive_partitioning = true) WHERE dt = DATE '{day}' GROUP BY 1"
        ).fetchall()
        assert sorted(got) == sorted(rows), table
    assert dict(expected["responses"]) == {"reviews": responded}

    html_path = tmp_path / "report.html"
    run_cli(["report", "--program", "reviews", "--date", day, "--output", str(html_path)], home)
    html = html_path.read_text()
    report = json.loads(re.search(r'id="ceap-report-data">(.*?)</script>', html, re.S).group(1))
    [(funnel_text,)] = query(db, "SELECT funnel FROM runs WHERE program = 'reviews'")
    funnel = json.loads(funnel_text)
    assert report["run"]["funnel"]["read"] == funnel["read"] == 3_000
    assert report["funnel"][-1]["remaining"] == funnel["candidates"] == dict(expected["candidates"])["reviews"]  # fmt: skip
    # Five charts: no attribution one, since shadow sends reached nobody (below).
    assert f"{funnel['read']:,}" in html and html.count("data:image/png;base64,") == 5
    for f in funnel["filtered"]:
        assert f["reason"] in html
    assert report["candidates"] == funnel["candidates"]
    outbox = {(r["channel"], r["status"]): r["rows"] for r in report["outbox"]}
    assert outbox == {(c, s): n for c, s, n in query(db, "SELECT channel, status, count(*) FROM outbox GROUP BY 1, 2")}  # fmt: skip
    arms = {r["model_id"]: (r["candidates"], r["responses"]) for r in report["arms"]}
    store_arms = query(
        db, "SELECT c.model_id, count(*), count(r.customer_id) FROM candidates c LEFT JOIN "
        "responses r USING (program, customer_id, subject_id) GROUP BY 1"
    )  # fmt: skip
    assert arms == {m: (n, r) for m, n, r in store_arms}
    # Shadow sends are rehearsals: they reached nobody, so no response is attributed to them
    # (they were counted as reached and credited before); each channel counts them apart.
    assert report["responses"] == responded
    assert report["attributed"] == 0 and report["attribution"] == []
    shadowed = dict(
        query(db, "SELECT channel, count(*) FROM outbox WHERE status = 'shadowed' GROUP BY 1")
    )
    assert {c["channel"]: (c["touched"], c["shadowed"]) for c in report["channels"]} == {
        ch: (0, n) for ch, n in shadowed.items()
    }  # fmt: skip
