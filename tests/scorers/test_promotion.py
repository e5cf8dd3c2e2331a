"""The promotion gate of ``run.py train`` (scorers/promotion.py): a model that scores worse on
the holdout than the current ``latest`` is not published unless forced; the summary shows
both AUCs."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from ceap.errors import EXIT_DEGRADED
from scorers import registry
from scorers.cli import main as train_cli
from scorers.promotion import NotPromoted
from scorers.training import train


@pytest.fixture(scope="module")
def shuffled(outcomes, tmp_path_factory):
    """The same outcomes with the labels of the training rows shuffled (the newest 20%, the
    holdout, keep theirs): a model fitted on it learns noise and scores worse on the holdout."""
    import numpy as np

    table = ds.dataset(str(outcomes), format="parquet").to_table()
    table = table.take(pc.sort_indices(table, [("created_at", "ascending")]))
    labels = table.column("responded").to_numpy(zero_copy_only=False).copy()
    cut = int(len(labels) * 0.8)
    labels[:cut] = np.random.default_rng(7).permutation(labels[:cut])
    folder = tmp_path_factory.mktemp("shuffled")
    index = table.schema.get_field_index("responded")
    pq.write_table(table.set_column(index, "responded", [labels]), folder / "part.parquet")
    return folder


def trainer(config_dir, registry_dir):
    """``run.py train --program reviews`` on an outcomes table, into ``registry_dir``."""

    def cli(source, *flags: str) -> int:
        return train_cli(["--program", "reviews", "--config-dir", str(config_dir), "--outcomes",
                          str(source), "--registry", str(registry_dir), *flags])  # fmt: skip

    return cli


def latest(models) -> str:
    return (models / "reviews" / "reviews_lr" / "latest").read_text().strip()


def test_a_worse_model_keeps_latest_and_force_moves_it(outcomes, shuffled, config_dir, tmp_path):
    models = str(tmp_path / "models")
    first = train("reviews", config_dir, models, outcomes=str(outcomes))
    assert first["promotion"] == {"decision": "first", "current": None}

    with pytest.raises(NotPromoted) as kept:
        train("reviews", config_dir, models, outcomes=str(shuffled))
    assert kept.value.current["version"] == 1
    assert kept.value.metrics["auc"] < kept.value.current["auc"]
    assert latest(tmp_path / "models") == "1"
    assert registry.versions(models, "reviews", "reviews_lr") == [1]  # nothing published

    forced = train("reviews", config_dir, models, outcomes=str(shuffled), force=True)
    assert (forced["version"], latest(tmp_path / "models")) == (2, "2")
    assert forced["promotion"]["decision"] == "forced"
    assert forced["promotion"]["current"]["version"] == 1
    assert forced["metrics"]["auc"] < forced["promotion"]["current"]["auc"]

    again = train("reviews", config_dir, models, outcomes=str(outcomes))  # better than v2
    assert (again["version"], latest(tmp_path / "models")) == (3, "3")
    assert again["promotion"]["decision"] == "better"


def test_a_tie_moves_latest(outcomes, config_dir, tmp_path):
    models = str(tmp_path / "models")
    train("reviews", config_dir, models, outcomes=str(outcomes))
    same = train("reviews", config_dir, models, outcomes=str(outcomes))  # same data, same seed
    assert same["metrics"]["auc"] == same["promotion"]["current"]["auc"]
    assert (same["promotion"]["decision"], latest(tmp_path / "models")) == ("better", "2")


def test_an_unverifiable_current_model_is_replaced(outcomes, config_dir, tmp_path):
    """latest names a model whose bytes no longer match its recorded sha256: production cannot
    load it, so it is no evidence against the new one."""
    models = tmp_path / "models"
    first = train("reviews", config_dir, str(models), outcomes=str(outcomes))
    with open(first["path"], "ab") as f:
        f.write(b"tampered")
    new = train("reviews", config_dir, str(models), outcomes=str(outcomes))
    assert new["promotion"]["decision"] == "unrated" and latest(models) == "2"
    assert "sha256" in new["promotion"]["current"]["error"]


def test_cli_summary_shows_both_aucs_and_exit_codes(
    outcomes, shuffled, config_dir, tmp_path, capsys
):
    cli = trainer(config_dir, tmp_path / "m")
    assert cli(outcomes) == 0
    assert "(no current latest)" in capsys.readouterr().out

    assert cli(shuffled) == EXIT_DEGRADED
    out = capsys.readouterr().out
    assert "not published" in out and "current latest (v1)" in out
    assert "latest kept at v1" in out and "--force publishes it" in out

    assert cli(shuffled, "--force") == 0
    out = capsys.readouterr().out
    assert "new model, 0." in out and "current latest (v1)" in out
    assert "latest moved to the new model although its AUC is lower (--force)" in out
    assert "model reviews_lr v2" in out


@pytest.fixture(scope="module")
def one_class_holdout(outcomes, tmp_path_factory):
    """The same outcomes with every holdout row (the newest 20%) labelled 0: the new model's
    holdout AUC cannot be measured."""
    table = ds.dataset(str(outcomes), format="parquet").to_table()
    table = table.take(pc.sort_indices(table, [("created_at", "ascending")]))
    labels = table.column("responded").to_numpy(zero_copy_only=False).copy()
    labels[int(len(labels) * 0.8) :] = 0
    folder = tmp_path_factory.mktemp("one_class")
    index = table.schema.get_field_index("responded")
    pq.write_table(table.set_column(index, "responded", [labels]), folder / "part.parquet")
    return folder


def test_an_unmeasured_model_keeps_latest_unless_forced(
    outcomes, one_class_holdout, config_dir, tmp_path, capsys
):
    first = trainer(config_dir, tmp_path / "first")
    assert first(one_class_holdout) == 0  # nothing to keep: published, and it says how
    assert (
        "(the first; its AUC is unmeasured: the holdout has one class)" in capsys.readouterr().out
    )
    cli = trainer(config_dir, tmp_path / "m")
    assert cli(outcomes) == 0
    capsys.readouterr()
    assert cli(one_class_holdout) == EXIT_DEGRADED
    out = capsys.readouterr().out
    assert "holdout AUC cannot be measured" in out and "latest kept at v1" in out
    assert "n/a new model" in out and latest(tmp_path / "m") == "1"
    assert registry.versions(str(tmp_path / "m"), "reviews", "reviews_lr") == [1]
    assert cli(one_class_holdout, "--force") == 0
    assert "although its AUC is unmeasured (--force)" in capsys.readouterr().out
    assert latest(tmp_path / "m") == "2"


@pytest.mark.parametrize("share", ["1.5", "0", "-0.1", "abc"])
def test_a_holdout_outside_0_1_is_a_usage_error(share, config_dir, capsys):
    with pytest.raises(SystemExit) as done:
        train_cli(["--program", "reviews", "--config-dir", str(config_dir), "--holdout", share])
    assert done.value.code == 2 and "between 0 and 1" in capsys.readouterr().err
