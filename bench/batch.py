"""End-to-end batch throughput: the seed ``reviews`` program into the SQLite store, against
the same funnel as one DuckDB query on the same Parquet data.

    python bench/batch.py --rows 10000000 [beam options, e.g. --direct_num_workers 2]

Prints input rows/s for both, the ratio, and whether the candidates are identical.
Data is generated once per size under --data (default /tmp/ceap-bench) and reused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
NOW = "2026-11-01T00:00:00Z"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", default="/tmp/ceap-bench")
    args, beam_args = parser.parse_known_args()

    import run as cli
    from bench.reference import reviews_reference
    from ceap.context import RunContext
    from configs.schema import parse_program, read_yaml
    from pipelines.batch import run_program
    from sample import generate_warehouse
    from stores.sqlite import SqliteStore

    cli._quiet_logs()
    warehouse = Path(args.data) / f"rows-{args.rows}"
    if not (warehouse / "_done").exists():
        t0 = time.perf_counter()
        generate_warehouse(warehouse, rows=args.rows, seed=42, as_of=AS_OF)
        (warehouse / "_done").write_text("ok")
        print(
            f"generated {args.rows:,} rows per fact table in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )

    config = (Path(__file__).resolve().parents[1] / "configs" / "reviews.yaml").read_text()
    program = parse_program(
        read_yaml(config.replace("data/warehouse", str(warehouse))), "reviews.yaml"
    )
    # The reference reproduces the rule-based arm (score = engagement_score): pin that arm.
    control = next(m for m in program.scoring.models if m.type == "column")
    control.traffic = 100.0
    program.scoring.models = [control]
    home = Path(tempfile.mkdtemp(prefix="ceap-bench-home-"))
    os.environ["CEAP_HOME"] = str(home)
    ctx = RunContext(
        program="reviews", now=datetime.fromisoformat(NOW.replace("Z", "+00:00")), store="sqlite"
    )

    t0 = time.perf_counter()
    funnel = run_program(program, ctx, beam_args)
    ceap_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    expected = reviews_reference(str(warehouse), NOW, program.ranking.top_n)
    duck_s = time.perf_counter() - t0

    store = SqliteStore(home / "ceap.db")
    got = store.connection.execute(
        "SELECT customer_id, subject_id, score FROM candidates ORDER BY score DESC, customer_id, subject_id"
    ).fetchall()
    store.close()
    same = sorted((c, s) for c, s, _ in got) == sorted((r[0], r[1]) for r in expected)

    rows = funnel.read
    print(funnel.render())
    print()
    print(f"{'':24s}{'seconds':>10s}{'input rows/s':>16s}")
    print(
        f"{'ceap (Beam, ' + (' '.join(beam_args) or 'DirectRunner') + ')':24s}{ceap_s:10.1f}{rows / ceap_s:16,.0f}"
    )
    print(f"{'duckdb reference':24s}{duck_s:10.1f}{rows / duck_s:16,.0f}")
    print(
        f"ratio ceap/duckdb: {ceap_s / duck_s:.2f}x   candidates identical: {same} ({len(got):,} vs {len(expected):,})"
    )
    return 0 if same and funnel.check() else 1


if __name__ == "__main__":
    sys.exit(main())
