"""The export's tables (pipelines/export.py): the Parquet schema of each, the SQL that selects
a day of it from the store, and the cast from the store's text columns to that schema.

One SQL text per table serves both paths: SQLite runs it on the embedded store's own tables,
DuckDB runs it over the Arrow tables (``store.table(name)``) of other backends, with the
columns a backend does not keep (``SOURCE_COLUMNS``) added as nulls. Times are ISO-8601 text
in every store, so a day is a text range (``day_bounds``), which SQLite's indexes serve.
"""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

TABLES = ("candidates", "outbox", "responses", "events")
TS = pa.timestamp("ms", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "candidates": pa.schema([
        ("customer_id", pa.string()), ("subject_type", pa.string()), ("subject_id", pa.string()),
        ("action", pa.string()), ("context", pa.string()), ("score", pa.float64()),
        ("model_id", pa.string()), ("treatment", pa.string()), ("created_at", TS),
        ("expires_at", TS), ("deliver_after", TS), ("status", pa.string()),
    ]),
    "outbox": pa.schema([
        ("customer_id", pa.string()), ("subject_id", pa.string()), ("channel", pa.string()),
        ("send_after", TS), ("status", pa.string()), ("attempts", pa.int64()),
        ("idempotency_key", pa.string()), ("reason", pa.string()), ("template", pa.string()),
        ("shadow", pa.bool_()), ("created_at", TS), ("sent_at", TS), ("updated_at", TS),
        ("model_id", pa.string()), ("treatment", pa.string()), ("step", pa.string()),
    ]),
    "responses": pa.schema([
        ("customer_id", pa.string()), ("subject_id", pa.string()), ("response", pa.string()),
        ("created_at", TS), ("model_id", pa.string()), ("treatment", pa.string()),
    ]),
    "events": pa.schema([
        ("customer_id", pa.string()), ("subject_id", pa.string()), ("channel", pa.string()),
        ("step", pa.string()), ("idempotency_key", pa.string()), ("event", pa.string()),
        ("at", TS), ("detail", pa.string()), ("model_id", pa.string()),
        ("treatment", pa.string()),
    ]),
}  # fmt: skip
"""The files' columns; ``program`` and ``dt`` are partition directories, not columns."""

# One text per table, run by SQLite on the embedded store and by DuckDB over the Arrow tables
# of other backends. Times are ISO text, so a day is a text range (index-friendly).
_ARM = (
    "LEFT JOIN candidates c ON c.program = {t}.program AND c.customer_id = {t}.customer_id "
    "AND c.subject_id = {t}.subject_id"
)
QUERIES: dict[str, str] = {
    "candidates": (
        "SELECT program, customer_id, subject_type, subject_id, action, context, score, model_id, "
        "treatment, created_at, expires_at, deliver_after, status FROM candidates "
        "WHERE created_at >= ? AND created_at < ? ORDER BY program"
    ),
    "outbox": (
        "SELECT o.program, o.customer_id, o.subject_id, o.channel, o.send_after, o.status, "
        "o.attempts, o.idempotency_key, CASE WHEN o.status = 'shadowed' THEN 'shadow' "
        "ELSE o.reason END AS reason, o.template, o.shadow, o.created_at, o.sent_at, "
        f"o.updated_at, c.model_id, c.treatment, coalesce(o.step, o.channel) AS step "
        f"FROM outbox o {_ARM.format(t='o')} "
        "WHERE (o.created_at >= ? AND o.created_at < ?) OR (o.sent_at >= ? AND o.sent_at < ?) "
        "ORDER BY o.program"
    ),
    "responses": (
        "SELECT r.program, r.customer_id, r.subject_id, r.response, r.created_at, c.model_id, "
        f"c.treatment FROM responses r {_ARM.format(t='r')} "
        "WHERE r.created_at >= ? AND r.created_at < ? ORDER BY r.program"
    ),
    "events": (
        "SELECT e.program, e.customer_id, e.subject_id, e.channel, e.step, e.idempotency_key, "
        "e.event, e.at, e.detail, c.model_id, c.treatment FROM engagement_events e "
        f"{_ARM.format(t='e')} WHERE e.at >= ? AND e.at < ? "
        "ORDER BY e.program, e.at, e.idempotency_key, e.event"
    ),
}
SOURCE_TABLES = {"events": "engagement_events"}
"""The store table an export table is read from, where their names differ."""
FEEDBACK_TABLES = frozenset({"events"})
"""Tables only a store with the delivery feedback role keeps (stores/ports.py, Role.FEEDBACK):
from any other store they export no rows (and no files), without an error."""
SOURCE_COLUMNS = {  # what the queries read from each store table (absent ones read as null)
    "candidates": ["program", "customer_id", "subject_id", "subject_type", "action", "context",
                   "score", "model_id", "treatment", "created_at", "expires_at", "deliver_after",
                   "status"],
    "outbox": ["program", "customer_id", "subject_id", "channel", "send_after", "status",
               "attempts", "idempotency_key", "reason", "template", "shadow", "created_at",
               "sent_at", "updated_at", "step"],
    "responses": ["program", "customer_id", "subject_id", "response", "created_at"],
    "engagement_events": ["program", "customer_id", "subject_id", "channel", "step",
                          "idempotency_key", "event", "at", "detail"],
}  # fmt: skip


def day_bounds(day: str) -> tuple[str, str]:
    """``2026-11-01`` -> (``2026-11-01``, ``2026-11-02``): the day as a text range over ISO times."""
    start = date.fromisoformat(day)
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


def params(table: str, day: str) -> tuple[str, ...]:
    """The query's parameters: the day's bounds, twice for the outbox (queued or sent)."""
    low, high = day_bounds(day)
    return (low, high, low, high) if table == "outbox" else (low, high)


def _timestamps(values: pa.Array) -> pa.Array:
    text = values.cast(pa.string())
    try:
        parsed = pc.strptime(text, format="%Y-%m-%dT%H:%M:%SZ", unit="ms")
        return parsed.cast(TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import pandas as pd  # other ISO-8601 spellings (offsets, fractions)

        series = pd.to_datetime(text.to_pandas(), utc=True, format="ISO8601")
        return pa.array(series, TS)


def conform(raw: pa.Table, table: str) -> pa.Table:
    """The store's columns cast to the export schema (``program`` kept for partitioning)."""
    out = {"program": raw.column("program").cast(pa.string())}
    for f in SCHEMAS[table]:
        column = raw.column(f.name) if f.name in raw.column_names else pa.nulls(raw.num_rows)
        if pa.types.is_timestamp(f.type):
            out[f.name] = _timestamps(column)
        elif pa.types.is_boolean(f.type) and not pa.types.is_boolean(column.type):
            out[f.name] = pc.not_equal(column.cast(pa.int64()), 0)
        else:
            out[f.name] = column.cast(f.type)
    return pa.table(out)
