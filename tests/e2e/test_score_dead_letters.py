"""A model that fails: every row that reaches scoring is one dead letter in the store, as
the funnel counts it, even when several events share a candidate key or repeat exactly
(docs/architecture.md, "Tables": every input row ends as exactly one outcome); a re-run adds none."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from ceap.context import RunContext
from configs.schema import parse_program, read_yaml
from pipelines.batch import run_program
from scorers.base import Scorer

NOW = datetime(2026, 11, 25, tzinfo=UTC)
PROGRAM = """
program: broken
action: review
subject_type: product
source: {{type: parquet, options: {{path: {path}}}}}
fields: {{customer_id: cust, subject_id: sku, event_time: at}}
scoring:
  models:
    - {{id: boom, type: "{module}:Boom", traffic: 50}}
    - {{id: rule, type: column, options: {{column: score_in}}, traffic: 50}}
ranking: {{top_n: 100, per: customer}}
channels: [{{type: in_app}}]
"""


class Boom(Scorer):
    def score(self, batch):
        raise RuntimeError("model endpoint down")


def rows() -> pa.Table:
    """40 customers x 3 events of the same product (different times), plus each customer's
    first event once more, exactly: 160 rows, 40 candidate keys."""
    cust, sku, at, score = [], [], [], []
    for c in range(40):
        for e in range(3):
            cust.append(f"c{c}")
            sku.append("p1")
            at.append(datetime(2026, 11, 20 + e, tzinfo=UTC))
            score.append(0.5)
    for c in range(40):
        cust.append(f"c{c}")
        sku.append("p1")
        at.append(datetime(2026, 11, 20, tzinfo=UTC))
        score.append(0.5)
    return pa.table({"cust": cust, "sku": sku, "at": at, "score_in": score})


def run(tmp_path) -> tuple[dict, list]:
    path = tmp_path / "events.parquet"
    pq.write_table(rows(), path)
    text = PROGRAM.format(path=path, module=__name__)
    program = parse_program(read_yaml(text), "broken.yaml")
    db = tmp_path / "ceap.db"
    ctx = RunContext(program="broken", now=NOW, store=f"sqlite:///{db}")
    funnel = run_program(program, ctx, [])
    with sqlite3.connect(db) as con:
        letters = con.execute(
            "SELECT origin, reason FROM dead_letters WHERE stage = 'score'"
        ).fetchall()
    return funnel.as_dict(), letters


def test_each_failed_row_is_one_dead_letter_and_a_rerun_adds_none(tmp_path):
    funnel, letters = run(tmp_path)
    failed = funnel["dead_letters"]["score"]
    assert 0 < failed < 160  # the boom arm's share of the 160 rows
    assert len(letters) == failed  # not one per candidate key
    assert len({origin for origin, _ in letters}) == failed
    assert all("model boom failed" in reason for _, reason in letters)
    assert funnel["adds_up"]
    again, letters_again = run(tmp_path)
    assert again["dead_letters"]["score"] == failed
    assert sorted(letters_again) == sorted(letters)


def test_a_model_reading_a_column_the_source_lacks_fails_the_run(tmp_path, capsys, monkeypatch):
    """A configuration mistake, not bad rows: exit 1 naming the model and the column, as a
    filter reading a missing column does (not a run of dead letters that exits 0)."""
    import run as cli

    pq.write_table(rows(), tmp_path / "events.parquet")
    configs = tmp_path / "configs"
    configs.mkdir()
    text = PROGRAM.format(path=tmp_path / "events.parquet", module=__name__)
    (configs / "broken.yaml").write_text(
        text.replace(f'"{__name__}:Boom"', "column, options: {column: nope}")
    )
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    code = cli.main([
        "--program", "broken", "--mode", "batch", "--config-dir", str(configs),
        "--now", "2026-11-25T00:00:00Z",
    ])  # fmt: skip
    assert code == 1
    assert "model boom reads 'nope', which neither the source" in capsys.readouterr().err
