"""A webhook on loopback that records the alerts POSTed to it (``CEAP_ALERT_WEBHOOK`` points
at it for the test), for the alert tests of every layer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ceap import alerts


@pytest.fixture
def webhook(monkeypatch) -> Iterator[list[dict]]:
    """The alerts received, in order; alert dedup starts afresh."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(alerts.WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hook")
    monkeypatch.delenv(alerts.SNS_TOPIC_ENV, raising=False)
    alerts.reset()
    yield received
    server.shutdown()
    server.server_close()
    alerts.reset()
