"""Alerts: what an operator must hear about without reading logs, posted to a webhook and/or an
SNS topic.

Four kinds are raised today: ``model_circuit_open`` (a program's model stopped being called,
transforms/scoring.py), ``run_degraded`` (a batch or streaming run finished without doing its
job, ``Funnel.degraded()``), ``run_failed`` (a batch or streaming run stopped on an error and
did not finish, ``run_failed()``) and ``channel_failing`` (consecutive sends of a program's
channel step failed, channels/health.py).

Configured by environment, both optional, both possible:
  ``CEAP_ALERT_WEBHOOK``    a URL; each alert is POSTed as JSON
                            ``{"kind", "program", "subject", "summary", "details", "at"}``
  ``CEAP_ALERT_SNS_TOPIC``  a topic ARN; the same JSON is the message body, ``Subject`` the
                            summary. Region from the ARN; endpoint from
                            ``$AWS_ENDPOINT_URL_SNS`` / ``$AWS_ENDPOINT_URL`` (moto,
                            LocalStack); credentials from the usual AWS chain.
  ``CEAP_ALERT_TIMEOUT``    seconds per attempt (default 5).

Guarantees and their limits: sending never fails the caller (a timeout, a refused
connection, a bad ARN are logged at WARNING, the alert is also always logged at ERROR; the
webhook URL, a credential for most chat services, is never logged, only its variable); an
alert is sent at most once per (kind, program, subject) per process, so a flapping breaker
or a dispatcher looping over a dead provider does not spam. A run on several worker processes
(Dataflow, Dask, multi_processing) may alert once per process; one attempt, no retry queue.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from datetime import UTC, datetime
from typing import Any

from ceap.logs import context

log = logging.getLogger(__name__)

WEBHOOK_ENV = "CEAP_ALERT_WEBHOOK"
SNS_TOPIC_ENV = "CEAP_ALERT_SNS_TOPIC"
TIMEOUT_ENV = "CEAP_ALERT_TIMEOUT"
KINDS = ("model_circuit_open", "run_degraded", "run_failed", "channel_failing")

_URL = re.compile(r"https?://\S+")
_sent: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


def configured() -> bool:
    return bool(os.environ.get(WEBHOOK_ENV) or os.environ.get(SNS_TOPIC_ENV))


def alert(
    kind: str, program: str, summary: str, subject: str = "", details: dict[str, Any] | None = None
) -> dict | None:
    """Raises one alert (logged; posted where configured) unless the same ``(kind, program,
    subject)`` was raised already by this process. Returns the payload sent, or None when it
    was a duplicate. Never raises.

    Args:
      kind: one of ``KINDS`` (a new kind is a new string; receivers route on it).
      program: the program concerned (``""`` for none).
      summary: one line for a human (also the SNS subject, cut to 100 characters).
      subject: what within the program (a model id, a channel step): the dedup key's third part.
      details: JSON-serialisable specifics (counts, reasons, the run id).
    """
    key = (kind, program, subject)
    with _lock:
        if key in _sent:
            return None
        _sent.add(key)
    payload = {
        "kind": kind, "program": program, "subject": subject, "summary": summary,
        "details": details or {}, "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    log.error("ALERT %s", summary,
              extra=context(program=program, stage="alert", subject=subject, alert=True))  # fmt: skip
    for target, send in ((WEBHOOK_ENV, _post_webhook), (SNS_TOPIC_ENV, _publish_sns)):
        where = os.environ.get(target)
        if not where:
            continue
        try:
            send(where, payload)
        except Exception as exc:  # noqa: BLE001 - an alert that cannot be sent never fails a run
            log.warning("alert %s not sent to %s: %s", kind, target, _reason(exc, where),
                        extra=context(program=program, stage="alert"))  # fmt: skip
    return payload


def run_failed(program: str, run_id: str, mode: str, error: BaseException) -> dict | None:
    """A ``run_failed`` alert: the run stopped on ``error`` before it finished (a model
    that fails verification, an unreadable source, a crash), which is worse than degraded."""
    reason = f"{type(error).__name__}: {error}"
    return alert(
        "run_failed", program,
        f"program {program}: {mode} run {run_id} failed: {reason}"[:500],
        subject=run_id,
        details={"run_id": run_id, "mode": mode, "error": reason[:2000]},
    )  # fmt: skip


def _reason(exc: Exception, where: str) -> str:
    """Why an alert was not sent, on one line, without the target: an HTTP error's text
    names the URL (``for url '...'``) and a Slack-style webhook's URL is its secret."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    text = " ".join(str(exc).replace(where, "<redacted>").split())
    return f"{type(exc).__name__}: {_URL.sub('<redacted>', text)}"[:300]


def reset(program: str | None = None) -> None:
    """Forgets which alerts were sent, of ``program`` or all: a run starts afresh, so the
    same model failing again in the next run of a long-lived process alerts again."""
    with _lock:
        for key in [k for k in _sent if program is None or k[1] == program]:
            _sent.discard(key)


def _timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV, "5"))


def _post_webhook(url: str, payload: dict) -> None:
    import httpx

    response = httpx.post(url, json=payload, timeout=_timeout())
    response.raise_for_status()


def _publish_sns(topic_arn: str, payload: dict) -> None:
    import boto3
    from botocore.config import Config

    parts = topic_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not parts[3]:
        raise ValueError(f"{topic_arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
    region = parts[3]
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SNS") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(connect_timeout=_timeout(), read_timeout=_timeout(),
                    retries={"max_attempts": 1})  # fmt: skip
    client = boto3.client("sns", region_name=region, endpoint_url=endpoint or None, config=config)
    client.publish(
        TopicArn=topic_arn,
        Subject=_sns_subject(payload["summary"]),
        Message=json.dumps(payload, default=str),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": payload["kind"]}},
    )


def _sns_subject(summary: str) -> str:
    """SNS subjects: ASCII, no newlines, at most 100 characters."""
    text = summary.encode("ascii", "replace").decode().replace("\n", " ").strip()
    return ("CEAP: " + text)[:100] or "CEAP alert"
