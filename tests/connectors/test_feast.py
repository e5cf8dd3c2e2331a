"""``enrich: [{type: feast}]`` against a real local Feast repo built by each test: a
Parquet file offline store, a SQLite online store, one entity and one feature view applied
and materialized. Lookups in batches, a feature service, an inline config, the enrich step
and a whole batch program; unknown keys keep nulls. Skipped where feast is not installed
(``pip install "ceap[feast]"``); importing it must leave the process's Prometheus alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ceap.context import RunContext
from ceap.errors import ConfigError, ConnectorError
from configs.schema import EnrichConfig, parse_program, read_yaml
from connectors.feast import FeastConnector, load_feast
from pipelines.batch import build_pipeline
from stores.spec import open_store
from tests.conftest import NOW
from transforms import enrichment

try:  # imported the connector's way: a bare `import feast` repoints Prometheus (load_feast)
    load_feast()
except ConfigError:
    pytest.skip('feast is not installed: pip install "ceap[feast]"', allow_module_level=True)

FEATURE_STORE_YAML = """
project: ceap_test
registry: data/registry.db
provider: local
online_store: {type: sqlite, path: data/online.db}
offline_store: {type: file}
entity_key_serialization_version: 3
"""
FEATURES = ["customer_stats:trust_score", "customer_stats:opted_out", "customer_stats:region"]
COLUMNS = ["trust_score", "opted_out", "region"]


@pytest.fixture
def repo(tmp_path) -> Path:
    """A Feast repo knowing customers c1 and c2 (c1 twice: the newer row wins)."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Bool, Float64, String

    root = tmp_path / "feature_repo"
    (root / "data").mkdir(parents=True)
    (root / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    # Feast keeps rows within the view's ttl of the wall clock: stamp them just before now.
    now = pd.Timestamp.now(tz="UTC").floor("s")
    pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c1"],
            "trust_score": [0.1, 0.2, 0.9],
            "opted_out": [True, True, False],
            "region": ["us", "us", "eu"],
            "event_timestamp": [now - pd.Timedelta(hours=h) for h in (3, 2, 1)],
        }
    ).to_parquet(root / "data" / "customers.parquet")

    customer = Entity(name="customer", join_keys=["customer_id"])
    stats = FeatureView(
        name="customer_stats", entities=[customer], ttl=timedelta(days=1),
        schema=[Field(name="trust_score", dtype=Float64), Field(name="opted_out", dtype=Bool),
                Field(name="region", dtype=String)],
        source=FileSource(path=str(root / "data" / "customers.parquet"),
                          timestamp_field="event_timestamp"),
    )  # fmt: skip
    service = FeatureService(name="customer_features", features=[stats[["trust_score"]]])
    store = FeatureStore(repo_path=str(root))
    store.apply([customer, stats, service])
    store.materialize(
        start_date=(now - pd.Timedelta(days=1)).to_pydatetime(), end_date=now.to_pydatetime()
    )
    return root


def test_lookup_in_batches_returns_known_keys_as_text(repo):
    connector = FeastConnector(
        {"repo_path": str(repo), "join_key": "customer_id", "features": FEATURES, "batch_size": 2}
    )
    found = connector.lookup(["c1", "c9", "c2"], COLUMNS)
    assert found == {
        "c1": {"trust_score": "0.9", "opted_out": "false", "region": "eu"},
        "c2": {"trust_score": "0.2", "opted_out": "true", "region": "us"},
    }


def test_feature_service_with_an_inline_config(repo):
    options = {
        "config": read_yaml(FEATURE_STORE_YAML), "repo_path": str(repo),
        "join_key": "customer_id", "feature_service": "customer_features",
    }  # fmt: skip
    connector = FeastConnector(options)
    assert connector.lookup(["c2", "c9"], ["trust_score"]) == {"c2": {"trust_score": "0.2"}}
    with pytest.raises(ConfigError, match=r"no column\(s\) \['region'\]; they have: trust_score"):
        connector.lookup(["c2"], ["region"])


