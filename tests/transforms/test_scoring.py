"""``Score`` in a TestPipeline: experiment arms on every row, min_score, and model failures
as dead letters or, with ``fallback: cached``, the store's last score for the key."""

from __future__ import annotations

import hashlib
import json

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from configs.schema import parse_program, read_yaml
from scorers.base import Scorer
from scorers.experiments import assign
from transforms.funnel import Funnel
from transforms.scoring import Score


class FailingScorer(Scorer):
    """A model whose every call fails (a dead endpoint, a corrupt model)."""

    def score(self, batch):
        raise RuntimeError("model endpoint unreachable")


FAILING = f"{__name__}:FailingScorer"


def scoring(models: str, extra: str = ""):
    program = parse_program(
        read_yaml(f"""
program: reviews
action: review
subject_type: product
source: {{type: parquet, options: {{path: unused}}}}
fields: {{customer_id: customer_id, subject_id: subject_id}}
scoring:
  models: {models}
  {extra}
"""),
        "reviews.yaml",
    )
    return program.scoring


def batch_of(n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "subject_id": [f"p{i}" for i in range(n)],
            "propensity": [i / n for i in range(n)],
        }
    )


def rows(scored):
    return scored | "Rows" >> beam.FlatMap(
        lambda b: [
            (r["customer_id"], r["score"], r["model_id"], r["treatment"]) for r in b.to_pylist()
        ]
    )


def test_arms_are_recorded_and_min_score_is_counted(ctx):
    config = scoring(
        """
    - {id: rule_a, type: column, options: {column: propensity}, traffic: 50, treatment: control}
    - {id: rule_b, type: column, options: {column: propensity}, traffic: 50}""",
        "min_score: 0.25",
    )
    batch = batch_of(40)
    arms = assign("reviews", batch.column("customer_id"), [50, 50])
    assert 10 < arms.sum() < 30  # both arms are exercised
    expected = [
        (f"c{i}", i / 40, *(("rule_a", "control") if arm == 0 else ("rule_b", "rule_b")))
        for i, arm in enumerate(arms)
        if i / 40 >= 0.25
    ]
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | Score(config, ctx)
        assert_that(rows(out.scored), equal_to(expected), label="Scored")
        assert_that(out.dead_letter, equal_to([]), label="NoDeadLetters")
    funnel = Funnel.from_result("reviews", p.result)
    assert funnel.below_min_score == 10
    assert funnel.scored == {"rule_a": int((arms == 0).sum()), "rule_b": int((arms == 1).sum())}


def test_a_failing_model_dead_letters_its_rows_with_the_reason(ctx):
    config = scoring(
        f"""
    - {{id: rule, type: column, options: {{column: propensity}}, traffic: 50}}
    - {{id: broken, type: "{FAILING}", traffic: 50}}"""
    )
    batch = batch_of(20)
    arms = assign("reviews", batch.column("customer_id"), [50, 50])
    good = [(f"c{i}", i / 20, "rule", "rule") for i, a in enumerate(arms) if a == 0]
    bad = [f"c{i}" for i, a in enumerate(arms) if a == 1]
    reason = "model broken failed: RuntimeError: model endpoint unreachable"
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | Score(config, ctx)
        assert_that(rows(out.scored), equal_to(good), label="Scored")
        letters = out.dead_letter | beam.FlatMap(
            lambda t: [
                (
                    json.loads(r["row"])["customer_id"],
                    r["stage"],
                    r["reason"],
                    r["origin"].rsplit("|", 1)[0],
                )  # then the row's content hash: no positions here
                for r in t.to_pylist()
            ]
        )
        assert_that(
            letters,
            equal_to([(c, "score", reason, f"score:{c}|p{c[1:]}") for c in bad]),
            label="DeadLetters",
        )
    funnel = Funnel.from_result("reviews", p.result)
    assert funnel.dead_letters == {"score": len(bad)}
    assert funnel.scored == {"rule": len(good)}


def test_fallback_cached_uses_the_stored_score_for_the_key(ctx, add_candidates):
    add_candidates({"customer_id": "c1", "subject_id": "p1", "score": 0.42, "model_id": "old_v0"})
    add_candidates({"customer_id": "c2", "subject_id": "other", "score": 0.9})  # another key
    config = scoring(f'[{{id: broken, type: "{FAILING}"}}]', "fallback: cached")
    with TestPipeline() as p:
        out = p | beam.Create([batch_of(3)]) | Score(config, ctx)
        assert_that(rows(out.scored), equal_to([("c1", 0.42, "old_v0", "broken")]), label="Scored")
        reasons = out.dead_letter | beam.FlatMap(lambda t: t.column("reason").to_pylist())
        assert_that(
            reasons,
            equal_to(["model broken failed: RuntimeError: model endpoint unreachable"] * 2),
            label="Dead",
        )
    funnel = Funnel.from_result("reviews", p.result)
    assert funnel.fallback == 1
    assert funnel.dead_letters == {"score": 2}


