"""Alerts: posted to a webhook on loopback and an SNS topic on moto, once per subject, and
never failing the caller."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import boto3
import pytest

from ceap import alerts
from ceap.errors import ConfigError, ModelError
from channels.base import Result
from channels.health import FAILURES_ENV, ChannelHealth
from tests.alert_receiver import failing_webhook, webhook  # noqa: F401 - the fixtures


def test_an_alert_is_posted_once_per_kind_program_and_subject(webhook):  # noqa: F811
    first = alerts.alert("model_circuit_open", "reviews", "model m1 open", subject="m1",
                         details={"consecutive_failures": 3})  # fmt: skip
    assert alerts.alert("model_circuit_open", "reviews", "again", subject="m1") is None
    alerts.alert("model_circuit_open", "reviews", "model m2 open", subject="m2")
    alerts.alert("model_circuit_open", "surveys", "model m1 open", subject="m1")
    assert [(a["program"], a["subject"]) for a in webhook] == [
        ("reviews", "m1"), ("reviews", "m2"), ("surveys", "m1")
    ]  # fmt: skip
    got = webhook[0]
    assert set(got) == {"kind", "program", "subject", "summary", "details", "at"}
    assert got == first and got["details"] == {"consecutive_failures": 3}
    alerts.reset("reviews")  # a new run of reviews alerts again; surveys' stay deduplicated
    assert alerts.alert("model_circuit_open", "reviews", "open", subject="m1") is not None
    assert alerts.alert("model_circuit_open", "surveys", "open", subject="m1") is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_alert_that_cannot_be_sent_is_logged_and_never_raises(monkeypatch, caplog):
    monkeypatch.setenv(alerts.WEBHOOK_ENV, f"http://127.0.0.1:{_closed_port()}/hook")
    monkeypatch.setenv(alerts.SNS_TOPIC_ENV, "not-an-arn")
    monkeypatch.setenv(alerts.TIMEOUT_ENV, "1")
    alerts.reset()
    assert alerts.alert("run_degraded", "reviews", "run r1 degraded", subject="r1") is not None
    text = caplog.text
    assert "ALERT run r1 degraded" in text
    assert (
        f"not sent to {alerts.WEBHOOK_ENV}" in text
        and f"not sent to {alerts.SNS_TOPIC_ENV}" in text
    )
    alerts.reset()


def test_an_alert_is_published_to_the_sns_topic(moto_endpoint, monkeypatch):
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    topic = sns.create_topic(Name="ceap-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="ceap-alerts-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs",
                  Endpoint=arn["Attributes"]["QueueArn"])  # fmt: skip
    monkeypatch.delenv(alerts.WEBHOOK_ENV, raising=False)
    monkeypatch.setenv(alerts.SNS_TOPIC_ENV, topic)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto_endpoint)
    alerts.reset()
    alerts.alert("channel_failing", "reviews", "channel email failing", subject="email",
                 details={"consecutive_failures": 5})  # fmt: skip
    alerts.reset()
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(messages[0]["Body"])
    assert envelope["Subject"] == "CEAP: channel email failing"
    body = json.loads(envelope["Message"])
    assert body["kind"] == "channel_failing" and body["program"] == "reviews"
    assert body["details"] == {"consecutive_failures": 5}


def route(step: str = "invite"):
    return SimpleNamespace(program=SimpleNamespace(program="events"),
                           config=SimpleNamespace(step=step, type="email"))  # fmt: skip


@pytest.mark.parametrize("chunks", [[[False] * 3], [[False], [False, False]]])
def test_a_channel_step_alerts_after_consecutive_failed_sends(webhook, chunks):  # noqa: F811
    health = ChannelHealth(threshold=3)
    health.record(route(), [Result("k0", False, error="554 refused")] * 2)
    health.record(route(), [Result("k1", True)])  # a success: the count starts again
    assert webhook == []
    for chunk in chunks:
        health.record(route(), [Result("k", ok, error=None if ok else "503 down") for ok in chunk])
    health.record(route(), [Result("k", False, error="503 down")])  # deduplicated
    assert [(a["kind"], a["subject"]) for a in webhook] == [("channel_failing", "invite")]
    assert webhook[0]["details"]["last_error"] == "503 down"
    assert "channel email (step invite) failing" in webhook[0]["summary"]


def test_a_webhook_that_fails_is_logged_without_its_url(failing_webhook, monkeypatch, caplog):  # noqa: F811
    alerts.alert("run_degraded", "reviews", "run r1 degraded", subject="r1")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"alert run_degraded not sent to {alerts.WEBHOOK_ENV}: HTTP 500"]

    # Any other error: the URL, or any URL, in its text is redacted, on one line.
    def fails(url, payload):
        raise RuntimeError(f"cannot reach {url}\nvia http://proxy.internal/SECRETTOKEN123")

    monkeypatch.setattr(alerts, "_post_webhook", fails)
    alerts.alert("run_degraded", "reviews", "run r2 degraded", subject="r2")
    last = caplog.records[-1].getMessage()
    assert (
        last
        == f"alert run_degraded not sent to {alerts.WEBHOOK_ENV}: RuntimeError: cannot reach <redacted> via <redacted>"
    )
    assert "SECRETTOKEN123" not in caplog.text


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5"])
def test_a_bad_channel_failure_threshold_is_a_config_error(monkeypatch, value):
    monkeypatch.setenv(FAILURES_ENV, value)
    with pytest.raises(ConfigError, match=FAILURES_ENV):
        ChannelHealth()
    monkeypatch.setenv(FAILURES_ENV, " 7 ")
    assert ChannelHealth().threshold == 7
    monkeypatch.setenv(FAILURES_ENV, "")
    assert ChannelHealth().threshold == 5


def test_a_run_failed_alert_names_the_run_and_the_error(webhook):  # noqa: F811
    alerts.run_failed("reviews", "r9", "batch", ModelError("sha256 mismatch"))
    (got,) = webhook
    assert got["kind"] == "run_failed" and got["subject"] == "r9"
    assert got["details"] == {"run_id": "r9", "mode": "batch",
                              "error": "ModelError: sha256 mismatch"}  # fmt: skip
    assert got["summary"] == "program reviews: batch run r9 failed: ModelError: sha256 mismatch"
