"""The export's ``events`` table (DESIGN §5, §8): a day's engagement events, with the
candidate's arm, read by SQL on SQLite and by DuckDB over Arrow on other backends (the same
files either way); a store without the delivery feedback role exports none, without error;
re-exports replace the day."""

from __future__ import annotations

import json

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.export import SCHEMAS, run_export
from stores.ports import Role
from stores.spec import open_store
from tests.pipelines.test_export import DAY, counts, seeded_store

# (program, customer, subject, channel, key, event, at, detail); keys are seeded_store's
# outbox rows: k0 reviews C1/P1 email, k2 reviews C2/P2 email, k3 reviews C0/P0 email,
# k4 surveys C4/S4 sms.
EVENTS = [
    ("reviews", "C1", "P1", "email", "k0", "delivered", f"{DAY}T00:00:00Z", None),
    ("reviews", "C1", "P1", "email", "k0", "opened", f"{DAY}T11:00:00Z", None),
    (
        "reviews",
        "C1",
        "P1",
        "email",
        "k0",
        "clicked",
        f"{DAY}T11:01:00Z",
        '{"url":"https://x.example/p1"}',
    ),  # fmt: skip
    ("reviews", "C2", "P2", "email", "k2", "bounced", f"{DAY}T23:59:59Z", "mailbox full"),
    ("reviews", "C0", "P0", "email", "k3", "delivered", "2026-11-02T00:00:00Z", None),  # next day
    ("reviews", "C0", "P0", "email", "k3", "opened", "2026-10-31T23:59:59Z", None),  # day before
    ("surveys", "C4", "S4", "sms", "k4", "delivered", f"{DAY}T08:00:00Z", None),
]
COLUMNS = ["program", "customer_id", "subject_id", "channel", "idempotency_key", "event", "at",
           "detail"]  # fmt: skip


def add_events(spec: str, rows: list[tuple]) -> None:
    store = open_store(spec)
    events = [dict(zip(COLUMNS, r, strict=True)) for r in rows]
    for e in events:
        e["step"], e["event_id"] = e["channel"], ""
    assert all(store.record_engagement(events))
    store.close()


@pytest.fixture
def spec(tmp_path) -> str:
    spec = seeded_store(tmp_path)
    add_events(spec, EVENTS)
    return spec


class ArrowOnly:
    """A store that is not SQLite: the export reads its tables as Arrow and queries them with
    DuckDB (as it does DynamoDB's); ``roles`` says whether it keeps delivery feedback."""

    def __init__(self, spec: str, roles: frozenset) -> None:
        self._inner = open_store(spec)
        self.roles = roles

    def table(self, name: str):
        if name == "engagement_events" and Role.FEEDBACK not in self.roles:
            raise AssertionError("read engagement_events of a store without the feedback role")
        return self._inner.table(name)

    def close(self) -> None:
        self._inner.close()


def exported_events(out) -> list[tuple]:
    return duckdb.sql(
        "SELECT program, CAST(dt AS VARCHAR), customer_id, subject_id, channel, step, "
        "idempotency_key, event, strftime(\"at\" AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ'), detail, "
        f"model_id, treatment FROM read_parquet('{out}/events/*/*/*.parquet', "
        "hive_partitioning = true) ORDER BY program, 9, event"
    ).fetchall()


EXPECTED = [  # the day's events, by hand: at on DAY, each with its candidate's arm
    ("reviews", DAY, "C1", "P1", "email", "email", "k0", "delivered", f"{DAY}T00:00:00Z", None,
     "reviews_control", "control"),
    ("reviews", DAY, "C1", "P1", "email", "email", "k0", "opened", f"{DAY}T11:00:00Z", None,
     "reviews_control", "control"),
    ("reviews", DAY, "C1", "P1", "email", "email", "k0", "clicked", f"{DAY}T11:01:00Z",
     '{"url":"https://x.example/p1"}', "reviews_control", "control"),
    ("reviews", DAY, "C2", "P2", "email", "email", "k2", "bounced", f"{DAY}T23:59:59Z",
     "mailbox full", "reviews_propensity", "propensity"),
    ("surveys", DAY, "C4", "S4", "sms", "sms", "k4", "delivered", f"{DAY}T08:00:00Z", None,
     "surveys_control", "control"),
]  # fmt: skip