def test_the_model_score_replaces_a_source_column_of_the_same_name(ctx):
    """A source that already carries ``score`` (or ``model_id``, ``treatment``) must not end
    up with the field twice: the model's output replaces it."""
    config = scoring("[{id: m, type: column, options: {column: score}}]")
    batch = (
        batch_of(3)
        .append_column("score", pa.array([0.9, 0.1, 0.5]))
        .append_column("treatment", pa.array(["x", "y", "z"]))
    )
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | Score(config, ctx)
        names = out.scored | "Names" >> beam.Map(
            lambda b: b.schema.names.count("score") + b.schema.names.count("treatment")
        )
        assert_that(names, equal_to([2]), label="Once")
        assert_that(
            rows(out.scored),
            equal_to([("c0", 0.9, "m", "m"), ("c1", 0.1, "m", "m"), ("c2", 0.5, "m", "m")]),
        )


def test_dead_letter_origins_are_one_per_row_and_stable():
    """Batch rows carry their place in the source split; rows read without one are told
    apart by content and by occurrence among identical rows, the same on every run."""
    from transforms.candidates import row_ids
    from transforms.scoring import _origins

    ids = row_ids("deliveries/part-0.parquet", pa.array([0, 1, 2]))
    placed = pa.table({"customer_id": ["c1"] * 3, "subject_id": ["p1"] * 3, "_ceap_origin": ids})
    assert len(set(_origins(placed, streaming=False))) == 3
    other_split = row_ids("deliveries/part-1.parquet", pa.array([0]))
    assert other_split[0] != ids[0]
    bare = pa.table({"customer_id": ["c1"] * 3, "subject_id": ["p1"] * 3, "t": [1, 1, 2]})
    origins = _origins(bare, streaming=False)
    assert len(set(origins)) == 3 and origins == _origins(bare, streaming=False)
    streamed = pa.table({"customer_id": ["c1"], "subject_id": ["p1"], "_ceap_origin": [42]})
    assert _origins(streamed, streaming=True) == ["event#42"]


def test_a_cell_that_is_not_a_number_costs_its_row_not_the_batch(ctx):
    """A text score column with one bad cell: that row is a dead letter naming the cell,
    the others are scored (an empty cell has no score), and the model stays trusted."""
    batch = pa.RecordBatch.from_pydict({
        "customer_id": ["c1", "c2", "c3", "c4", "c5"],
        "subject_id": ["p1", "p2", "p3", "p4", "p5"],
        "propensity": ["0.5", "x", " 0.7", None, "1e-1"],
    })  # fmt: skip
    config = scoring("[{id: rule, type: column, options: {column: propensity}}]")
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | Score(config, ctx)
        scored = out.scored | beam.FlatMap(
            lambda b: [(r["customer_id"], r["score"]) for r in b.to_pylist()]
        )
        assert_that(
            scored,
            equal_to([("c1", 0.5), ("c3", 0.7), ("c4", None), ("c5", 0.1)]),
            label="Scored",
        )
        letters = out.dead_letter | beam.FlatMap(
            lambda t: [(json.loads(r["row"])["customer_id"], r["reason"]) for r in t.to_pylist()]
        )
        assert_that(
            letters,
            equal_to([("c2", "model rule: column 'propensity': 'x' is not a number")]),
            label="DeadLetters",
        )
    funnel = Funnel.from_result("reviews", p.result)
    assert funnel.dead_letters == {"score": 1}
    assert funnel.circuit_open == {}


def test_an_sklearn_feature_that_is_not_a_number_costs_its_row(ctx, tmp_path):
    """The same for a fitted model: the good rows get the model's scores."""
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0], [0.2], [0.9]]), [0, 1, 0, 1])
    path = tmp_path / "m.skops"
    sio.dump(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    batch = pa.RecordBatch.from_pydict({
        "customer_id": ["c1", "c2", "c3"], "subject_id": ["p1", "p2", "p3"],
        "f": ["0.9", "n/a", "0.1"],
    })  # fmt: skip
    config = scoring(
        f"[{{id: lr, type: sklearn, options: {{path: {path}, features: [f], sha256: {digest}}}}}]"
    )
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | Score(config, ctx)
        scored = out.scored | beam.FlatMap(
            lambda b: [(r["customer_id"], round(r["score"], 6)) for r in b.to_pylist()]
        )
        expected = model.predict_proba(np.array([[0.9], [0.1]]))[:, 1].round(6)
        assert_that(scored, equal_to([("c1", expected[0]), ("c3", expected[1])]), label="S")
        reasons = out.dead_letter | beam.FlatMap(lambda t: t.column("reason").to_pylist())
        assert_that(reasons, equal_to(["model lr: feature 'f': 'n/a' is not a number"]), label="D")
