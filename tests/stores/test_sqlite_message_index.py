"""The outbox's message-id index holds sent rows only: the pipeline's inserts (no message
id yet) skip it, a provider's feedback still finds its row through it, and a store made
when it indexed every row gets the partial one."""

from __future__ import annotations

import sqlite3

from stores.sqlite import SqliteStore


def index_sql(path) -> str:
    with sqlite3.connect(path) as con:
        (sql,) = con.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'outbox_by_message_id'"
        ).fetchone()
    return sql


def plan(store: SqliteStore) -> str:
    rows = store.connection.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM outbox WHERE message_id = ? LIMIT 1", ("m",)
    ).fetchall()
    return " ".join(r[-1] for r in rows)


def outbox_row(con, key: str, message_id: str | None) -> None:
    con.execute(
        "INSERT INTO outbox (program, customer_id, subject_id, channel, step, send_after, "
        "idempotency_key, message_id) VALUES ('p', ?, 's', 'email', 'email', "
        "'2026-01-01T00:00:00Z', ?, ?)",
        (key, key, message_id),
    )


def test_unsent_rows_are_not_in_the_message_index_and_lookups_use_it(tmp_path):
    store = SqliteStore(tmp_path / "c.db")
    with store.writing():
        for i in range(50):
            outbox_row(store.connection, f"k{i}", None)
        outbox_row(store.connection, "sent", "<m-1@example.test>")
    assert "WHERE message_id IS NOT NULL" in index_sql(tmp_path / "c.db")
    assert "outbox_by_message_id" in plan(store)
    assert store.find_message(message_id="<m-1@example.test>")["idempotency_key"] == "sent"
    assert store.find_message(message_id="<m-2@example.test>") is None
    store.close()


def test_a_store_whose_index_held_every_row_gets_the_partial_one(tmp_path):
    path = tmp_path / "old.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as con:  # as feedback's first version made it
        con.execute("DROP INDEX outbox_by_message_id")
        con.execute("CREATE INDEX outbox_by_message_id ON outbox (message_id)")
        outbox_row(con, "sent", "<m-1@example.test>")
    assert "WHERE" not in index_sql(path)
    store = SqliteStore(path)
    assert "WHERE message_id IS NOT NULL" in index_sql(path)
    assert "outbox_by_message_id" in plan(store)
    assert store.find_message(message_id="<m-1@example.test>")["customer_id"] == "sent"
    store.close()
    SqliteStore(path).close()  # opened again: nothing left to change
    assert "WHERE message_id IS NOT NULL" in index_sql(path)
