"""A batch run's bad source rows, when a filter chain comes next, are marked for that
chain to drop rather than copied out: the funnel and the stored rows are those of dropping
them at once (each bad row a dead letter, never counted by a filter)."""

from __future__ import annotations

import sqlite3

import pyarrow as pa

from tests.pipelines.test_migration import deliveries, home, program, run, write  # noqa: F401


def with_bad_rows(n: int = 300) -> pa.Table:
    table = deliveries(n)
    customers = table.column("customer_id").to_pylist()
    times = table.column("delivered_at").to_pylist()
    for i in range(0, n, 7):  # every 7th row: no customer; every 11th: no time
        customers[i] = " "
    for i in range(0, n, 11):
        times[i] = None
    table = table.set_column(0, "customer_id", pa.array(customers))
    return table.set_column(2, "delivered_at", pa.array(times, pa.timestamp("us", "UTC")))


def test_bad_rows_before_a_filter_chain_are_dead_letters_and_nothing_else(tmp_path, home):  # noqa: F811
    table = with_bad_rows()
    source = write(tmp_path / "src", table)
    funnel, stored = run(program(f"{{type: parquet, options: {{path: {source}}}}}"), tmp_path, "b")
    rows = table.to_pylist()
    bad = [r for r in rows if not r["customer_id"].strip() or r["delivered_at"] is None]
    good = [r for r in rows if r not in bad]
    assert funnel.read == 300 and funnel.dead_letters == {"candidates": len(bad)}
    # the program's one filter keeps engagement_score >= 0.2, among the good rows only
    low = sum(1 for r in good if r["engagement_score"] < 0.2)
    assert funnel.filtered == {("engaged", "not (engagement_score >= 0.2)"): low}
    assert funnel.check()
    bad_ids = {(r["customer_id"], r["product_id"]) for r in bad}
    assert not {(c, s) for c, s, *_ in stored} & bad_ids
    with sqlite3.connect(tmp_path / "b.db") as con:
        (letters,) = con.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert letters == len(bad)
