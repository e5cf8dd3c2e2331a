"""``Score``'s circuit breaker and per-arm figures, in a TestPipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from scorers.base import Scorer
from scorers.experiments import assign
from tests.transforms.test_scoring import scoring
from transforms.funnel import Funnel
from transforms.scoring import Score


class CountingFailure(Scorer):
    """Fails every call and leaves a mark per call in ``$CALLS_FILE`` (the DoFn runs in
    this process, but is a copy: a file is what both sides see)."""

    calls_file = ""

    def score(self, batch):
        with open(type(self).calls_file, "a") as handle:
            handle.write("x")
        raise TimeoutError("read timed out")


def batch(start: int, n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "customer_id": [f"c{i}" for i in range(start, start + n)],
            "subject_id": [f"p{i}" for i in range(start, start + n)],
            "propensity": [(i % 10) / 10 for i in range(start, start + n)],
        }
    )


@pytest.fixture
def calls(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "calls"
    path.write_text("")
    monkeypatch.setattr(CountingFailure, "calls_file", str(path))
    return path


def test_the_circuit_opens_after_the_threshold_and_the_model_is_not_called_again(ctx, calls):
    ctx = dataclasses.replace(ctx, extras={"circuit_threshold": 2})
    config = scoring(f'[{{id: flaky, type: "{__name__}:CountingFailure"}}]')
    batches = [batch(10 * i, 10) for i in range(5)]
    with TestPipeline() as p:
        out = p | beam.Create(batches, reshuffle=False) | Score(config, ctx)
        reasons = out.dead_letter | beam.FlatMap(lambda t: t.column("reason").to_pylist())
        kinds = reasons | beam.Map(lambda r: "open" if "circuit open" in r else "failed")
        assert_that(kinds, equal_to(["failed"] * 20 + ["open"] * 30), label="Reasons")
        assert_that(out.scored, equal_to([]), label="NothingScored")
    assert calls.read_text() == "xx"  # two calls, then the breaker
    funnel = Funnel.from_result("reviews", p.result)
    assert funnel.circuit_open == {"flaky": 1}
    assert funnel.dead_letters == {"score": 50}
    assert "CIRCUIT OPEN: model flaky" in funnel.render()


def test_a_success_resets_the_count(ctx, calls):
    """Failures must be consecutive: an arm that fails now and then keeps being called."""
    ctx = dataclasses.replace(ctx, extras={"circuit_threshold": 2})
    config = scoring(
        f"""
    - {{id: flaky, type: "{__name__}:CountingFailure", traffic: 50}}
    - {{id: rule, type: column, options: {{column: propensity}}, traffic: 50}}"""
    )
    with TestPipeline() as p:
        _ = p | beam.Create([batch(0, 40)] * 3, reshuffle=False) | Score(config, ctx)
    # every batch has rows of both arms and each arm is independent: flaky opens at 2
    assert calls.read_text() == "xx"
    assert Funnel.from_result("reviews", p.result).circuit_open == {"flaky": 1}


def test_per_arm_rows_and_mean_score_are_in_the_summary(ctx):
    config = scoring(
        """
    - {id: model_a, type: column, options: {column: propensity}, traffic: 90}
    - {id: model_b, type: column, options: {column: propensity}, traffic: 10}""",
        "min_score: 0.3",
    )
    data = batch(0, 2000)
    arms = assign("reviews", data.column("customer_id"), [90, 10])
    scores = data.column("propensity").to_numpy()
    with TestPipeline() as p:
        _ = p | beam.Create([data]) | Score(config, ctx)
    summary = Funnel.from_result("reviews", p.result).arm_summary()
    for i, arm in enumerate(["model_a", "model_b"]):
        kept = (arms == i) & (scores >= 0.3)
        assert summary[arm]["rows"] == int(kept.sum())
        assert summary[arm]["mean_score"] == pytest.approx(scores[kept].mean(), abs=1e-6)
    assert (
        0.08
        < summary["model_b"]["rows"] / (summary["model_a"]["rows"] + summary["model_b"]["rows"])
        < 0.12
    )
