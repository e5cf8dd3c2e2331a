"""The SES webhook (issue 17, item 3): SES events in SNS messages signed with a test key,
whose certificate an HTTPS server on loopback serves under a test CA, reach the store once
and act on it; a message the configured source did not sign changes nothing, and a
subscription is confirmed only when signed. WhatsApp: test_webhooks_whatsapp.py."""

from __future__ import annotations

import json
import sqlite3
import types

import pytest
from fastapi.testclient import TestClient

from channels.dispatcher import dispatch
from serving.app import create_app
from tests.channels.conftest import NOW, PROGRAM, SmtpSink, World, start_smtp
from tests.serving.sns_stub import TOPIC, SnsStub


@pytest.fixture(scope="module")
def sns(tmp_path_factory):
    stub = SnsStub(tmp_path_factory.mktemp("sns"))
    yield stub
    stub.close()


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("CEAP_PUBLIC_URL", "https://engage.example.com")
    monkeypatch.setenv("CEAP_SIGNING_KEY", "s" * 32)
    return monkeypatch


def serve(world: World, sns: SnsStub, **verifier):
    """An API client over the world's store, trusting the SNS stand-in."""
    app = create_app(world.store_spec, config_dir=world.config_dir, api_keys=["k"])
    app.state.sns = sns.verifier(**verifier)
    sns.gets.clear()
    return TestClient(app)


def mail_smtp(env, world: World) -> list:
    """Dispatches the world's due email rows to a fresh aiosmtpd; the mails it got."""
    sink = SmtpSink()
    controller, port = start_smtp(sink)
    env.setenv("CEAP_SMTP_HOST", "127.0.0.1")
    env.setenv("CEAP_SMTP_PORT", str(port))
    dispatch(world.store_spec, world.config_dir, now=NOW)
    controller.stop()
    return sink.messages


@pytest.fixture
def sent(tmp_path, env, sns):
    """Three review emails really mailed over SMTP; the world, their keys and addresses."""
    world = World(tmp_path)
    keys = world.seed(3)
    assert len(mail_smtp(env, world)) == 3
    with serve(world, sns) as client:
        yield types.SimpleNamespace(world=world, keys=keys, client=client, env=env)


def rows(world: World, sql: str) -> list[tuple]:
    with sqlite3.connect(world.db) as con:
        return con.execute(sql).fetchall()


def ses_event(kind: str, key: str | None = None, fmt: str = "eventType", **objects) -> dict:
    """An SES event (``fmt``: eventType for event publishing, notificationType for an
    identity's notifications), naming the message by its ``ceap_key`` tag when ``key``."""
    mail = {"timestamp": "2024-03-01T12:00:05.000Z", "messageId": "0100018e-ses-id",
            "source": "ceap@example.com", "destination": ["c00000@example.com"]}  # fmt: skip
    if key:
        mail["tags"] = {"ses:configuration-set": ["ceap-events"], "ceap_key": [key]}
    return {fmt: kind, "mail": mail, **objects}


def post_sns(client, message: dict, **headers):
    headers = {"Content-Type": "text/plain; charset=UTF-8",
               "x-amz-sns-message-type": message.get("Type", "Notification"), **headers}  # fmt: skip
    return client.post("/v1/webhooks/ses", content=json.dumps(message), headers=headers)


