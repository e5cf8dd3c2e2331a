"""The WhatsApp webhook (issue 17, item 3): status callbacks about messages really sent
through a loopback stand-in of the Graph API reach the store once, named by the wamid it
answered or by the key CEAP sent along; only callbacks signed with the app secret count, and
Meta's verification handshake is answered to the right token only."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from channels.dispatcher import dispatch
from serving.app import create_app
from tests.channels.conftest import NOW, PROGRAM, World
from tests.serving.test_webhooks import rows

SECRET = "wa-app-secret"


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("CEAP_WHATSAPP_APP_SECRET", SECRET)
    monkeypatch.setenv("CEAP_WHATSAPP_VERIFY_TOKEN", "verify-me")
    monkeypatch.setenv("CEAP_WHATSAPP_TOKEN", "token")
    return monkeypatch


@pytest.fixture
def wa_sent(tmp_path, env):
    """Two WhatsApp template messages sent through a loopback Graph API stand-in, which
    answered wamid.1 and wamid.2; the world, the keys by wamid, an API client."""
    world = World(tmp_path)
    server = _graph_api()
    world.write_program(text=PROGRAM.format(customers=world.customers, extra="").replace(
        "  - type: in_app",
        "  - type: whatsapp\n    template: review_request\n"
        f"    options: {{base_url: '{server.url}', phone_number_id: '123',\n"
        f"              recipients: {{type: parquet, options: {{path: {world.customers}}}}}}}",
    ))  # fmt: skip
    world.seed(2, channels=("whatsapp",))
    assert dispatch(world.store_spec, world.config_dir, now=NOW).counts[("whatsapp", "sent")] == 2
    server.close()
    keys = {r["message_id"]: k for k, r in world.outbox().items() if r["channel"] == "whatsapp"}
    assert sorted(keys) == ["wamid.1", "wamid.2"]
    app = create_app(world.store_spec, config_dir=world.config_dir, api_keys=["k"])
    with TestClient(app) as client:
        yield types.SimpleNamespace(world=world, keys=keys, client=client)


def _graph_api():
    """A loopback stand-in for the Graph API's /messages: answers wamid.<n>."""
    count = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            self.rfile.read(int(self.headers["Content-Length"]))
            count.append(1)
            body = json.dumps({"messages": [{"id": f"wamid.{len(count)}"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return types.SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}",
                                 close=lambda: (server.shutdown(), server.server_close()))  # fmt: skip


def status(wamid: str, state: str, **extra) -> dict:
    return {"id": wamid, "status": state, "timestamp": "1709301600", "recipient_id": "15550000001",
            "conversation": {"id": "c1", "origin": {"type": "marketing"}}, **extra}  # fmt: skip


def callback(*statuses: dict, messages: list | None = None) -> dict:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550009999", "phone_number_id": "123"},
             "statuses": list(statuses)}  # fmt: skip
    if messages:
        value["messages"] = messages
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "waba-1", "changes": [{"value": value, "field": "messages"}]}]}  # fmt: skip


def post_wa(client, payload: dict | bytes, secret: str = SECRET, signature: str | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if signature is None:
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/v1/webhooks/whatsapp", content=body,
                       headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature})  # fmt: skip


def test_whatsapp_status_callbacks_are_recorded_once(wa_sent):
    errors = [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "x"}}]
    payload = callback(
        status("wamid.1", "sent"), status("wamid.1", "delivered"), status("wamid.1", "read"),
        status("wamid.other", "delivered", biz_opaque_callback_data=wa_sent.keys["wamid.2"]),
        status("wamid.2", "failed", errors=errors), status("wamid.unknown", "delivered"),
        messages=[{"from": "15550000001", "id": "wamid.in", "type": "text", "text": {"body": "hi"}}],
    )  # fmt: skip
    first = post_wa(wa_sent.client, payload)
    assert first.json() == {"recorded": 4, "replayed": 0, "unmatched": 1, "ignored": 2}
    assert post_wa(wa_sent.client, payload).json()["replayed"] == 4  # Meta delivering it again
    events = rows(wa_sent.world, "SELECT idempotency_key, event, at, event_id, detail "
                                 "FROM engagement_events ORDER BY event_id")  # fmt: skip
    k1, k2 = wa_sent.keys["wamid.1"], wa_sent.keys["wamid.2"]
    assert [e[:4] for e in events] == [
        (k1, "delivered", "2024-03-01T14:00:00Z", "wamid.1/delivered"),
        (k1, "opened", "2024-03-01T14:00:00Z", "wamid.1/read"),
        (k2, "failed", "2024-03-01T14:00:00Z", "wamid.2/failed"),
        (k2, "delivered", "2024-03-01T14:00:00Z", "wamid.other/delivered"),
    ]
    assert "131026" in events[2][4]


@pytest.mark.parametrize("case", ["bad signature", "no signature", "other secret", "no secret"])
def test_whatsapp_callbacks_not_signed_with_the_app_secret_are_refused(wa_sent, env, case):
    payload = callback(status("wamid.1", "delivered"))
    if case == "no secret":
        env.delenv("CEAP_WHATSAPP_APP_SECRET")
    signature = {"bad signature": "sha256=" + "0" * 64, "no signature": ""}.get(case)
    answer = post_wa(wa_sent.client, payload, secret="other", signature=signature) if case == "other secret" \
        else post_wa(wa_sent.client, payload, signature=signature)  # fmt: skip
    assert answer.status_code == 401
    assert rows(wa_sent.world, "SELECT * FROM engagement_events") == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"entry": "x"}', b"[" * 100_000,
                                  json.dumps(callback({"status": "read"})).encode()])  # fmt: skip
def test_signed_but_malformed_whatsapp_callbacks_are_refused_with_400(wa_sent, body):
    assert post_wa(wa_sent.client, body).status_code == 400


def test_whatsapp_verification_answers_the_challenge_to_the_right_token_only(wa_sent, env):
    get = lambda **q: wa_sent.client.get("/v1/webhooks/whatsapp", params={  # noqa: E731
        "hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444", **q})  # fmt: skip
    good = get()
    assert (good.status_code, good.text) == (200, "1158201444")
    assert good.headers["content-type"].startswith("text/plain")
    assert get(**{"hub.verify_token": "wrong"}).status_code == 403
    assert get(**{"hub.mode": "unsubscribe"}).status_code == 403
    env.delenv("CEAP_WHATSAPP_VERIFY_TOKEN")
    assert get(**{"hub.verify_token": ""}).status_code == 403
