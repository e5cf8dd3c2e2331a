"""Dispatcher throughput: outbox rows/s in shadow mode, and messages/s over SMTP.

    python bench/dispatch.py [--shadow-rows 50000] [--journey-rows 20000] [--smtp-rows 2000]
                             [--batch-size 500]

1. Shadow: ``--shadow-rows`` due email rows (shadow channel) with live candidates and a
   customers table; ``dispatch`` leases, screens (opt-outs, candidate, frequency cap, quiet
   hours), resolves recipients, renders the Jinja2 template and records ``shadowed``.
   Target: 10,000 rows/s.
2. Journey: ``--journey-rows`` candidates with 3 steps each (DESIGN §9), in shadow mode: an
   email due now, an in-app banner due now ``when: not_responded`` (the lease reads each
   candidate's responses and engagement), and a reminder email ``after`` the first,
   ``waiting`` until it is shadowed, then released 2 days on. Waiting rows must not slow the
   scan (they are not in the due index): target 10,000 rows/s over the rows handled.
3. SMTP: ``--smtp-rows`` rows sent to a local aiosmtpd server on loopback (one reused
   connection, each message's outcome recorded before the next: the in-doubt window).
Prints rows/s for each; every run uses a fresh temporary store.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stores.base import CANDIDATE_COLUMNS, OUTBOX_COLUMNS, iso  # noqa: E402
from stores.spec import open_store  # noqa: E402

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
PROGRAM = """
program: bench
action: review
subject_type: product
source: [{{type: parquet, options: {{path: unused}}}}]
fields: {{customer_id: customer_id, subject_id: product_id, context: [title]}}
scoring: {{models: [{{id: m, type: column, options: {{column: score}}}}]}}
channels:
  - type: email
    shadow: {shadow}
    options: {{recipients: {{type: parquet, options: {{path: {customers}}}}}}}
"""


def prepare(root: Path, rows: int, shadow: bool) -> str:
    ids = [f"C{i:07d}" for i in range(rows)]
    customers = root / "customers.parquet"
    pq.write_table(pa.table({"customer_id": ids, "email": [f"{c.lower()}@example.com" for c in ids],
                             "timezone": ["Europe/Paris"] * rows}), customers)  # fmt: skip
    (root / "configs").mkdir()
    (root / "configs" / "bench.yaml").write_text(PROGRAM.format(shadow=str(shadow).lower(),
                                                                customers=customers))  # fmt: skip
    spec = f"sqlite:///{root / 'ceap.db'}"
    store = open_store(spec)
    const = lambda v: [v] * rows  # noqa: E731
    subjects = [f"P{i}" for i in range(rows)]
    store.upsert_candidates(pa.table({
        "program": const("bench"), "customer_id": ids, "subject_type": const("product"),
        "subject_id": subjects, "action": const("review"), "context": const('{"title": "Kettle"}'),
        "score": const(0.5), "model_id": const("m"), "treatment": const("m"),
        "created_at": const(iso(NOW - timedelta(days=1))), "expires_at": const(iso(NOW + timedelta(days=29))),
        "deliver_after": const(iso(NOW)), "status": const("live"),
    }).select(CANDIDATE_COLUMNS))  # fmt: skip
    keys = [
        hashlib.sha256(f"bench|{c}|{s}|email".encode()).hexdigest()
        for c, s in zip(ids, subjects, strict=True)
    ]
    store.enqueue_outbox(pa.table({
        "program": const("bench"), "customer_id": ids, "subject_id": subjects, "channel": const("email"),
        "send_after": const(iso(NOW - timedelta(hours=1))), "status": const("pending"),
        "attempts": const(0), "idempotency_key": keys, "reason": pa.nulls(rows, pa.string()),
        "template": pa.nulls(rows, pa.string()), "shadow": const(0), "created_at": const(iso(NOW)),
    }).select([*OUTBOX_COLUMNS, "template", "shadow", "created_at"]))  # fmt: skip
    store.close()
    return spec


JOURNEY = """
  - type: in_app
    name: banner
    shadow: true
    when: not_responded
  - type: email
    name: reminder
    shadow: true
    after: {{step: email, delay: 2d}}
    options: {{recipients: {{type: parquet, options: {{path: {customers}}}}}}}
"""


def add_steps(root: Path, rows: int) -> None:
    """The journey's two other steps for every candidate ``prepare`` made: the banner due
    now, the reminder waiting for the email."""
    config = root / "configs" / "bench.yaml"
    config.write_text(config.read_text() + JOURNEY.format(customers=root / "customers.parquet"))
    store = open_store(f"sqlite:///{root / 'ceap.db'}")
    ids = [f"C{i:07d}" for i in range(rows)]
    subjects = [f"P{i}" for i in range(rows)]
    for step, channel, status in (
        ("banner", "in_app", "pending"),
        ("reminder", "email", "waiting"),
    ):
        const = lambda v: [v] * rows  # noqa: E731
        keys = [hashlib.sha256(f"bench|{c}|{s}|{step}".encode()).hexdigest()
                for c, s in zip(ids, subjects, strict=True)]  # fmt: skip
        store.enqueue_outbox(pa.table({
            "program": const("bench"), "customer_id": ids, "subject_id": subjects,
            "channel": const(channel), "send_after": const(iso(NOW - timedelta(hours=1))),
            "status": const(status), "attempts": const(0), "idempotency_key": keys,
            "reason": pa.nulls(rows, pa.string()), "template": pa.nulls(rows, pa.string()),
            "shadow": const(0), "created_at": const(iso(NOW)), "step": const(step),
        }))  # fmt: skip
    store.close()


def run(rows: int, shadow: bool, batch_size: int, steps: bool = False) -> tuple[float, object]:
    from channels.dispatcher import dispatch

    with tempfile.TemporaryDirectory(prefix="ceap-bench-") as tmp:
        spec = prepare(Path(tmp), rows, shadow)
        if steps:
            add_steps(Path(tmp), rows)
        started = time.perf_counter()
        summary = dispatch(spec, Path(tmp) / "configs", now=NOW, batch_size=batch_size)
        return time.perf_counter() - started, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shadow-rows", type=int, default=50_000)
    parser.add_argument("--journey-rows", type=int, default=20_000)
    parser.add_argument("--smtp-rows", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    import os
    import socket

    os.environ["CEAP_FREQUENCY_CAP"] = "off"
    seconds, summary = run(args.shadow_rows, True, args.batch_size)
    shadowed = summary.total("shadowed")
    print(f"shadow: {shadowed:,} rows in {seconds:.2f}s = {shadowed / seconds:,.0f} rows/s "
          f"(target 10,000)")  # fmt: skip
    seconds, summary = run(args.journey_rows, True, args.batch_size, steps=True)
    handled = summary.total("shadowed") + summary.total("suppressed")
    print(f"journey (3 steps, {args.journey_rows:,} candidates): {handled:,} rows in "
          f"{seconds:.2f}s = {handled / seconds:,.0f} rows/s (target 10,000); "
          f"{args.journey_rows:,} reminders released 2 days on")  # fmt: skip

    from aiosmtpd.controller import Controller

    class Count:
        n = 0

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            Count.n += 1
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    os.environ.update(CEAP_SMTP_HOST="127.0.0.1", CEAP_SMTP_PORT=str(port))
    try:
        seconds, summary = run(args.smtp_rows, False, args.batch_size)
    finally:
        controller.stop()
    sent = summary.total("sent")
    print(f"smtp:   {sent:,} messages in {seconds:.2f}s = {sent / seconds:,.0f} messages/s "
          f"(aiosmtpd on loopback received {Count.n:,})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
