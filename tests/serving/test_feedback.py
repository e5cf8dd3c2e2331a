"""CEAP listens (issue 17, items 3-4): the links in real mail (unsubscribe, click, pixel) and
generic provider feedback reach the store once, act on it, and bad input gets nothing."""

from __future__ import annotations

import re
import sqlite3
import time
import types
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from ceap.tokens import Purpose, sign
from channels.dispatcher import dispatch
from serving.app import create_app
from tests.channels.conftest import NOW, SmtpSink, World, start_smtp  # noqa: F401

PUBLIC = "https://engage.example.com"
KEY = {"X-API-Key": "k"}


@pytest.fixture
def sent(tmp_path, monkeypatch):
    """Three review emails, really mailed to aiosmtpd; the world, the mails, an API client."""
    monkeypatch.setenv("CEAP_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("CEAP_SIGNING_KEY", "s" * 32)
    sink = SmtpSink()
    controller, port = start_smtp(sink)
    monkeypatch.setenv("CEAP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CEAP_SMTP_PORT", str(port))
    world = World(tmp_path)
    world.seed(3)
    dispatch(world.store_spec, world.config_dir, now=NOW)
    controller.stop()
    app = create_app(world.store_spec, config_dir=world.config_dir, api_keys=["k"])
    with TestClient(app, follow_redirects=False) as client:
        yield types.SimpleNamespace(world=world, mails=sink.messages, client=client)


def rows(world: World, sql: str) -> list[tuple]:
    with sqlite3.connect(world.db) as con:
        return con.execute(sql).fetchall()


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC)
    return urlsplit(url).path


