"""``bedrock``: an LLM on Amazon Bedrock scores each candidate from a prompt.

A Jinja2 template renders the prompt from the candidate's columns (``features``); the
reply must contain a number in [0, 1] (the first number in the text); anything else
leaves the row without a score (NaN, so ``min_score`` drops it) and is logged. Calls go
through ``converse`` (any chat model) or ``invoke_model`` (a JSON body template), with
botocore timeouts and retries and a per-worker token bucket.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from ceap.plugins import scorers
from scorers.base import Scorer
from scorers.remote import RemoteOptions, TokenBucket, client

log = logging.getLogger(__name__)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
DEFAULT_BODY = (
    '{"anthropic_version": "bedrock-2023-05-31", "max_tokens": {{ max_tokens }}, '
    '"temperature": 0, "messages": [{"role": "user", "content": {{ prompt | tojson }}}]}'
)


class BedrockOptions(RemoteOptions):
    model_id: str
    """Bedrock model or inference-profile id."""
    prompt: str
    """Jinja2 template over the candidate's columns, e.g. ``"... {{ engagement_score }} ..."``."""
    features: list[str] = Field(min_length=1)
    """The columns the prompt may use (read from the source, passed to the template)."""
    api: Literal["converse", "invoke_model"] = "converse"
    body: str = DEFAULT_BODY
    """``invoke_model`` only: Jinja2 template of the JSON body (``prompt``, ``max_tokens``)."""
    max_tokens: int = Field(default=16, ge=1)


def parse_score(text: str) -> float:
    """The first number in a reply, if it is within [0, 1]; else NaN."""
    match = NUMBER.search(text or "")
    if not match:
        return float("nan")
    value = float(match.group())
    return value if 0.0 <= value <= 1.0 else float("nan")


def reply_text(payload: dict) -> str:
    """The generated text of an ``invoke_model`` reply, for the common model families."""
    if isinstance(payload.get("content"), list) and payload["content"]:
        return payload["content"][0].get("text", "")
    for key in ("completion", "generation", "outputText"):
        if isinstance(payload.get(key), str):
            return payload[key]
    for key, inner in (("outputs", "text"), ("results", "outputText")):
        if isinstance(payload.get(key), list) and payload[key]:
            return payload[key][0].get(inner, "")
    return json.dumps(payload)


@scorers.register("bedrock")
class BedrockScorer(Scorer):
    Options = BedrockOptions

    def reads(self) -> set[str]:
        return set(self.options.features)

    def setup(self) -> None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self._prompt = env.from_string(self.options.prompt)
        self._body = env.from_string(self.options.body)
        self._client = client("bedrock-runtime", self.options)
        self._bucket = TokenBucket(self.options.rate_per_s, self.options.burst)

    def _ask(self, prompt: str) -> str:
        o = self.options
        self._bucket.take()
        if o.api == "converse":
            reply = self._client.converse(
                modelId=o.model_id,
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": o.max_tokens, "temperature": 0.0},
            )
            parts = reply["output"]["message"]["content"]
            return "".join(p.get("text", "") for p in parts)
        body = self._body.render(prompt=prompt, max_tokens=o.max_tokens)
        reply = self._client.invoke_model(
            modelId=o.model_id, body=body, contentType="application/json", accept="application/json"
        )
        return reply_text(json.loads(reply["body"].read()))

    def score(self, batch: pa.RecordBatch) -> np.ndarray:
        if not hasattr(self, "_client"):
            self.setup()
        rows = batch.select(self.options.features).to_pylist()
        scores = np.empty(len(rows))
        for i, row in enumerate(rows):
            text = self._ask(self._prompt.render(**row))
            scores[i] = parse_score(text)
            if np.isnan(scores[i]):
                log.warning(
                    "scorer %s: reply %r is not a score in [0, 1]", self.model_id, text[:200]
                )
        return scores
