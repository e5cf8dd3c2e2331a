"""Every command says honestly how it went (README "Exit codes"): 0 ok, 1 failed, 2 wrong
usage, 3 ran but degraded; a wrong word gets the nearest right one, never a traceback."""

from __future__ import annotations

import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import run as cli
from ceap.errors import EXIT_DEGRADED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

PROGRAM = """
program: asks
action: review
subject_type: product
source: {{type: parquet, options: {{path: {data}}}}}
fields: {{customer_id: customer_id, subject_id: product_id, context: [category]}}
filters:
  - {{name: cheap, type: expression, options: {{keep: "price < 100"}}}}
  - {{name: typo, type: expression, options: {{keep: "{keep}"}}}}
scoring:
  models: [{{id: m, type: column, options: {{column: {score}}}}}]
ranking: {{top_n: 100, per: program}}
channels: [{{type: email}}]
"""


@pytest.fixture
def program(tmp_path, monkeypatch):
    """Writes a source of 6 rows and returns a function writing the ``asks`` config."""
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(
        pa.table({
            "customer_id": [f"c{i}" for i in range(6)], "product_id": ["p1"] * 6,
            "category": ["books"] * 6, "price": [10.0, 20.0, 30.0, 500.0, 600.0, 700.0],
            "rating": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        }),
        data / "part-0.parquet",
    )  # fmt: skip

    def write(keep: str = "price > 0", score: str = "rating") -> str:
        configs = tmp_path / "configs"
        configs.mkdir(exist_ok=True)
        (configs / "asks.yaml").write_text(PROGRAM.format(data=data, keep=keep, score=score))
        return str(configs)

    return write


def runs(tmp_path) -> list[str]:
    with sqlite3.connect(tmp_path / "home" / "ceap.db") as con:
        return [s for (s,) in con.execute("SELECT status FROM runs ORDER BY started_at")]


def batch(config_dir: str) -> list[str]:
    return ["--program", "asks", "--mode", "batch", "--config-dir", config_dir]


def test_a_good_run_exits_0_and_records_ok(program, tmp_path, capsys):
    assert cli.main(batch(program())) == EXIT_OK
    assert "candidates" in capsys.readouterr().out
    assert runs(tmp_path) == ["ok"]


def test_every_row_failing_scoring_is_degraded_not_ok(program, tmp_path, capsys):
    assert cli.main(batch(program(score="category"))) == EXIT_DEGRADED
    out, err = capsys.readouterr()
    assert "DEGRADED: every row that reached scoring failed (3 dead letters)" in out
    assert "ran degraded" in err
    assert runs(tmp_path) == ["degraded"]


def test_a_filter_column_nobody_provides_is_refused_before_any_row_is_read(
    program, tmp_path, capsys
):
    # The first filter keeps 3 rows; even where it kept none, the typo must be found.
    code = cli.main(batch(program(keep="ratng > 0")))
    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    assert "filter typo reads 'ratng'" in err and "did you mean 'rating'?" in err
    assert "available: category, customer_id, event_time, price, product_id, rating" in err
    assert "Traceback" not in err
    assert runs(tmp_path) == ["failed"]


def test_a_model_column_nobody_provides_is_refused_too(program, capsys):
    assert cli.main(batch(program(score="ratin"))) == EXIT_FAILED
    assert "model m reads 'ratin'" in capsys.readouterr().err


def test_an_unknown_command_names_the_nearest_one(capsys):
    assert cli.main(["dispach"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown command 'dispach'" in err and "did you mean `run.py dispatch`?" in err
    assert "--program is required" not in err


def test_help_lists_every_subcommand_with_a_line(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    assert "3 ran but degraded" in out


def test_dispatch_of_an_unknown_channel_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CEAP_HOME", str(tmp_path))
    assert cli.main(["dispatch", "--channel", "emial"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown channel 'emial'" in err and "email" in err and "sms" in err


def test_report_of_an_unknown_program_fails_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CEAP_HOME", str(tmp_path))
    output = tmp_path / "r.html"
    assert cli.main(["report", "--program", "nosuch", "--output", str(output)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "unknown program 'nosuch'" in err and "reviews" in err
    assert not output.exists()


def test_a_dynamodb_store_without_credentials_names_the_store_and_the_fix(
    tmp_path, monkeypatch, capsys
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for
    assert cli.main(["dispatch", "--store", "dynamodb://ceap_"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "store dynamodb://ceap_: no AWS credentials found" in err
    assert "AWS_ACCESS_KEY_ID" in err and "Unable to locate credentials" not in err


def test_an_enrichment_without_columns_brings_its_whole_table(program, tmp_path, capsys):
    """`columns:` omitted means every column of the lookup table: a filter reading one of
    them is not a typo."""
    lookup = tmp_path / "customers"
    lookup.mkdir()
    pq.write_table(
        pa.table({"customer_id": ["c0", "c1"], "tier": ["gold", "tin"]}), lookup / "p.parquet"
    )
    config_dir = program(keep="tier != 'tin'")
    path = tmp_path / "configs" / "asks.yaml"
    path.write_text(path.read_text().replace(
        "filters:", f"enrich: [{{type: parquet, key: customer_id, options: {{path: {lookup}}}}}]\nfilters:"
    ))  # fmt: skip
    assert cli.main(batch(config_dir)) == EXIT_OK, capsys.readouterr().err
    assert runs(tmp_path) == ["ok"]


def test_a_bad_store_spec_is_wrong_usage(capsys):
    assert cli.main(["--program", "reviews", "--store", "postgres://db"]) == EXIT_USAGE
    assert "unknown store 'postgres://db'" in capsys.readouterr().err


def test_a_failure_without_a_message_names_its_type(program, tmp_path, monkeypatch, capsys):
    """Beam's dry-run result raised a bare ``NotImplementedError()``: the user read
    "failed: " and nothing after it."""
    import pipelines.batch

    def broken(*_args):
        raise NotImplementedError

    monkeypatch.setattr(pipelines.batch, "build_pipeline", broken)
    assert cli.main(batch(program())) == EXIT_FAILED
    assert "ceap: program asks failed: NotImplementedError" in capsys.readouterr().err
    assert runs(tmp_path) == ["failed"]