def test_one_click_unsubscribe_opts_out_once_and_the_page_changes_nothing(sent):
    mail = sent.mails[0]
    url = re.fullmatch(r"<(.+)>", str(mail["List-Unsubscribe"])).group(1)
    customer = str(mail["To"]).split("@")[0].upper()
    page = sent.client.get(path_of(url))
    assert page.status_code == 200 and "<form" in page.text
    assert rows(sent.world, "SELECT * FROM opt_outs") == []  # a scanner's GET changes nothing
    for _ in range(2):  # the one-click POST, then a replay
        done = sent.client.post(path_of(url), content="List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert done.status_code == 200
    assert rows(sent.world, "SELECT customer_id, program, channel FROM opt_outs") == [
        (customer, "reviews", "email")
    ]
    events = rows(sent.world, "SELECT customer_id, event, channel, step FROM engagement_events")
    assert events == [(customer, "unsubscribed", "email", "email")]


def test_a_click_is_recorded_and_redirects_to_exactly_the_signed_url(sent):
    mail = sent.mails[0]
    text = mail.get_body(("plain",)).get_content()
    url = next(u for u in re.findall(r"https?://\S+", text) if "/c/" in u)
    first = sent.client.get(path_of(url))
    assert first.status_code == 302
    target = first.headers["location"]
    assert target.startswith("https://example.com/review/P") and "utm_source=ceap" in target
    sent.client.get(path_of(url))  # a second click on the same link: the same event
    assert sent.client.app.state.feedback.flush()  # clicks are written behind the redirect
    (event,) = rows(sent.world, "SELECT event, detail FROM engagement_events")
    assert event[0] == "clicked" and target in event[1]
    token = path_of(url).removeprefix("/c/")
    for bad in (token[:-3] + "AAA", sign(Purpose.UNSUBSCRIBE, "x"), "x" * 10):
        refused = sent.client.get(f"/c/{bad}")
        assert refused.status_code == 400 and "location" not in refused.headers
        assert refused.text == "this link is not valid"  # nothing about why


def test_an_expired_link_answers_410(sent, monkeypatch):
    token = sign(Purpose.CLICK, "k", "https://example.com/")
    later = time.time() + 400 * 86400
    monkeypatch.setattr("itsdangerous.timed.time", types.SimpleNamespace(time=lambda: later))
    assert sent.client.get(f"/c/{token}").status_code == 410


def test_the_pixel_records_an_open_and_answers_a_gif(sent):
    page = sent.mails[1].get_body(("html",)).get_content()
    pixel = re.search(r'<img src="([^"]+)"', page).group(1)
    seen = sent.client.get(path_of(pixel))
    assert seen.status_code == 200 and seen.headers["content-type"] == "image/gif"
    assert seen.content.startswith(b"GIF89a") and "no-store" in seen.headers["cache-control"]
    assert sent.client.app.state.feedback.flush()  # opens are written behind the pixel
    assert rows(sent.world, "SELECT event FROM engagement_events") == [("opened",)]


def test_bounces_and_complaints_suppress_the_address_for_every_program(sent, monkeypatch):
    keys = [str(m["X-CEAP-Idempotency-Key"]).strip() for m in sent.mails]
    post = lambda body: sent.client.post("/v1/deliveries", json=body, headers=KEY)  # noqa: E731
    transient = post({"idempotency_key": keys[0], "event": "bounced", "permanent": False,
                      "at": "2024-03-01T13:00:00Z"})  # fmt: skip
    assert transient.json() == {"recorded": 1, "replayed": 0, "unmatched": 0}
    assert rows(sent.world, "SELECT * FROM suppressions") == []  # a full mailbox: try again
    batch = [
        {"idempotency_key": keys[0], "event": "bounced", "permanent": True, "at": "2024-03-01T14:00:00Z"},
        {"message_id": f"<{keys[1]}@ceap>", "event": "complained", "id": "fbl-1"},
        {"idempotency_key": "no-such-message", "event": "delivered"},
    ]  # fmt: skip
    assert post(batch).json() == {"recorded": 2, "replayed": 0, "unmatched": 1}
    assert post(batch).json() == {"recorded": 0, "replayed": 2, "unmatched": 1}  # a replay
    barred = dict(rows(sent.world, "SELECT address, reason FROM suppressions"))
    to = [str(m["To"]) for m in sent.mails]
    assert barred == {to[0]: "bounced address", to[1]: "complained"}
    # Another program's later email to the bounced address ends suppressed, never sent.
    other = sent.world.root / "configs" / "reviews.yaml"
    sent.world.write_program(name="surveys.yaml", text=other.read_text().replace(
        "program: reviews", "program: surveys"))  # fmt: skip
    sent.world.seed(2, program="surveys")
    sink = SmtpSink()
    controller, port = start_smtp(sink)
    monkeypatch.setenv("CEAP_SMTP_PORT", str(port))
    summary = dispatch(sent.world.store_spec, sent.world.config_dir, now=NOW)
    controller.stop()
    assert [str(m["To"]) for m in sink.messages] == []  # C00000 bounced, C00001 complained
    assert summary.counts[("email", "suppressed")] == 2
    reasons = rows(sent.world, "SELECT customer_id, reason FROM outbox WHERE program = 'surveys' "
                               "AND channel = 'email' ORDER BY 1")  # fmt: skip
    assert reasons == [("C00000", "bounced address"), ("C00001", "complained")]


@pytest.mark.parametrize(
    "body",
    [{"event": "bounced"}, {"idempotency_key": "k", "event": "exploded"}, [], "text",
     {"idempotency_key": "k", "event": "opened", "detail": "x" * 10_000}],
)  # fmt: skip
def test_malformed_feedback_is_refused(sent, body):
    assert sent.client.post("/v1/deliveries", json=body, headers=KEY).status_code == 422


def test_deliveries_need_an_api_key_and_links_do_not(sent):
    body = {"idempotency_key": "k", "event": "delivered"}
    assert sent.client.post("/v1/deliveries", json=body).status_code == 401
    assert sent.client.get("/o/nonsense.gif").status_code == 400  # no 401: links need no key


def test_an_over_long_token_is_refused_unread(sent):
    for path in ("/c/" + "x" * 3000, "/o/" + "x" * 3000 + ".gif"):
        refused = sent.client.get(path)
        assert refused.status_code == 400 and refused.text == "this link is not valid"