def test_yaml_file_paths_resolve_against_its_directory(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repo: relative paths in the file must not use cwd
    connector = FeastConnector(
        {"fs_yaml_file": str(repo / "feature_store.yaml"), "join_key": "customer_id",
         "features": FEATURES[:1]}
    )  # fmt: skip
    assert connector.lookup(["c1"], ["trust_score"]) == {"c1": {"trust_score": "0.9"}}


def test_options_are_checked_at_config_load(repo):
    program = """
program: p
action: review
subject_type: product
source: {type: parquet, options: {path: x}}
fields: {customer_id: customer_id, subject_id: product_id}
enrich:
  - {type: feast, key: customer_id, options: {repo_path: x, join_key: customer_id}, columns: [a]}
scoring: {models: [{id: m, type: column, options: {column: a}}]}
"""
    with pytest.raises(ConfigError, match=r"enrich\[0\]\.options.*exactly one of `features`"):
        parse_program(read_yaml(program))
    with pytest.raises(ConfigError, match="feast repo 'nowhere'"):
        FeastConnector({"repo_path": "nowhere", "join_key": "k", "features": ["v:f"]}).client()


@pytest.mark.slow
def test_loading_feast_leaves_prometheus_in_memory_and_its_env_alone():
    code = (
        "import os, prometheus_client.values as v\n"
        "from connectors.feast import load_feast\n"
        "load_feast()\n"
        "assert not [k for k in os.environ if k.startswith('PROMETHEUS_MULTIPROC')], os.environ\n"
        "assert 'Mmaped' not in v.ValueClass.__name__, v.ValueClass\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_MULTIPROC")}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert not [k for k in os.environ if k.startswith("PROMETHEUS_MULTIPROC")]


def test_int64_join_keys_are_sent_as_integers():
    options = {"repo_path": "r", "join_key": "k", "key_type": "int64", "features": ["v:f"]}
    connector = FeastConnector(options)
    assert connector._entity_value("1001") == 1001
    with pytest.raises(ConnectorError, match="key 'c1' is not an integer"):
        connector._entity_value("c1")


def test_enrich_step_joins_features_by_key(repo):
    spec = EnrichConfig(
        type="feast", key="customer_id", columns=COLUMNS,
        options=FeastConnector.Options(repo_path=str(repo), join_key="customer_id",
                                       features=FEATURES),
    )  # fmt: skip
    batch = pa.RecordBatch.from_pydict(
        {"customer_id": ["c1", "c2", "c9", None], "region": ["xx"] * 4}
    )
    with TestPipeline() as p:
        rows = (
            p | beam.Create([batch]) | enrichment.Enrich([spec], "reviews")
            | beam.FlatMap(lambda b: [tuple(r.values()) for r in b.select(["customer_id", *COLUMNS]).to_pylist()])
        )  # fmt: skip
        assert_that(
            rows,
            equal_to(
                [
                    ("c1", 0.9, False, "eu"),
                    ("c2", 0.2, True, "us"),
                    ("c9", None, None, None),
                    (None, None, None, None),
                ]
            ),
        )


PROGRAM = """
program: feast_reviews
action: review
subject_type: product
source: {{type: parquet, options: {{path: {source}}}}}
fields: {{customer_id: customer_id, subject_id: product_id, event_time: delivered_at,
          context: [region, opted_out]}}
enrich:
  - type: feast
    key: customer_id
    options: {{repo_path: {repo}, join_key: customer_id, features: {features}}}
    columns: [trust_score, opted_out, region]
filters:
  - {{type: expression, options: {{keep: "trust_score is None or trust_score >= 0.3"}}}}
scoring: {{models: [{{id: m, type: column, options: {{column: engagement_score}}}}]}}
"""


def test_batch_program_enriches_from_feast(repo, tmp_path):
    source = tmp_path / "deliveries"
    source.mkdir()
    pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c9"],
            "product_id": ["p1", "p2", "p3"],
            "delivered_at": [pd.Timestamp(NOW) - pd.Timedelta(days=1)] * 3,
            "engagement_score": [0.5, 0.6, 0.7],
        }
    ).to_parquet(source / "part-0.parquet")
    text = PROGRAM.format(source=source, repo=repo, features=json.dumps(FEATURES))
    program = parse_program(read_yaml(text))
    store = "sqlite:///" + str(tmp_path / "ceap.db")
    ctx = RunContext(program=program.program, now=NOW, store=store)
    build_pipeline(program, ctx, PipelineOptions([])).run().wait_until_finish()

    candidates = open_store(store).table("candidates").to_pylist()
    got = {(c["customer_id"], c["subject_id"]): json.loads(c["context"]) for c in candidates}
    assert got == {  # c2 (trust 0.2) filtered out; c9 unknown to Feast: nulls, kept
        ("c1", "p1"): {"region": "eu", "opted_out": False},
        ("c9", "p3"): {"region": None, "opted_out": None},
    }
