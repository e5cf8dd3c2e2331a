"""Reactive latency: events sent at a fixed rate through the embedded event log into a
running ``run.py --mode streaming`` process; prints event -> candidate-in-store latency
(p50/p99) per rate, the sustained events/s, and whether every event was accounted for.

    python bench/streaming.py [--rates 200 2000] [--seconds 10]

The store is polled every 2 ms for new candidate rows, so figures include up to 2 ms of
measurement slack. Events use customers that pass the seed program's filters, so each one
should become a candidate.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def eligible_customers(warehouse: Path) -> list[str]:
    t = pq.read_table(
        warehouse / "customers", columns=["customer_id", "engagement_score", "opted_out"]
    )
    ok = pc.and_(pc.greater_equal(t["engagement_score"], 0.2), pc.invert(t["opted_out"]))
    return t.filter(ok).column("customer_id").to_pylist()


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an ascending list, nearest rank; NaN when empty."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def start_stream(
    program: str,
    configs: Path,
    home: Path,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """``run.py --program P --mode streaming`` as a subprocess on the store under ``home``
    (``CEAP_HOME``); ``env`` adds variables (AWS endpoint and credentials for Kinesis)."""
    full = {**os.environ, **(env or {}), "CEAP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--program", program, "--mode", "streaming", "--config-dir", str(configs)],
        env=full, stdout=stdout, stderr=stderr, text=True,
    )  # fmt: skip


def run_rate(rate: int, seconds: float, log, db: Path, customers: list[str], offset: int) -> dict:
    from connectors.event_log import EventLog

    assert isinstance(log, EventLog)
    con = sqlite3.connect(db)
    last = con.execute("SELECT coalesce(max(rowid), 0) FROM candidates").fetchone()[0]
    sent: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    total = int(rate * seconds)
    tick = 0.005
    start = time.perf_counter()
    i = 0
    while i < total or len(seen) < len(sent):
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        if i < due:
            batch = []
            for k in range(i, due):
                key = (customers[(offset + k) % len(customers)], f"V{offset + k:09d}")
                batch.append(
                    {
                        "customer_id": key[0],
                        "video_id": key[1],
                        "completed_at": at,
                        "watched_pct": 0.95,
                    }
                )
            log.append(batch)
            stamp = time.perf_counter()
            for e in batch:
                sent[(e["customer_id"], e["video_id"])] = stamp
            i = due
        for rowid, c, s in con.execute(
            "SELECT rowid, customer_id, subject_id FROM candidates WHERE rowid > ?", (last,)
        ):
            last = max(last, rowid)
            if (c, s) in sent and (c, s) not in seen:
                seen[(c, s)] = time.perf_counter()
        if time.perf_counter() - start > seconds * 3 + 30:
            break
        time.sleep(min(tick, 0.002))
    elapsed = max(seen.values(), default=start) - start
    lat = sorted((seen[k] - sent[k]) * 1000 for k in seen)
    con.close()
    return {"rate": rate, "sent": len(sent), "candidates": len(seen), "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99),
            "max": lat[-1] if lat else float("nan"), "events_per_s": len(seen) / elapsed if elapsed else 0}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    from connectors.event_log import EventLog
    from sample import generate_warehouse

    work = Path(tempfile.mkdtemp(prefix="ceap-stream-bench-"))
    warehouse, log_dir, home, configs = work / "wh", work / "log", work / "home", work / "configs"
    generate_warehouse(warehouse, rows=20_000, seed=5)
    configs.mkdir()
    text = (
        (ROOT / "configs" / "video_ratings.yaml")
        .read_text()
        .replace("data/warehouse", str(warehouse))
    )
    text = text.replace("data/events/video_ratings", str(log_dir))
    (configs / "video_ratings.yaml").write_text(text)
    customers = eligible_customers(warehouse)
    log = EventLog(log_dir)
    proc = start_stream("video_ratings", configs, home)
    try:
        warm = run_rate(5, 1, log, _wait_db(home / "ceap.db", log, proc), customers, 10**8)
        assert warm["candidates"] == warm["sent"], "the stream did not come up"
        print(
            f"{'rate/s':>8}{'sent':>8}{'cands':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'sustained/s':>13}  lost"
        )
        offset = 0
        for rate in args.rates:
            r = run_rate(rate, args.seconds, log, home / "ceap.db", customers, offset)
            offset += r["sent"]
            lost = r["sent"] - r["candidates"]
            print(f"{r['rate']:>8}{r['sent']:>8}{r['candidates']:>8}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['max']:>9.1f}"
                  f"{r['events_per_s']:>13,.0f}  {lost}")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


def _wait_db(db: Path, log, proc) -> Path:
    """Waits until the streaming process has created its store."""
    deadline = time.monotonic() + 60
    while not db.exists():
        if proc.poll() is not None:
            raise SystemExit(f"the streaming process ended: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise SystemExit("the streaming process did not start")
        time.sleep(0.1)
    return db


if __name__ == "__main__":
    sys.exit(main())
