"""Adapters against stand-ins on loopback: SES and SNS in moto's server, an HTTP server for
the WhatsApp Cloud API and an FCM-style push provider; voice prompt records."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from channels.base import Message
from channels.dispatcher import dispatch
from channels.email import EmailChannel
from channels.push import PushChannel
from channels.sms import SmsChannel
from channels.voice import VoiceChannel
from tests.channels.conftest import NOW, PROGRAM


def message(**kw) -> Message:
    base = dict(key="k" * 64, program="reviews", customer_id="C1", subject_id="P1",
                channel="email", action="review", subject_type="product", template=None,
                context={"title": "Kettle"}, recipient={"email": "a@example.com",
                "phone": "+15551234567", "locale": "en-US"}, send_after="2024-03-01T10:00:00Z")  # fmt: skip
    return Message(**{**base, **kw})


def prepared(adapter, **kw) -> Message:
    m = message(channel=adapter.type_name, **kw)
    assert adapter.prepare(m) is None
    return m


@pytest.fixture
def http_api():
    """A loopback HTTP server recording JSON POSTs (path, headers, body); replies 200."""
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = 400 if body.get("to") == "15550000000" else 200
            payload = json.dumps({"messages": [{"id": f"wamid.{len(calls)}"}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


def test_ses_sends_through_moto(moto_endpoint):
    ses = boto3.client("ses", endpoint_url=moto_endpoint, region_name="us-east-1")
    ses.verify_email_identity(EmailAddress="ceap@example.com")
    adapter = EmailChannel({"provider": "ses", "sender": "ceap@example.com",
                            "endpoint_url": moto_endpoint})  # fmt: skip
    (result,) = adapter.send([prepared(adapter)])
    assert result.ok and result.provider_id
    assert ses.get_send_quota()["SentLast24Hours"] >= 1
    unverified = EmailChannel({"provider": "ses", "sender": "nobody@example.org",
                               "endpoint_url": moto_endpoint})  # fmt: skip
    (refused,) = unverified.send([prepared(unverified)])
    assert not refused.ok and not refused.retryable


def test_sms_publishes_to_e164_numbers_through_moto(moto_endpoint):
    adapter = SmsChannel({"endpoint_url": moto_endpoint})
    assert adapter.validate_recipient("+15551234567") is None
    assert "E.164" in adapter.validate_recipient("555-1234")
    assert "E.164" in adapter.prepare(message(channel="sms", recipient={"phone": "0044 7700"}))
    (result,) = adapter.send([prepared(adapter)])
    assert result.ok and result.provider_id


def test_push_to_an_sns_platform_endpoint(moto_endpoint):
    sns = boto3.client("sns", endpoint_url=moto_endpoint, region_name="us-east-1")
    app = sns.create_platform_application(Name="ceap", Platform="GCM",
                                          Attributes={"PlatformCredential": "x"})  # fmt: skip
    arn = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"],
                                       Token="device-1")["EndpointArn"]  # fmt: skip
    adapter = PushChannel({"endpoint_url": moto_endpoint})
    (result,) = adapter.send([prepared(adapter, recipient={"push_endpoint_arn": arn})])
    assert result.ok


def test_push_to_an_http_provider_with_the_idempotency_key(http_api):
    url, calls = http_api
    adapter = PushChannel({"provider": "http", "url": url + "/v1/projects/p/messages:send"})
    (result,) = adapter.send([prepared(adapter, recipient={"push_token": "tok-1"})])
    assert result.ok
    call = calls[0]
    assert call["headers"]["Idempotency-Key"] == "k" * 64
    assert call["body"]["message"]["token"] == "tok-1"
    assert call["body"]["message"]["notification"]["title"] == "How was your Kettle?"


def test_whatsapp_template_messages_through_the_dispatcher(world, http_api, monkeypatch):
    url, calls = http_api
    monkeypatch.setenv("CEAP_WHATSAPP_TOKEN", "secret")
    world.write_program(text=PROGRAM.format(customers=world.customers, extra="").replace(
        "  - type: in_app",
        "  - type: whatsapp\n    template: review_request\n"
        f"    options: {{base_url: '{url}', phone_number_id: '123', parameters: [title],\n"
        f"              recipients: {{type: parquet, options: {{path: {world.customers}}}}}}}",
    ))  # fmt: skip
    keys = world.seed(3, channels=("whatsapp",), start=1)  # C00000 has the refused number
    summary = dispatch(world.store_spec, world.config_dir, now=NOW)
    assert summary.counts[("whatsapp", "sent")] == 3
    assert {c["path"] for c in calls} == {"/123/messages"}
    assert {c["headers"]["Idempotency-Key"] for c in calls} == set(keys)
    assert calls[0]["headers"]["Authorization"] == "Bearer secret"
    body = calls[0]["body"]
    assert body["type"] == "template" and body["to"].startswith("1555")
    assert body["template"]["name"] == "review_request"
    assert body["template"]["language"] == {"code": "en_US"}
    assert body["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Kettle"}]


def test_whatsapp_client_errors_fail_without_retry(http_api):
    from channels.whatsapp import WhatsappChannel

    url, _ = http_api
    adapter = WhatsappChannel({"base_url": url, "phone_number_id": "1"})
    (result,) = adapter.send([prepared(adapter, recipient={"phone": "+15550000000"})])
    assert not result.ok and not result.retryable and "HTTP 400" in result.error


def test_voice_writes_prompt_records(tmp_path):
    adapter = VoiceChannel({"path": str(tmp_path / "prompts.jsonl")})
    results = adapter.send([prepared(adapter), prepared(adapter, key="b" * 64)])
    assert all(r.ok for r in results)
    records = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == ["k" * 64, "b" * 64]
    assert "Kettle" in records[0]["prompt"]
