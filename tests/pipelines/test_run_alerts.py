"""A run that opens a model's circuit and ends degraded posts its alerts to the webhook: one
``model_circuit_open`` for the model and one ``run_degraded`` for the run."""

from __future__ import annotations

import sqlite3

import pytest

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from pipelines.batch import run_program
from scorers.base import Scorer
from tests.alert_receiver import webhook  # noqa: F401 - the fixture
from tests.pipelines.test_migration import NOW, deliveries, home, write  # noqa: F401


class Down(Scorer):
    """A model endpoint that times out on every call."""

    def score(self, batch):
        raise TimeoutError("endpoint down")


def _program(folder) -> object:
    """A program whose one model times out on every call."""
    return parse_program(read_yaml(f"""
program: reviews
action: review
subject_type: product
source: [{{type: parquet, options: {{path: {folder}}}}}]
fields: {{customer_id: customer_id, subject_id: product_id, event_time: delivered_at}}
scoring:
  models: [{{id: remote, type: "{__name__}:Down"}}]
  fallback: skip
ranking: {{top_n: 100, per: program}}
channels: [{{type: in_app}}]
"""), "reviews.yaml")  # fmt: skip


def test_a_degraded_run_posts_one_alert_and_its_model_one(tmp_path, home, webhook):  # noqa: F811
    folder = write(tmp_path / "rows", deliveries(), parts=4)
    config = _program(folder)
    db = tmp_path / "run.db"
    ctx = RunContext(program="reviews", now=NOW, store=f"sqlite:///{db}", run_id="r-degraded",
                     extras={"circuit_threshold": 1})  # fmt: skip
    funnel = run_program(config, ctx, [])
    assert funnel.degraded()
    kinds = sorted((a["kind"], a["subject"]) for a in webhook)
    assert kinds == [("model_circuit_open", "remote"), ("run_degraded", "r-degraded")]
    degraded = next(a for a in webhook if a["kind"] == "run_degraded")
    assert degraded["program"] == "reviews" and degraded["details"]["mode"] == "batch"
    assert degraded["details"]["reasons"] == funnel.degraded()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("degraded",)]


def test_alerts_of_a_run_without_a_given_id_name_the_run_it_records(tmp_path, home, webhook):  # noqa: F811
    """The run id is made when the run starts: the model's alert, raised inside the graph,
    carries the same id as the run's own alert and its ``runs`` row."""
    folder = write(tmp_path / "rows", deliveries(), parts=2)
    db = tmp_path / "run.db"
    ctx = RunContext(program="reviews", now=NOW, store=f"sqlite:///{db}",
                     extras={"circuit_threshold": 1})  # fmt: skip
    run_program(_program(folder), ctx, [])
    with sqlite3.connect(db) as con:
        ((run_id,),) = con.execute("SELECT run_id FROM runs").fetchall()
    assert run_id and {a["details"]["run_id"] for a in webhook} == {run_id}


def test_a_failed_run_posts_a_run_failed_alert(tmp_path, home, webhook):  # noqa: F811
    db = tmp_path / "run.db"
    ctx = RunContext(program="reviews", now=NOW, store=f"sqlite:///{db}")
    with pytest.raises(Exception, match="missing"):
        run_program(_program(tmp_path / "missing"), ctx, [])
    with sqlite3.connect(db) as con:
        ((run_id, status),) = con.execute("SELECT run_id, status FROM runs").fetchall()
    assert status == "failed"
    assert [(a["kind"], a["subject"]) for a in webhook] == [("run_failed", run_id)]
    assert "missing" in webhook[0]["details"]["error"]


def test_a_store_that_cannot_be_opened_still_alerts(tmp_path, home, webhook):  # noqa: F811
    """No ``runs`` row can record it: the alert is the only word an operator gets."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    ctx = RunContext(program="reviews", now=NOW, store=f"sqlite:///{blocker}/ceap.db")
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the OS says
        run_program(_program(tmp_path / "rows"), ctx, [])
    assert [a["kind"] for a in webhook] == ["run_failed"]
