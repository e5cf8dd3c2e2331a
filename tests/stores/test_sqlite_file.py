"""The embedded store's SQLite file: 16 KiB pages for a new database (a bulk write of
candidates and outbox rows is ~15% cheaper) while an existing one keeps its own, and a
failed commit that leaves nothing open."""

from __future__ import annotations

import sqlite3

import pytest

from stores.sqlite import SqliteStore
from stores.sqlite.schema import PAGE_BYTES, Transaction


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


def test_a_failed_commit_is_rolled_back_and_later_writes_are_stored(tmp_path):
    """A COMMIT that fails must not leave its transaction open for the next write to be
    silently part of (and lost with)."""
    path = tmp_path / "c.db"
    store = SqliteStore(path)
    con = store.connection
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    con.execute("CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError), Transaction(con) as t:
        t.execute("INSERT INTO c VALUES (42)")  # the deferred check fails the COMMIT
    assert not con.in_transaction
    store.add_opt_out("c1", None, None)
    store.close()
    again = SqliteStore(path)
    assert again.is_opted_out("c1", "reviews")
    again.close()