def test_events_of_the_day_with_their_arm_on_sqlite(spec, tmp_path):
    out = tmp_path / "out"
    totals = run_export(DAY, str(out), spec)

    assert totals == {"candidates": 5, "outbox": 4, "responses": 2, "events": 5}
    assert counts(out, "events") == {(DAY, "reviews"): 4, (DAY, "surveys"): 1}
    assert exported_events(out) == EXPECTED
    part = out / "events" / f"dt={DAY}" / "program=reviews" / "part-00000.parquet"
    assert pq.read_schema(part).remove_metadata() == SCHEMAS["events"]
    clicked = [r for r in exported_events(out) if r[7] == "clicked"]
    assert json.loads(clicked[0][9]) == {"url": "https://x.example/p1"}


def test_other_backends_export_the_same_events_through_duckdb(spec, tmp_path, monkeypatch):
    run_export(DAY, str(tmp_path / "sqlite"), spec)
    monkeypatch.setattr("stores.spec.open_store", lambda s: ArrowOnly(s, frozenset(Role)))
    totals = run_export(DAY, str(tmp_path / "arrow"), spec)

    assert totals["events"] == 5
    assert exported_events(tmp_path / "arrow") == exported_events(tmp_path / "sqlite") == EXPECTED
    for table in ("candidates", "outbox", "responses"):
        assert counts(tmp_path / "arrow", table) == counts(tmp_path / "sqlite", table)


def test_a_store_without_the_feedback_role_exports_no_events(spec, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_export(DAY, str(out), spec)  # an earlier export, from a store that had events
    assert (out / "events" / f"dt={DAY}").exists()

    monkeypatch.setattr(
        "stores.spec.open_store", lambda s: ArrowOnly(s, frozenset(Role) - {Role.FEEDBACK})
    )
    totals = run_export(DAY, str(out), spec)

    assert totals == {"candidates": 5, "outbox": 4, "responses": 2, "events": 0}
    assert not (out / "events" / f"dt={DAY}").exists()  # the day as this store has it: none
    assert counts(out, "candidates") == {(DAY, "reviews"): 3, (DAY, "surveys"): 2}


def test_reexporting_events_replaces_the_day(spec, tmp_path):
    out = tmp_path / "out"
    run_export(DAY, str(out), spec)
    run_export(DAY, str(out), spec)
    assert counts(out, "events") == {(DAY, "reviews"): 4, (DAY, "surveys"): 1}

    run_export("2026-11-02", str(out), spec)  # another day, left alone below
    store = open_store(spec)
    store.connection.execute("DELETE FROM engagement_events WHERE program = 'surveys'")
    store.close()
    add_events(spec, [("reviews", "C2", "P2", "email", "k2", "complained", f"{DAY}T23:00:00Z", None)])  # fmt: skip
    run_export(DAY, str(out), spec)

    assert counts(out, "events") == {(DAY, "reviews"): 5, ("2026-11-02", "reviews"): 1}
    assert not (out / "events" / f"dt={DAY}" / "program=surveys").exists()


@pytest.mark.integration
def test_dynamodb_exports_through_duckdb_and_its_events_as_its_roles_say(tmp_path, moto_endpoint):
    """A real non-SQLite backend (DynamoDB on moto): the DuckDB path reads its tables; its
    events are exported when it declares the delivery feedback role, else none, no error."""
    from uuid import uuid4

    import pyarrow as pa

    from stores.base import CANDIDATE_COLUMNS
    from tests.pipelines.test_export import _candidate

    spec = f"dynamodb://t{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={moto_endpoint}&consistent=true"  # fmt: skip
    store = open_store(spec)
    rows = [_candidate("reviews", "C1", "P1", f"{DAY}T01:00:00Z", "control")]
    store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))
    feedback = Role.FEEDBACK in store.roles
    if feedback:
        add_events(spec, EVENTS[:3])
    store.close()

    out = tmp_path / "out"
    totals = run_export(DAY, str(out), spec)

    assert totals["candidates"] == 1 and totals["events"] == (3 if feedback else 0)
    assert (out / "events").exists() == feedback
