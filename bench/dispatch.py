"""Dispatcher throughput: outbox rows/s in shadow mode, and messages/s over SMTP.

    python bench/dispatch.py [--shadow-rows 50000] [--smtp-rows 2000] [--batch-size 500]

1. Shadow: ``--shadow-rows`` due email rows (shadow channel) with live candidates and a
   customers table; ``dispatch`` leases, screens (opt-outs, candidate, frequency cap, quiet
   hours), resolves recipients, renders the Jinja2 template and records ``shadowed``.
   Target: 10,000 rows/s.
2. SMTP: ``--smtp-rows`` rows sent to a local aiosmtpd server on loopback (one reused
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

from stores.base import CANDIDATE_COLUMNS, OUTBOX_COLUMNS, iso, open_store  # noqa: E402

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


def run(rows: int, shadow: bool, batch_size: int) -> tuple[float, object]:
    from channels.dispatcher import dispatch

    with tempfile.TemporaryDirectory(prefix="ceap-bench-") as tmp:
        spec = prepare(Path(tmp), rows, shadow)
        started = time.perf_counter()
        summary = dispatch(spec, Path(tmp) / "configs", now=NOW, batch_size=batch_size)
        return time.perf_counter() - started, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shadow-rows", type=int, default=50_000)
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