BOUNCE = {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2024-03-01T13:00:00.250Z",
          "feedbackId": "0100-fb", "bouncedRecipients": [{"emailAddress": "c00000@example.com",
          "status": "5.1.1", "action": "failed", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}  # fmt: skip


def test_a_signed_permanent_bounce_suppresses_the_address_once(sent, sns):
    message = sns.notification(ses_event("Bounce", sent.keys[0], bounce=BOUNCE))
    first = post_sns(sent.client, message)
    assert first.status_code == 200
    assert first.json() == {"recorded": 1, "replayed": 0, "unmatched": 0, "ignored": 0}
    assert post_sns(sent.client, message).json()["replayed"] == 1  # SNS delivering it again
    events = rows(sent.world, "SELECT customer_id, event, at, event_id FROM engagement_events")
    assert events == [("C00000", "bounced", "2024-03-01T13:00:00Z", message["MessageId"])]
    assert rows(sent.world, "SELECT address, reason FROM suppressions") == [
        ("c00000@example.com", "bounced address")
    ]
    assert sns.gets == ["/SimpleNotificationService-0000000000000000000000.pem"]  # cached
    # A later email to the bounced address ends suppressed, never sent.
    sent.world.seed(2, subject="b")
    assert [str(m["To"]) for m in mail_smtp(sent.env, sent.world)] == ["c00001@example.com"]
    assert rows(sent.world, "SELECT reason FROM outbox WHERE customer_id = 'C00000' "
                            "AND subject_id = 'PC00000b'") == [("bounced address",)]  # fmt: skip


def test_identity_notifications_name_the_message_by_its_message_id_header(sent, sns):
    """No tags (SignatureVersion 1, notificationType): the Message-ID CEAP gave the mail."""
    complaint = ses_event("Complaint", fmt="notificationType", complaint={
        "complainedRecipients": [{"emailAddress": "c00001@example.com"}],
        "complaintFeedbackType": "abuse", "timestamp": "2024-03-01T14:00:00Z"})  # fmt: skip
    complaint["mail"]["commonHeaders"] = {"messageId": f"<{sent.keys[1]}@ceap>"}
    delivery = ses_event("Delivery", fmt="notificationType", delivery={
        "recipients": ["c00002@example.com"], "smtpResponse": "250 ok"})  # fmt: skip
    delivery["mail"]["headers"] = [{"name": "Message-ID", "value": f"<{sent.keys[2]}@ceap>"}]
    transient = ses_event("Bounce", sent.keys[2], fmt="notificationType",
                          bounce={**BOUNCE, "bounceType": "Transient"})  # fmt: skip
    for event in (complaint, delivery, transient):
        answer = post_sns(sent.client, sns.notification(event, version="1"))
        assert answer.json()["recorded"] == 1, answer.text
    events = rows(sent.world, "SELECT customer_id, event FROM engagement_events ORDER BY 1, 2")
    assert events == [("C00001", "complained"), ("C00002", "bounced"), ("C00002", "delivered")]
    assert rows(sent.world, "SELECT address, reason FROM suppressions") == [
        ("c00001@example.com", "complained")  # a full mailbox suppresses nothing
    ]


def test_event_publishing_opens_clicks_failures_and_what_is_ignored(sent, sns):
    key = sent.keys[0]
    two = {**BOUNCE, "bounceType": "Transient", "bouncedRecipients": [
        {"emailAddress": "c00000@example.com"}, {"emailAddress": "alias@example.com"}]}  # fmt: skip
    link = "https://example.com/review/PC00000?utm_source=ceap"
    cases = [
        (ses_event("Open", key, open={"timestamp": "2024-03-01T15:00:00Z", "userAgent": "UA"}), 1, 0),
        (ses_event("Click", key, click={"link": link, "timestamp": "2024-03-01T15:01:00Z"}), 1, 0),
        (ses_event("Reject", key, reject={"reason": "Bad content"}), 1, 0),
        (ses_event("Rendering Failure", key, failure={"errorMessage": "no var"}), 1, 0),
        (ses_event("Bounce", key, bounce=two), 2, 0),
        (ses_event("Send", key, send={}), 0, 1),
        (ses_event("DeliveryDelay", key, deliveryDelay={"delayType": "MailboxFull"}), 0, 1),
        ({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}, 0, 1),
    ]  # fmt: skip
    for event, recorded, ignored in cases:
        answer = post_sns(sent.client, sns.notification(event)).json()
        assert (answer["recorded"], answer["ignored"]) == (recorded, ignored), event
    unknown = post_sns(sent.client, sns.notification(ses_event("Delivery", "no-such-key")))
    assert unknown.json() == {"recorded": 0, "replayed": 0, "unmatched": 1, "ignored": 0}
    events = rows(sent.world, "SELECT event, at, event_id, detail FROM engagement_events "
                              "ORDER BY event, event_id")  # fmt: skip
    assert [e[0] for e in events] == ["bounced", "bounced", "clicked", "failed", "failed", "opened"]
    assert {e[2].rsplit("/", 1)[-1] for e in events[:2]} == {
        "c00000@example.com",
        "alias@example.com",
    }
    assert events[2][1:3] == ("2024-03-01T15:01:00Z", link)
    assert "Bad content" in events[3][3] + events[4][3] and "no var" in events[3][3] + events[4][3]
    assert events[5][1] == "2024-03-01T15:00:00Z"
    assert rows(sent.world, "SELECT * FROM suppressions") == []


@pytest.mark.parametrize("case", ["tampered", "other key", "http", "other host", "missing",
                                  "expired", "broken", "bad base64", "topic"])  # fmt: skip
def test_what_the_configured_source_did_not_sign_changes_nothing(sent, sns, case):
    certs = {"http": sns.url(scheme="http"), "other host": sns.url(host="localhost"),
             **{c: sns.url(f"/{c}.pem") for c in ("missing", "expired", "broken")}}  # fmt: skip
    key = sns.other_key if case == "other key" else None
    event = ses_event("Bounce", sent.keys[0], bounce=BOUNCE)
    message = sns.notification(event, key=key, SigningCertURL=certs.get(case, sns.url()))
    client = sent.client
    if case == "tampered":
        message["Message"] = message["Message"].replace("c00000@", "c00001@")
    elif case == "bad base64":
        message["Signature"] = "!!!"
    elif case == "topic":
        client.app.state.sns = sns.verifier(topics=["arn:aws:sns:us-east-1:1:other"])
    answer = post_sns(client, message)
    assert answer.status_code == (403 if case == "topic" else 401), answer.text
    if case in ("http", "other host", "topic"):
        assert sns.gets == []  # refused before anything is fetched
    assert rows(sent.world, "SELECT * FROM engagement_events") == []
    assert rows(sent.world, "SELECT * FROM suppressions") == []


def test_a_certificate_that_cannot_be_had_now_is_answered_503_so_sns_retries(sent, sns):
    event = ses_event("Bounce", sent.keys[0], bounce=BOUNCE)
    down = post_sns(sent.client, sns.notification(event, SigningCertURL=sns.url("/down.pem")))
    closed = sns.url().replace(str(sns.port), "1")  # nothing listens on port 1
    unreachable = post_sns(sent.client, sns.notification(event, SigningCertURL=closed))
    assert (down.status_code, unreachable.status_code) == (503, 503)
    assert rows(sent.world, "SELECT * FROM engagement_events") == []


def confirmation(sns: SnsStub, kind: str = "SubscriptionConfirmation", **fields) -> dict:
    return sns.sign({
        "Type": kind, "MessageId": "c0ffee", "Token": "tok", "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic ...", "Timestamp": "2024-03-01T13:00:00Z",
        "SubscribeURL": sns.url(f"/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=tok"), **fields,
    })  # fmt: skip


def test_a_signed_subscription_confirmation_is_confirmed_by_fetching_its_url(sent, sns):
    answer = post_sns(sent.client, confirmation(sns))
    assert answer.status_code == 200 and answer.json()["subscription"] == "confirmed"
    assert sns.gets[-1] == f"/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=tok"
    sns.gets.clear()
    elsewhere = confirmation(
        sns, SubscribeURL=sns.url("/?Action=ConfirmSubscription", host="localhost")
    )
    assert post_sns(sent.client, elsewhere).status_code == 403
    forged = confirmation(sns)
    forged["Token"] = "other"
    assert post_sns(sent.client, forged).status_code == 401
    assert not any("Confirm" in path for path in sns.gets)  # neither was confirmed
    gone = post_sns(sent.client, confirmation(sns, kind="UnsubscribeConfirmation"))
    assert gone.json()["subscription"] == "unsubscribed"
    assert not any("Confirm" in path for path in sns.gets)


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", '{"Type": "Notification"}', '{"Type": "Bogus"}', "[" * 100_000,
     "signed:v3", "signed:header", "signed:text", "signed:no type", "signed:no mail"],
)  # fmt: skip
def test_malformed_sns_messages_are_refused_with_400(sent, sns, body):
    headers = {"Content-Type": "text/plain"}
    if body.startswith("signed:"):
        what = body.split(":")[1]
        message = sns.notification({"eventType": "Bounce", "bounce": BOUNCE})  # no mail
        if what == "v3":
            message["SignatureVersion"] = "3"
        elif what == "header":
            headers["x-amz-sns-message-type"] = "SubscriptionConfirmation"
        elif what in ("text", "no type"):
            message = sns.notification({"hello": 1} if what == "no type" else "hello")
        body = json.dumps(message)
    answer = sent.client.post("/v1/webhooks/ses", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert "Traceback" not in answer.text


def test_ses_on_moto_then_its_notification_names_the_message_by_the_ses_id(
    tmp_path, env, sns, moto_endpoint
):
    """A round trip: the email channel sends through SES (moto); SES's MessageId is what an
    identity notification without tags or headers names, and it finds the row."""
    import boto3

    boto3.client("ses", endpoint_url=moto_endpoint).verify_email_identity(
        EmailAddress="ceap@example.com"
    )
    world = World(tmp_path)
    world.write_program(text=PROGRAM.format(customers=world.customers, extra="").replace(
        "options: {recipients:", f"options: {{provider: ses, sender: ceap@example.com, region: "
        f"us-east-1, endpoint_url: '{moto_endpoint}', recipients:"))  # fmt: skip
    (key,) = world.seed(1)
    assert dispatch(world.store_spec, world.config_dir, now=NOW).counts[("email", "sent")] == 1
    ses_id = world.outbox()[key]["message_id"]
    assert ses_id and not ses_id.startswith("<")
    event = ses_event("Bounce", fmt="notificationType", bounce=BOUNCE)
    event["mail"]["messageId"] = ses_id
    with serve(world, sns) as client:
        assert post_sns(client, sns.notification(event)).json()["recorded"] == 1
    assert rows(world, "SELECT reason FROM suppressions") == [("bounced address",)]


def test_webhooks_need_no_api_key_but_deliveries_do(sent, sns):
    message = sns.notification(ses_event("Delivery", sent.keys[0]))
    assert post_sns(sent.client, message).status_code == 200  # no X-API-Key
    assert (
        sent.client.post(
            "/v1/deliveries", json={"idempotency_key": "k", "event": "delivered"}
        ).status_code
        == 401
    )
