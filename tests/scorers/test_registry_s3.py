"""The model registry on s3:// for real: moto's S3 server on loopback, Beam's own S3
filesystem (boto3). Models are trained into the bucket through the Python API and through
``python run.py train`` as a user types it, loaded by id with their sha256 checked, refused
when the object was tampered with, and used by a batch run whose config names the bucket.
The objects are read back with boto3, never through the code under test."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ceap.context import RunContext
from ceap.errors import ModelError
from configs.schema import parse_program, read_yaml
from pipelines.batch import run_program
from scorers import registry
from scorers.cli import main as train_cli
from scorers.sklearn import SklearnScorer
from scorers.training import train
from tests.pipelines.test_export_s3 import keys, s3_flags
from tests.scorers.conftest import FEATURES
from tests.scorers.test_registry_publish import check, race

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "reviews/reviews_lr"
BATCH = """
program: reviews
action: review
subject_type: product
source: {{type: parquet, options: {{path: {rows}}}}}
fields: {{customer_id: customer_id, subject_id: product_id}}
scoring:
  models:
    - {{id: reviews_lr, type: sklearn, traffic: 100, options: {{path: {model}, features: {features}}}}}
ranking: {{top_n: 1000, per: program}}
channels: [{{type: in_app}}]
"""


@pytest.fixture
def bucket(moto_endpoint):
    """A boto3 client on the moto server and a fresh bucket of the test's own."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"ceap-models-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return client, name


