"""``sagemaker``: a model behind a SageMaker real-time endpoint, called with batches of rows.

Rows go ``batch_size`` at a time as CSV (no header, features in order: the built-in
XGBoost / linear-learner convention) or JSON (``{"instances": [[...], ...]}``); the reply
is one score per row (CSV lines or commas, a JSON list, or ``{"predictions": [...]}`` with
numbers or objects holding ``score`` / ``probability``). A reply with the wrong number of
scores fails the batch (it goes to the fallback), rather than shifting scores between rows.
"""

from __future__ import annotations

import io
import json
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from ceap.plugins import scorers
from scorers.base import Scorer, score_good_rows
from scorers.remote import RemoteOptions, TokenBucket, client
from scorers.sklearn import feature_rows


class SagemakerOptions(RemoteOptions):
    endpoint: str
    features: list[str] = Field(min_length=1)
    """Candidate columns sent, in the order the model expects."""
    content_type: Literal["text/csv", "application/json"] = "text/csv"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    """Rows per call (SageMaker caps a request at 6 MB)."""
    target_model: str | None = None
    """Multi-model endpoints: the model artifact to call."""


def encode(x: np.ndarray, content_type: str) -> bytes:
    if content_type == "text/csv":
        out = io.StringIO()
        for row in x:
            out.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")
        return out.getvalue().encode()
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in x]
    return json.dumps({"instances": rows}).encode()


def decode(body: bytes, content_type: str) -> list[float]:
    text = body.decode().strip()
    if text.startswith(("[", "{")):
        payload = json.loads(text)
        if isinstance(payload, dict):
            payload = payload.get("predictions", payload.get("scores"))
        if not isinstance(payload, list):
            raise ValueError(f"unexpected reply: {text[:200]}")
        out = []
        for item in payload:
            if isinstance(item, dict):
                item = item.get("score", item.get("probability"))
            if isinstance(item, list):  # [p0, p1] class probabilities
                item = item[-1]
            out.append(float(item))
        return out
    return [float(v) for v in text.replace("\n", ",").split(",") if v.strip()]


@scorers.register("sagemaker")
class SagemakerScorer(Scorer):
    Options = SagemakerOptions

    def reads(self) -> set[str]:
        return set(self.options.features)

    def setup(self) -> None:
        self._client = client("sagemaker-runtime", self.options)
        self._bucket = TokenBucket(self.options.rate_per_s, self.options.burst)

    def score(self, batch: pa.RecordBatch) -> np.ndarray:
        if not hasattr(self, "_client"):
            self.setup()
        o = self.options
        x, errors = feature_rows(batch, o.features, self.model_id)
        return score_good_rows(errors, len(x), lambda rows: self._invoke(x[rows]))

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        o = self.options
        scores = np.empty(len(x))
        for start in range(0, len(x), o.batch_size):
            chunk = x[start : start + o.batch_size]
            extra = {"TargetModel": o.target_model} if o.target_model else {}
            self._bucket.take()
            reply = self._client.invoke_endpoint(
                EndpointName=o.endpoint, ContentType=o.content_type, Accept="application/json"
                if o.content_type == "application/json" else "text/csv",
                Body=encode(chunk, o.content_type), **extra,
            )  # fmt: skip
            got = decode(reply["Body"].read(), o.content_type)
            if len(got) != len(chunk):
                raise ValueError(
                    f"endpoint {o.endpoint} returned {len(got)} scores for {len(chunk)} rows"
                )
            scores[start : start + len(chunk)] = got
        return scores
