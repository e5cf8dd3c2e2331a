"""Shared by the training and registry tests: a reviews program with an sklearn arm, and
the sample warehouse's labelled outcomes to fit it on."""

from __future__ import annotations

from pathlib import Path

import pytest

from sample import generate_warehouse

FEATURES = ["engagement_score", "trust_score", "price"]
CONFIG = """
program: reviews
action: review
subject_type: product
source: {type: parquet, options: {path: unused}}
fields: {customer_id: customer_id, subject_id: product_id}
scoring:
  models:
    - {id: reviews_lr, type: sklearn, options: {path: unused.skops, features: [engagement_score, trust_score, price]}, traffic: 50}
    - {id: rule, type: column, options: {column: engagement_score}, traffic: 50}
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wh")
    generate_warehouse(root, rows=6_000, seed=3)
    return root / "outcomes"


@pytest.fixture
def config_dir(tmp_path) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "reviews.yaml").write_text(CONFIG)
    return folder
