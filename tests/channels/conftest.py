"""Fixtures of the channel tests: a real SMTP server (aiosmtpd) on loopback, a program config
directory with a customers table, and an outbox seeded as the pipeline writes it."""

from __future__ import annotations

import hashlib
import socket
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stores.base import CANDIDATE_COLUMNS, OUTBOX_COLUMNS, iso
from stores.spec import open_store

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

PROGRAM = """
program: reviews
action: review
subject_type: product
source: [{{type: parquet, options: {{path: unused}}}}]
fields: {{customer_id: customer_id, subject_id: product_id, context: [title]}}
scoring: {{models: [{{id: m, type: column, options: {{column: score}}}}]}}
channels:
  - type: email
    options: {{recipients: {{type: parquet, options: {{path: {customers}}}}}}}
  - type: in_app
{extra}
"""


class SmtpSink:
    """Collects messages an aiosmtpd server on 127.0.0.1 receives (``delay``: seconds per
    message, to let a test kill a dispatcher mid-batch).

    Like a real MTA (Postfix queues a message once it has the final dot; RFC 1047), the sink
    keeps a message as soon as it has all of it, then takes ``delay`` to reply: a client that
    dies waiting for the reply has still delivered it."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list = []
        self.delay = delay
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        import asyncio

        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 OK"

    def keys(self) -> list[str]:
        with self.lock:
            return [str(m["X-CEAP-Idempotency-Key"]).strip() for m in self.messages]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_smtp(sink: SmtpSink):
    """An aiosmtpd server on a free loopback port (aiosmtpd's own start cannot use port 0)."""
    from aiosmtpd.controller import Controller

    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, controller.port


@pytest.fixture
def smtp(monkeypatch):
    sink = SmtpSink()
    controller, port = start_smtp(sink)
    monkeypatch.setenv("CEAP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CEAP_SMTP_PORT", str(port))
    monkeypatch.setenv("CEAP_SMTP_STARTTLS", "0")
    yield sink
    controller.stop()


def customers_table(path: Path, n: int, timezone: str = "UTC") -> Path:
    ids = [f"C{i:05d}" for i in range(n)]
    pq.write_table(
        pa.table(
            {
                "customer_id": ids,
                "email": [f"{c.lower()}@example.com" for c in ids],
                "phone": [f"+1555{i:07d}" for i in range(n)],
                "timezone": [timezone] * n,
                "locale": ["en-US"] * n,
            }
        ),  # fmt: skip
        path,
    )
    return path


@pytest.fixture
def world(tmp_path):
    """A config dir (program ``reviews``: email + in_app), customers, an empty store."""
    return World(tmp_path)


class World:
    def __init__(self, root: Path, customers: int = 1000) -> None:
        self.root = root
        self.config_dir = root / "configs"
        self.config_dir.mkdir()
        self.customers = customers_table(root / "customers.parquet", customers)
        self.db = root / "ceap.db"
        self.store_spec = f"sqlite:///{self.db}"
        self.write_program()

    def write_program(self, extra: str = "", name: str = "reviews.yaml", text: str | None = None):
        text = text or PROGRAM.format(customers=self.customers, extra=extra)
        (self.config_dir / name).write_text(text)

    def seed(
        self,
        n: int,
        channels=("email",),
        send_after: datetime = NOW - timedelta(hours=1),
        shadow: bool = False,
        program: str = "reviews",
        start: int = 0,
        subject: str = "",
        **candidate,
    ) -> list[str]:
        """Live candidates and pending outbox rows for customers C{start}..C{start+n-1}, each
        with one subject (``P<customer><subject>``); returns the idempotency keys."""
        store = open_store(self.store_spec)
        custs = [f"C{i:05d}" for i in range(start, start + n)]
        cand = {
            "program": program, "subject_type": "product", "action": "review",
            "context": '{"title": "Kettle"}', "score": 0.5, "model_id": "m", "treatment": "m",
            "created_at": iso(NOW - timedelta(days=1)), "expires_at": iso(NOW + timedelta(days=29)),
            "deliver_after": iso(NOW - timedelta(days=1)), "status": "live", **candidate,
        }  # fmt: skip
        rows = [{**cand, "customer_id": c, "subject_id": f"P{c}{subject}"} for c in custs]
        store.upsert_candidates(pa.table({k: [r[k] for r in rows] for k in CANDIDATE_COLUMNS}))
        keys = []
        out = []
        for ch in channels:
            for c in custs:
                key = hashlib.sha256(f"{program}|{c}|P{c}{subject}|{ch}".encode()).hexdigest()
                keys.append(key)
                out.append({
                    "program": program, "customer_id": c, "subject_id": f"P{c}{subject}", "channel": ch,
                    "send_after": iso(send_after), "status": "pending", "attempts": 0,
                    "idempotency_key": key, "reason": None, "template": None,
                    "shadow": int(shadow), "created_at": iso(NOW - timedelta(days=1)),
                })  # fmt: skip
        cols = [*OUTBOX_COLUMNS, "template", "shadow", "created_at"]
        store.enqueue_outbox(
            pa.table({
                k: pa.array([r[k] for r in out], pa.string() if k in ("reason", "template") else None)
                for k in cols
            })
        )  # fmt: skip
        store.close()
        return keys

    def outbox(self) -> dict[str, dict]:
        store = open_store(self.store_spec)
        try:
            return {r["idempotency_key"]: r for r in store.table("outbox").to_pylist()}
        finally:
            store.close()
