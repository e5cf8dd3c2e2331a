"""``run.py train`` and the model registry: fit on an outcomes table, version, load by id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ceap.errors import ConfigError, ModelError
from configs.programs import load_by_name
from configs.schema import program_paths
from scorers import registry
from scorers.cli import main as train_cli
from scorers.sklearn import SklearnScorer, sha256_of
from scorers.training import train
from tests.scorers.conftest import CONFIG, FEATURES

ROOT = Path(__file__).resolve().parents[2]


def test_train_publishes_versions_with_metadata_and_a_latest_pointer(
    outcomes, config_dir, tmp_path
):
    models = tmp_path / "models"
    meta = train("reviews", config_dir, str(models), outcomes=str(outcomes))
    path = models / "reviews" / "reviews_lr" / "1" / "model.skops"
    assert meta["path"] == str(path) and meta["version"] == 1
    assert meta["sha256"] == sha256_of(path)
    assert meta["features"] == FEATURES
    assert meta["metrics"]["auc"] > 0.65  # the sample's outcomes carry a real signal
    assert 0 < meta["metrics"]["log_loss"] < 0.69
    assert meta["training_data"]["rows"] == 3_000
    assert meta["training_data"]["from"] < meta["training_data"]["to"]
    assert {"created_at", "sklearn_version", "skops_version"} <= set(meta)
    assert json.loads((path.parent / "model.skops.json").read_text()) == meta

    again = train(
        "reviews", config_dir, str(models), outcomes=str(outcomes), estimator="hist_gbm", force=True
    )  # scores lower than v1 here: forced (scorers/promotion.py)
    assert again["version"] == 2 and again["estimator"] == "hist_gbm"
    assert (models / "reviews" / "reviews_lr" / "latest").read_text().strip() == "2"
    assert registry.versions(str(models), "reviews", "reviews_lr") == [1, 2]


def test_a_model_loads_by_latest_pointer_or_version_dir_and_is_verified(
    outcomes, config_dir, tmp_path, ctx
):
    models = tmp_path / "models"
    train("reviews", config_dir, str(models), outcomes=str(outcomes))
    batch = pa.RecordBatch.from_pydict(
        {"engagement_score": [0.9, 0.1], "trust_score": [0.9, 0.5], "price": [40.0, None]}
    )
    by_latest = SklearnScorer(
        {"path": f"{models}/reviews/reviews_lr/latest", "features": FEATURES}, "reviews_lr", ctx
    )
    by_dir = SklearnScorer(
        {"path": f"{models}/reviews/reviews_lr/1", "features": FEATURES}, "reviews_lr", ctx
    )
    a, b = by_latest.score(batch), by_dir.score(batch)
    np.testing.assert_allclose(a, b)
    assert a[0] > a[1] and np.all((a > 0) & (a < 1))  # engaged customers respond more

    model = models / "reviews" / "reviews_lr" / "1" / "model.skops"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match the expected"):
        by_latest.setup()
    with pytest.raises(ModelError, match="does not exist"):
        SklearnScorer(
            {"path": f"{models}/reviews/other/latest", "features": FEATURES}, "x", ctx
        ).setup()


def test_model_paths_relative_to_ceap_home(outcomes, config_dir, tmp_path, ctx, monkeypatch):
    monkeypatch.setenv("CEAP_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    meta = train("reviews", config_dir, outcomes=str(outcomes))  # default: $CEAP_HOME/models
    assert meta["path"].startswith(str(tmp_path / "home" / "models"))
    scorer = SklearnScorer(
        {"path": "models/reviews/reviews_lr/latest", "features": FEATURES}, "m", ctx
    )
    scorer.setup()


def test_train_errors_name_what_is_wrong(outcomes, config_dir, tmp_path):
    with pytest.raises(ConfigError, match="no column"):
        train("reviews", config_dir, str(tmp_path), outcomes=str(outcomes), features=["nope"])
    with pytest.raises(ConfigError, match="cannot be read"):
        train("reviews", config_dir, str(tmp_path), outcomes=str(tmp_path / "absent"))
    (config_dir / "reviews.yaml").write_text(
        CONFIG.replace("type: sklearn", "type: column").replace(
            "options: {path: unused.skops, features: [engagement_score, trust_score, price]}",
            "options: {column: x}",
        )
    )
    with pytest.raises(ConfigError, match="pass --features"):
        train("reviews", config_dir, str(tmp_path), outcomes=str(outcomes))


def test_cli_prints_the_metrics_and_the_config_line(outcomes, config_dir, tmp_path, capsys):
    code = train_cli(["--program", "reviews", "--config-dir", str(config_dir), "--outcomes",
                      str(outcomes), "--registry", str(tmp_path / "m")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "holdout AUC    0." in out and "log-loss" in out and "sha256" in out
    assert f"path: {tmp_path / 'm'}/reviews/reviews_lr/latest" in out
    assert train_cli(["--program", "absent", "--config-dir", str(config_dir)]) == 1


@pytest.mark.parametrize("path", program_paths(ROOT / "configs"), ids=lambda p: p.stem)
def test_seed_programs_ship_a_pinned_trained_model(path, ctx, monkeypatch):
    monkeypatch.chdir(ROOT)
    program = load_by_name(path.stem, ROOT / "configs")
    entry = next(m for m in program.scoring.models if m.type == "sklearn")
    assert entry.options.sha256 and entry.traffic == 90
    scorer = SklearnScorer(entry.options, entry.id, ctx)
    scorer.setup()  # the pinned hash matches the committed file
    meta = registry.metadata(entry.options.path)
    assert meta["features"] == entry.options.features and meta["sha256"] == entry.options.sha256
    assert meta["metrics"]["auc"] > 0.65
    assert Path(ROOT, entry.options.path).stat().st_size < 16_000
