"""An opt-out made through the Serving API is honoured by the next pipeline run: a global
opt-out removes the customer's candidates; a channel-only one suppresses that channel's
outbox rows and nothing else."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.e2e.test_batch_e2e import NOW, PROGRAM, run_cli, warehouse  # noqa: F401 - fixture

WITH_REGISTRY = PROGRAM.replace("  - type: dedup", "  - type: opt_out\n  - type: dedup")


@pytest.mark.slow
def test_api_opt_outs_reach_the_pipeline(warehouse, tmp_path):  # noqa: F811 - the fixture
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "my_reviews.yaml").write_text(WITH_REGISTRY.format(wh=warehouse, top_n=400))
    first, second = tmp_path / "first", tmp_path / "second"
    assert (
        run_cli(
            ["--program", "my_reviews", "--config-dir", str(configs), "--now", NOW], first
        ).returncode
        == 0
    )
    with sqlite3.connect(first / "ceap.db") as con:
        a, b = [
            r[0]
            for r in con.execute("SELECT DISTINCT customer_id FROM candidates ORDER BY 1 LIMIT 2")
        ]

    app = create_app(f"sqlite:///{second / 'ceap.db'}", config_dir=configs, api_keys=["k"])
    with TestClient(app) as client:
        assert (
            client.post(
                "/v1/opt-outs", json={"customer_id": a}, headers={"X-API-Key": "k"}
            ).status_code
            == 200
        )
        assert (
            client.post(
                "/v1/opt-outs",
                json={"customer_id": b, "channel": "email"},
                headers={"X-API-Key": "k"},
            ).status_code
            == 200
        )

    result = run_cli(
        ["--program", "my_reviews", "--config-dir", str(configs), "--now", NOW], second
    )
    assert result.returncode == 0, result.stderr
    assert "opted out" in result.stdout
    with sqlite3.connect(second / "ceap.db") as con:
        assert (
            con.execute("SELECT count(*) FROM candidates WHERE customer_id = ?", (a,)).fetchone()[0]
            == 0
        )
        assert (
            con.execute("SELECT count(*) FROM outbox WHERE customer_id = ?", (a,)).fetchone()[0]
            == 0
        )
        rows = con.execute(
            "SELECT channel, status, reason FROM outbox WHERE customer_id = ?", (b,)
        ).fetchall()
    assert rows and {(ch, st) for ch, st, _ in rows} == {
        ("email", "suppressed"),
        ("in_app", "pending"),
    }
    assert {r for _, st, r in rows if st == "suppressed"} == {"opted out"}
