"""The embedded store's page size: 16 KiB for a new database (a bulk write of candidates
and outbox rows is ~15% cheaper), while an existing database keeps the size it was made
with (SQLite changes it only on an empty file)."""

from __future__ import annotations

import sqlite3

from stores.sqlite import SqliteStore
from stores.sqlite.schema import PAGE_BYTES


def page_size(path) -> int:
    with sqlite3.connect(path) as con:
        return con.execute("PRAGMA page_size").fetchone()[0]


def test_a_new_store_uses_the_larger_pages(tmp_path):
    SqliteStore(tmp_path / "new.db").close()
    assert page_size(tmp_path / "new.db") == PAGE_BYTES == 16_384


def test_a_store_made_before_keeps_its_pages_and_rows(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as con:  # as SQLite made it before: 4 KiB pages, a table
        con.execute("PRAGMA page_size=4096")
        con.execute("CREATE TABLE opt_outs (customer_id TEXT NOT NULL, program TEXT NOT NULL "
                    "DEFAULT '*', channel TEXT NOT NULL DEFAULT '*', created_at TEXT NOT NULL, "
                    "PRIMARY KEY (customer_id, program, channel))")  # fmt: skip
        con.execute("INSERT INTO opt_outs VALUES ('c1', '*', '*', '2026-01-01T00:00:00Z')")
    store = SqliteStore(path)
    assert store.is_opted_out("c1", "reviews")
    store.close()
    assert page_size(path) == 4096