@pytest.fixture
def endpoint_env(moto_endpoint, monkeypatch) -> str:
    """The endpoint as boto3 reads it from the environment (no --s3_endpoint_url)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def body(client, name: str, key: str) -> bytes:
    return client.get_object(Bucket=name, Key=key)["Body"].read()


def scorer(path: str, ctx) -> SklearnScorer:
    return SklearnScorer({"path": path, "features": FEATURES}, "reviews_lr", ctx)


BATCH_ROWS = pa.RecordBatch.from_pydict(
    {"engagement_score": [0.9, 0.1], "trust_score": [0.9, 0.5], "price": [40.0, None]}
)


def test_train_publishes_versions_to_s3_and_loads_them_by_id(
    outcomes, config_dir, bucket, endpoint_env, ctx
):
    client, name = bucket
    root = f"s3://{name}/models"
    meta = train("reviews", config_dir, root, outcomes=str(outcomes))
    assert meta["path"] == f"{root}/{MODEL}/1/model.skops" and meta["version"] == 1
    assert keys(client, name) == [
        f"models/{MODEL}/1/.claim", f"models/{MODEL}/1/model.skops",
        f"models/{MODEL}/1/model.skops.json", f"models/{MODEL}/latest",
    ]  # fmt: skip
    blob = body(client, name, f"models/{MODEL}/1/model.skops")
    assert hashlib.sha256(blob).hexdigest() == meta["sha256"]
    assert json.loads(body(client, name, f"models/{MODEL}/1/model.skops.json")) == meta
    assert meta["features"] == FEATURES and meta["metrics"]["auc"] > 0.65
    assert meta["training_data"]["rows"] == 3_000

    again = train("reviews", config_dir, root, outcomes=str(outcomes), holdout=0.5, force=True)
    assert again["version"] == 2
    assert body(client, name, f"models/{MODEL}/latest") == b"2\n"
    assert registry.versions(root, "reviews", "reviews_lr") == [1, 2]
    assert registry.versions(root, "reviews", "absent") == []
    assert registry.metadata(again["path"]) == again

    latest = scorer(f"{root}/{MODEL}/latest", ctx).score(BATCH_ROWS)
    v2_dir = scorer(f"{root}/{MODEL}/2", ctx).score(BATCH_ROWS)
    v2_dir_slash = scorer(f"{root}/{MODEL}/2/", ctx).score(BATCH_ROWS)
    v1_file = scorer(f"{root}/{MODEL}/1/model.skops", ctx).score(BATCH_ROWS)
    np.testing.assert_allclose(latest, v2_dir)
    np.testing.assert_allclose(latest, v2_dir_slash)
    assert not np.allclose(latest, v1_file)  # latest is v2, fitted on fewer rows
    for scores in (latest, v1_file):
        assert scores[0] > scores[1] and np.all((scores > 0) & (scores < 1))


def test_a_folder_marker_or_a_stray_key_is_no_version(outcomes, config_dir, bucket, endpoint_env):
    """The S3 console's "Create folder" and a half-copied prefix must not count as versions:
    the next publish is still <max>+1 of the published models."""
    client, name = bucket
    root = f"s3://{name}/models"
    client.put_object(Bucket=name, Key=f"models/{MODEL}/7/", Body=b"")
    client.put_object(Bucket=name, Key=f"models/{MODEL}/8/notes.txt", Body=b"x")
    assert registry.versions(root, "reviews", "reviews_lr") == []
    assert train("reviews", config_dir, root, outcomes=str(outcomes))["version"] == 1


def test_train_reads_its_outcomes_from_s3_too(outcomes, config_dir, bucket, endpoint_env):
    """Outcomes on S3 are read by pyarrow, which takes the endpoint from the environment as
    boto3 does: a whole warehouse-to-registry run on object storage."""
    client, name = bucket
    for part in sorted(outcomes.rglob("*.parquet")):
        key = f"warehouse/outcomes/{part.relative_to(outcomes).as_posix()}"
        client.put_object(Bucket=name, Key=key, Body=part.read_bytes())
    source = f"s3://{name}/warehouse/outcomes"
    meta = train("reviews", config_dir, f"s3://{name}/models", outcomes=source)
    local = train("reviews", config_dir, f"s3://{name}/models", outcomes=str(outcomes))
    assert meta["training_data"]["path"] == source
    assert (meta["training_data"]["rows"], meta["metrics"]) == (
        local["training_data"]["rows"], local["metrics"],
    )  # fmt: skip


@pytest.mark.slow
def test_cli_trains_to_s3_with_the_endpoint_from_the_environment(
    outcomes, config_dir, bucket, moto_endpoint
):
    """``python run.py train`` as a user runs it, the endpoint and fake credentials in the
    environment (moto_endpoint sets the credentials)."""
    client, name = bucket
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_endpoint}
    proc = subprocess.run(
        [sys.executable, "run.py", "train", "--program", "reviews", "--config-dir",
         str(config_dir), "--outcomes", str(outcomes), "--registry", f"s3://{name}/models"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"artifact       s3://{name}/models/{MODEL}/1/model.skops" in proc.stdout
    assert f"path: s3://{name}/models/{MODEL}/latest" in proc.stdout
    meta = json.loads(body(client, name, f"models/{MODEL}/1/model.skops.json"))
    blob = body(client, name, f"models/{MODEL}/1/model.skops")
    assert hashlib.sha256(blob).hexdigest() == meta["sha256"]
    assert f"sha256         {meta['sha256']}" in proc.stdout


def test_cli_takes_beams_s3_flags(outcomes, config_dir, bucket, moto_endpoint, monkeypatch, capsys):
    """The same flags as ``run.py export`` and pipeline runs, with nothing in the environment."""
    client, name = bucket
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    args = ["--program", "reviews", "--config-dir", str(config_dir), "--outcomes", str(outcomes),
            "--registry", f"s3://{name}/models", *s3_flags(moto_endpoint)]  # fmt: skip
    assert train_cli(args) == 0, capsys.readouterr().err
    assert train_cli([*args, "--holdout", "0.5", "--force"]) == 0
    assert body(client, name, f"models/{MODEL}/latest") == b"2\n"
    assert "v2 (logistic)" in capsys.readouterr().out


def test_cli_names_a_missing_bucket(outcomes, config_dir, endpoint_env, capsys):
    args = ["--program", "reviews", "--config-dir", str(config_dir), "--outcomes", str(outcomes),
            "--registry", "s3://no-such-bucket-ceap/models"]  # fmt: skip
    assert train_cli(args) == 1
    err = capsys.readouterr().err
    assert "ceap: train reviews: cannot" in err and "s3://no-such-bucket-ceap/models" in err


@pytest.mark.slow
def test_a_tampered_model_in_the_bucket_is_refused(outcomes, config_dir, bucket, endpoint_env, ctx):
    client, name = bucket
    root = f"s3://{name}/models"
    train("reviews", config_dir, root, outcomes=str(outcomes))
    train("reviews", config_dir, root, outcomes=str(outcomes), holdout=0.5, force=True)
    key = f"models/{MODEL}/2/model.skops"
    # Another valid skops model (version 1's) in version 2's place: it would load fine,
    # but it is not the model whose hash the registry recorded.
    client.put_object(
        Bucket=name, Key=key, Body=body(client, name, f"models/{MODEL}/1/model.skops")
    )
    with pytest.raises(ModelError, match=f"model {root}/{MODEL}/2/model.skops: sha256 .* does not match the expected"):  # fmt: skip
        scorer(f"{root}/{MODEL}/latest", ctx).setup()
    client.put_object(Bucket=name, Key=key, Body=b"PK\x03\x04 not a model")
    with pytest.raises(ModelError, match="does not match the expected"):
        scorer(f"{root}/{MODEL}/2", ctx).setup()
    scorer(f"{root}/{MODEL}/1", ctx).setup()  # the untouched version still loads

    client.delete_object(Bucket=name, Key=f"models/{MODEL}/1/model.skops.json")
    with pytest.raises(ModelError, match="is unverified: pin options.sha256"):
        scorer(f"{root}/{MODEL}/1", ctx).setup()
    with pytest.raises(ModelError, match="does not exist"):
        scorer(f"{root}/reviews/other/latest", ctx).setup()
    client.put_object(Bucket=name, Key=f"models/{MODEL}/latest", Body=b"two\n")
    with pytest.raises(ModelError, match="holds 'two', not a version number"):
        scorer(f"{root}/{MODEL}/latest", ctx).setup()


@pytest.mark.parametrize("how", ["environment", "beam_flags"])
def test_batch_run_scores_with_the_model_on_s3(
    how, outcomes, config_dir, bucket, moto_endpoint, tmp_path, monkeypatch
):
    """A program whose sklearn model is ``s3://.../latest``: the batch run loads it inside
    the pipeline (the endpoint from the environment, or from Beam's --s3_endpoint_url) and
    stores one scored candidate per row."""
    client, name = bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    meta = train("reviews", config_dir, f"s3://{name}/models", outcomes=str(outcomes))
    n = 300
    rng = np.random.default_rng(7)
    pq.write_table(
        pa.table({
            "customer_id": [f"c{i:04d}" for i in range(n)], "product_id": [f"p{i}" for i in range(n)],
            "engagement_score": rng.uniform(0, 1, n), "trust_score": rng.uniform(0.3, 1, n),
            "price": [None if i % 10 == 0 else float(5 + i % 90) for i in range(n)],
        }),
        tmp_path / "rows.parquet",
    )  # fmt: skip
    text = BATCH.format(rows=tmp_path / "rows.parquet", model=f"s3://{name}/models/{MODEL}/latest",
                        features=json.dumps(FEATURES))  # fmt: skip
    config = parse_program(read_yaml(text), "reviews.yaml")
    beam_args = []
    if how == "beam_flags":
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        beam_args = s3_flags(moto_endpoint)
    db = tmp_path / "ceap.db"
    now = datetime(2026, 11, 1, tzinfo=UTC)
    funnel = run_program(config, RunContext(program="reviews", now=now, store=f"sqlite:///{db}"),
                         beam_args)  # fmt: skip

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT model_id, score FROM candidates").fetchall()
    assert len(rows) == n and {m for m, _ in rows} == {"reviews_lr"}
    scores = np.array([s for _, s in rows])
    assert np.all((scores > 0) & (scores < 1)) and scores.std() > 0.01
    arm = funnel.arm_summary()["reviews_lr"]
    assert arm["candidates"] == n and 0 < arm["mean_score"] < 1
    assert meta["metrics"]["base_rate"] / 3 < scores.mean() < 3 * meta["metrics"]["base_rate"]


@pytest.mark.slow
def test_two_publishers_at_once_on_s3_get_two_versions(bucket, endpoint_env, monkeypatch):
    """Both list the bucket before either writes; S3's conditional PUT of the claim gives
    each its own version."""
    client, name = bucket
    root = f"s3://{name}/models"
    published = race(monkeypatch, root, publishers=3)
    check(published)
    assert body(client, name, "models/reviews/lr/latest") == b"3\n"


def test_a_version_claimed_on_s3_is_not_taken_again(bucket, endpoint_env):
    client, name = bucket
    root = f"s3://{name}/models"
    client.put_object(Bucket=name, Key="models/reviews/lr/1/.claim", Body=b"someone")
    meta = registry.publish(root, "reviews", "lr", b"model", {})
    assert meta["version"] == 2
    assert body(client, name, "models/reviews/lr/1/.claim") == b"someone"
