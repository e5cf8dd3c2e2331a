"""CEAP listens on the DynamoDB store too (issue 17, item 4): the flows of
tests/serving/test_feedback.py, through the API, with real mail to aiosmtpd and the store on
moto's server: links and provider feedback are recorded once, bounces and complaints
suppress the address for every program."""

from __future__ import annotations

import re
import types
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from channels.dispatcher import dispatch
from serving.app import create_app
from stores.spec import open_store
from tests.channels.conftest import NOW, SmtpSink, World, start_smtp

pytestmark = pytest.mark.integration
PUBLIC = "https://engage.example.com"
KEY = {"X-API-Key": "k"}


def mail(world: World, monkeypatch) -> list:
    """Dispatches what is due to a fresh aiosmtpd; the messages it got."""
    sink = SmtpSink()
    controller, port = start_smtp(sink)
    monkeypatch.setenv("CEAP_SMTP_PORT", str(port))
    try:
        dispatch(world.store_spec, world.config_dir, now=NOW)
    finally:
        controller.stop()
    return sink.messages


@pytest.fixture
def sent(tmp_path, monkeypatch, moto_endpoint):
    """Three review emails mailed from a DynamoDB store; the world, the mails, an API client."""
    for name, value in (("CEAP_PUBLIC_URL", PUBLIC), ("CEAP_SIGNING_KEY", "s" * 32),
                        ("CEAP_SMTP_HOST", "127.0.0.1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    world = World(tmp_path)
    world.store_spec = (
        f"dynamodb://t{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={moto_endpoint}"
        "&consistent=true"
    )
    world.seed(3)
    mails = mail(world, monkeypatch)
    app = create_app(world.store_spec, config_dir=world.config_dir, api_keys=["k"])
    with TestClient(app, follow_redirects=False) as client:
        yield types.SimpleNamespace(world=world, mails=mails, client=client)


def table(world: World, name: str, *columns: str) -> list[tuple]:
    store = open_store(world.store_spec)
    try:
        return sorted(tuple(r[c] for c in columns) for r in store.table(name).to_pylist())
    finally:
        store.close()


def test_links_record_each_event_once(sent):
    first, second = sent.mails[0], sent.mails[1]
    unsubscribe = re.fullmatch(r"<(.+)>", str(first["List-Unsubscribe"])).group(1)
    text = second.get_body(("plain",)).get_content()
    click = next(u for u in re.findall(r"https?://\S+", text) if "/c/" in u)
    for _ in range(2):  # each, then a replay
        done = sent.client.post(urlsplit(unsubscribe).path, content="List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert done.status_code == 200
        assert sent.client.get(urlsplit(click).path).status_code == 302
    customers = [str(m["To"]).split("@")[0].upper() for m in (first, second)]
    assert table(sent.world, "opt_outs", "customer_id", "program", "channel") == [
        (customers[0], "reviews", "email")
    ]
    assert table(sent.world, "engagement_events", "customer_id", "event") == sorted(
        [(customers[0], "unsubscribed"), (customers[1], "clicked")]
    )


def test_bounces_and_complaints_suppress_the_address_for_every_program(sent, monkeypatch):
    keys = [str(m["X-CEAP-Idempotency-Key"]).strip() for m in sent.mails]
    batch = [
        {"idempotency_key": keys[0], "event": "bounced", "permanent": True},
        {"message_id": f"<{keys[1]}@ceap>", "event": "complained", "id": "fbl-1"},
        {"idempotency_key": "no-such-message", "event": "delivered"},
    ]  # fmt: skip
    post = lambda: sent.client.post("/v1/deliveries", json=batch, headers=KEY).json()  # noqa: E731
    assert post() == {"recorded": 2, "replayed": 0, "unmatched": 1}
    assert post() == {"recorded": 0, "replayed": 2, "unmatched": 1}  # a replay
    to = [str(m["To"]) for m in sent.mails]
    assert dict(table(sent.world, "suppressions", "address", "reason")) == {
        to[0]: "bounced address", to[1]: "complained"}  # fmt: skip
    text = (sent.world.config_dir / "reviews.yaml").read_text()
    sent.world.write_program(name="surveys.yaml", text=text.replace("reviews", "surveys"))
    sent.world.seed(3, program="surveys")
    assert [str(m["To"]) for m in mail(sent.world, monkeypatch)] == [to[2]]
    surveys = table(sent.world, "outbox", "program", "customer_id", "status", "reason")
    customer = [a.split("@")[0].upper() for a in to]  # the mails came in any order
    assert {r[1]: r[2:] for r in surveys if r[0] == "surveys"} == {
        customer[0]: ("suppressed", "bounced address"),
        customer[1]: ("suppressed", "complained"), customer[2]: ("sent", None),
    }  # fmt: skip
