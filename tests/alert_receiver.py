"""A webhook on loopback that records the alerts POSTed to it (``CEAP_ALERT_WEBHOOK`` points
at it for the test), for the alert tests of every layer; and one that answers 500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ceap import alerts


@contextmanager
def _serving(monkeypatch, path: str, status: int, received: list[dict]) -> Iterator[str]:
    """A webhook at ``path`` answering ``status``, set as the alert target; its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}{path}"
    monkeypatch.setenv(alerts.WEBHOOK_ENV, url)
    monkeypatch.delenv(alerts.SNS_TOPIC_ENV, raising=False)
    alerts.reset()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        alerts.reset()


@pytest.fixture
def webhook(monkeypatch) -> Iterator[list[dict]]:
    """The alerts received, in order; alert dedup starts afresh."""
    received: list[dict] = []
    with _serving(monkeypatch, "/hook", 204, received):
        yield received


@pytest.fixture
def failing_webhook(monkeypatch) -> Iterator[str]:
    """A Slack-style webhook (its secret is in the path) that answers 500; its URL."""
    with _serving(monkeypatch, "/services/T0/B0/SECRETTOKEN123", 500, []) as url:
        yield url
