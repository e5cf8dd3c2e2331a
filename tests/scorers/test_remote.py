"""Bedrock and SageMaker scorers against botocore's Stubber (no network)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from ceap.plugins import scorers
from scorers.bedrock import BedrockScorer, parse_score
from scorers.remote import TokenBucket
from scorers.sagemaker import SagemakerScorer

AWS = {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def body(payload: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(payload), len(payload))


BATCH = pa.RecordBatch.from_pydict(
    {
        "customer_id": ["c1", "c2", "c3"],
        "engagement_score": [0.9, 0.2, None],
        "vip": [True, False, True],
    }
)


def test_both_are_registered_by_name():
    assert scorers.get("bedrock") is BedrockScorer and scorers.get("sagemaker") is SagemakerScorer


@pytest.mark.parametrize(
    ("text", "score"),
    [("0.83", 0.83), ("Score: 0.4.", 0.4), ("1", 1.0), ("0", 0.0), ("1.7", np.nan),
     ("-0.2", np.nan), ("I cannot tell", np.nan), ("", np.nan)],
)  # fmt: skip
def test_bedrock_replies_are_parsed_and_validated(text, score):
    np.testing.assert_equal(parse_score(text), score)


def test_bedrock_converse_renders_the_prompt_per_row(ctx):
    scorer = BedrockScorer(
        {**AWS, "model_id": "anthropic.claude-3-haiku", "features": ["engagement_score", "vip"],
         "prompt": "Engagement {{ engagement_score }}, VIP {{ vip }}. Propensity 0..1?"},
        "llm_v1", ctx,
    )  # fmt: skip
    scorer.setup()
    with Stubber(scorer._client) as stub:
        for prompt, reply in [
            ("Engagement 0.9, VIP True. Propensity 0..1?", "0.8"),
            ("Engagement 0.2, VIP False. Propensity 0..1?", "about 0.15"),
            ("Engagement None, VIP True. Propensity 0..1?", "no idea"),
        ]:
            stub.add_response(
                "converse",
                {"output": {"message": {"role": "assistant", "content": [{"text": reply}]}},
                 "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                 "metrics": {"latencyMs": 1}},
                {"modelId": "anthropic.claude-3-haiku", "inferenceConfig": ANY,
                 "messages": [{"role": "user", "content": [{"text": prompt}]}]},
            )  # fmt: skip
        scores = scorer.score(BATCH)
        stub.assert_no_pending_responses()
    np.testing.assert_equal(scores, [0.8, 0.15, np.nan])
    assert scorer.reads() == {"engagement_score", "vip"}


def test_bedrock_invoke_model_and_errors_propagate(ctx):
    scorer = BedrockScorer(
        {**AWS, "model_id": "m", "features": ["engagement_score"], "api": "invoke_model",
         "prompt": "{{ engagement_score }}"},
        "llm_v1", ctx,
    )  # fmt: skip
    scorer.setup()
    with Stubber(scorer._client) as stub:
        stub.add_response(
            "invoke_model",
            {"body": body(json.dumps({"content": [{"type": "text", "text": "0.7"}]}).encode()),
             "contentType": "application/json"},
            {"modelId": "m", "body": ANY, "contentType": "application/json", "accept": "application/json"},
        )  # fmt: skip
        stub.add_client_error("invoke_model", "ThrottlingException", http_status_code=400)
        with pytest.raises(Exception, match="ThrottlingException"):
            scorer.score(BATCH.slice(0, 2))  # the batch fails as a whole: Score's fallback


def test_bedrock_options_are_validated(ctx):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="prompt"):
        BedrockScorer({"model_id": "m", "features": ["x"]}, "llm", ctx)


def test_sagemaker_sends_batches_as_csv_and_reads_one_score_per_row(ctx):
    scorer = SagemakerScorer(
        {**AWS, "endpoint": "propensity", "features": ["engagement_score", "vip"], "batch_size": 2},
        "sm_v1", ctx,
    )  # fmt: skip
    scorer.setup()
    with Stubber(scorer._client) as stub:
        stub.add_response(
            "invoke_endpoint", {"Body": body(b"0.91\n0.12\n")},
            {"EndpointName": "propensity", "ContentType": "text/csv", "Accept": "text/csv",
             "Body": b"0.9,1.0\n0.2,0.0\n"},
        )  # fmt: skip
        stub.add_response(
            "invoke_endpoint", {"Body": body(b"0.5")},
            {"EndpointName": "propensity", "ContentType": "text/csv", "Accept": "text/csv",
             "Body": b",1.0\n"},
        )  # fmt: skip
        np.testing.assert_allclose(scorer.score(BATCH), [0.91, 0.12, 0.5])
        stub.assert_no_pending_responses()


def test_sagemaker_json_and_a_short_reply_fails_the_batch(ctx):
    scorer = SagemakerScorer(
        {**AWS, "endpoint": "e", "features": ["engagement_score"], "content_type": "application/json"},
        "sm_v1", ctx,
    )  # fmt: skip
    scorer.setup()
    with Stubber(scorer._client) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": body(json.dumps({"predictions": [{"score": 0.3}, {"score": 0.6}, [0.2, 0.8]]}).encode())},
            {"EndpointName": "e", "ContentType": "application/json", "Accept": "application/json",
             "Body": json.dumps({"instances": [[0.9], [0.2], [None]]}).encode()},
        )  # fmt: skip
        np.testing.assert_allclose(scorer.score(BATCH), [0.3, 0.6, 0.8])
        stub.add_response("invoke_endpoint", {"Body": body(b"[0.1]")}, None)
        with pytest.raises(ValueError, match="returned 1 scores for 3 rows"):
            scorer.score(BATCH)


def test_clients_carry_timeouts_and_retries(ctx):
    scorer = SagemakerScorer(
        {**AWS, "endpoint": "e", "features": ["x"], "read_timeout_s": 1.5, "max_attempts": 7},
        "m",
        ctx,
    )
    scorer.setup()
    config = scorer._client.meta.config
    assert config.read_timeout == 1.5 and config.connect_timeout == 2.0
    assert config.retries == {"total_max_attempts": 7, "mode": "adaptive"}


def test_token_bucket_paces_calls():
    now = [0.0]
    waits = []
    bucket = TokenBucket(rate=2.0, burst=1, clock=lambda: now[0], sleep=waits.append)
    for _ in range(3):
        bucket.take()
    assert waits == [0.5, 1.0]  # the 2nd waits half a second, the 3rd a full second
    assert TokenBucket(None).take() == 0.0
