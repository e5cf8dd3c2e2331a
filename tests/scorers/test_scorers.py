"""Scorers called directly: the column scorer, the sklearn scorer's verified loading, and
the experiment arms' deterministic hashing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ceap.errors import ConfigError, ModelError
from scorers.column import ColumnScorer
from scorers.experiments import BUCKETS, assign, bounds, bucket, buckets
from scorers.sklearn import SklearnScorer, sha256_of

FEATURES = ["engagement_score", "price", "prime"]


def features(n: int = 6) -> pa.RecordBatch:
    rng = np.random.default_rng(0)
    return pa.RecordBatch.from_pydict(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "engagement_score": rng.random(n),
            "price": pa.array(rng.integers(1, 100, n), pa.int64()),
            "prime": rng.random(n) > 0.5,
        }
    )


# --- column --------------------------------------------------------------------------------


def test_column_scorer(ctx):
    batch = pa.RecordBatch.from_pydict({"p": pa.array([1, None, 3], pa.int32())})
    scores = ColumnScorer({"column": "p"}, "rule_v1", ctx).score(batch)
    assert scores.dtype == np.float64
    assert scores[0] == 1.0 and np.isnan(scores[1]) and scores[2] == 3.0
    with pytest.raises(ConfigError, match="scorer rule_v1: no column 'q'"):
        ColumnScorer({"column": "q"}, "rule_v1", ctx).score(batch)


# --- sklearn -------------------------------------------------------------------------------


class Flatterer(BaseEstimator, ClassifierMixin):
    """A custom class: skops must refuse to load it unless trusted."""

    def fit(self, x, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, x):
        return np.tile([0.1, 0.9], (len(x), 1))


@pytest.fixture
def model_file(tmp_path):
    batch = features(40)
    x = np.column_stack(
        [batch.column(f).to_numpy(zero_copy_only=False).astype(float) for f in FEATURES]
    )
    y = (x[:, 0] > 0.5).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    path = tmp_path / "reviews_v1.skops"
    sio.dump(model, path)
    return path, model, x


def sklearn_scorer(ctx, path, **options):
    return SklearnScorer({"path": str(path), "features": FEATURES, **options}, "reviews_v1", ctx)


def test_sklearn_loads_with_a_pinned_hash_and_scores_batches(ctx, model_file):
    path, model, x = model_file
    scorer = sklearn_scorer(ctx, path, sha256=sha256_of(path))
    scorer.setup()
    scores = scorer.score(features(40))
    np.testing.assert_allclose(scores, model.predict_proba(x)[:, 1])
    assert scores.shape == (40,)


def test_sklearn_loads_with_the_registry_sidecar(ctx, model_file):
    path, model, x = model_file
    (path.parent / (path.name + ".json")).write_text(json.dumps({"sha256": sha256_of(path)}))
    scorer = sklearn_scorer(ctx, path)
    scorer.setup()
    np.testing.assert_allclose(scorer.score(features(40)), model.predict_proba(x)[:, 1])


def test_sklearn_refuses_a_wrong_hash(ctx, model_file):
    path, _, _ = model_file
    (path.parent / (path.name + ".json")).write_text(json.dumps({"sha256": sha256_of(path)}))
    with pytest.raises(ModelError, match="does not match the expected"):
        sklearn_scorer(ctx, path, sha256="0" * 64).setup()  # a pin wins over the sidecar
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ModelError, match="does not match the expected"):
        sklearn_scorer(ctx, path).setup()


def test_sklearn_refuses_an_unverified_or_missing_file(ctx, model_file, tmp_path):
    path, _, _ = model_file
    with pytest.raises(ModelError, match="is unverified: pin options.sha256"):
        sklearn_scorer(ctx, path).setup()
    with pytest.raises(ModelError, match="does not exist"):
        sklearn_scorer(ctx, tmp_path / "absent.skops", sha256="0" * 64).setup()


def _custom_class():
    return Flatterer().fit(np.zeros((2, 3)), [0, 1])


def _builtin_function():
    # a builtin function inside a model would be called on the features at scoring time
    model = make_pipeline(FunctionTransformer(eval), LogisticRegression())
    model.steps[1][1].fit(np.eye(3), [0, 1, 0])
    return model


@pytest.mark.parametrize(
    ("make", "untrusted"), [(_custom_class, "Flatterer"), (_builtin_function, "builtins.eval")]
)
def test_sklearn_refuses_untrusted_types(ctx, tmp_path, make, untrusted):
    path = tmp_path / "custom.skops"
    sio.dump(make(), path)
    with pytest.raises(ModelError, match=f"types CEAP does not train: .*{untrusted}"):
        sklearn_scorer(ctx, path, sha256=sha256_of(path)).setup()


def test_sklearn_loads_a_custom_type_listed_in_trusted(ctx, tmp_path):
    path = tmp_path / "custom.skops"
    sio.dump(Flatterer().fit(np.zeros((2, 3)), [0, 1]), path)
    trusted = [t for t in sio.get_untrusted_types(file=path) if t.endswith("Flatterer")]
    scorer = sklearn_scorer(ctx, path, sha256=sha256_of(path), trusted=trusted)
    scorer.setup()
    assert scorer.score(features(3)).tolist() == [0.9, 0.9, 0.9]


def test_sklearn_options_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sha256"):
        SklearnScorer.Options.model_validate(
            {"path": "m.skops", "features": ["a"], "sha256": "abc"}
        )
    with pytest.raises(ValidationError, match="features"):
        SklearnScorer.Options.model_validate({"path": "m.skops", "features": []})


def test_sklearn_missing_feature_names_the_model(ctx, model_file):
    path, _, _ = model_file
    scorer = sklearn_scorer(ctx, path, sha256=sha256_of(path))
    with pytest.raises(ConfigError, match=r"scorer reviews_v1: no feature column\(s\) \['prime'\]"):
        scorer.score(features(3).drop_columns(["prime"]))


# --- experiments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("salt", "customer_id", "expected"),
    [
        ("reviews", "c1", 3291),
        ("reviews", "c2", 4111),
        ("reviews", "12345", 5965),
        ("video_ratings", "c1", 9055),
        ("exp-2024", "customer-000042", 3346),
    ],
)
def test_bucket_vectors(salt, customer_id, expected):
    """murmur3_x86_32(f"{salt}:{customer_id}", seed 0, unsigned) % 10,000: the same on every
    machine and in every language, so these numbers must never change."""
    assert bucket(salt, customer_id) == expected


def test_buckets_of_a_column_match_one_by_one():
    ids = pa.array(["c1", "c2", "c1", "12345", "c2"])
    assert buckets("reviews", ids).tolist() == [3291, 4111, 3291, 5965, 4111]
    assert buckets("reviews", pa.array([12345])).tolist() == [5965]  # integer ids hash as text


def test_bounds():
    assert bounds([90, 10]).tolist() == [9000, 10000]
    assert bounds([33.3, 33.3, 33.4]).tolist() == [3330, 6660, 10000]
    assert bounds([100]).tolist() == [BUCKETS]


CUSTOMERS = pa.array([f"customer-{i}" for i in range(100_000)])


def test_a_90_10_split_is_within_one_percent():
    arms = assign("reviews", CUSTOMERS, [90, 10])
    share = np.bincount(arms, minlength=2) / len(CUSTOMERS)
    assert abs(share[0] - 0.9) < 0.01 and abs(share[1] - 0.1) < 0.01
    assert np.array_equal(arms, assign("reviews", CUSTOMERS, [90, 10]))  # deterministic
    other = assign("another_salt", CUSTOMERS, [90, 10])
    assert 0.75 < np.mean(arms == other) < 0.9  # a new salt reshuffles


def test_moving_90_10_to_50_50_moves_only_the_changed_bucket_range():
    before = assign("reviews", CUSTOMERS, [90, 10])
    after = assign("reviews", CUSTOMERS, [50, 50])
    b = buckets("reviews", CUSTOMERS)
    moved = before != after
    assert np.all(b[moved] >= 5000) and np.all(b[moved] < 9000)
    assert np.all(before[moved] == 0) and np.all(after[moved] == 1)
    assert np.all(after[before == 1] == 1)  # the treatment arm keeps everyone it had
    assert abs(moved.mean() - 0.4) < 0.01


def test_single_arm_and_zero_share_arms():
    assert set(assign("reviews", CUSTOMERS[:1000], [100]).tolist()) == {0}
    assert set(assign("reviews", CUSTOMERS[:1000], [0, 100]).tolist()) == {1}
    assert set(assign("reviews", CUSTOMERS[:1000], [100, 0]).tolist()) == {0}
