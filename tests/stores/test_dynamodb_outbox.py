"""The dispatcher's outbox on DynamoDBStore (stores/dynamodb_outbox.py), against moto's server
on loopback: the dispatcher end to end, concurrent dispatchers, send-time guards, and the
lease contract of lease_outbox / mark_outbox / release_outbox called directly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from channels.dispatcher import dispatch
from channels.in_app import InAppChannel
from stores.base import iso
from stores.dynamodb import DynamoDBStore
from stores.leasing import LeaseRequest
from stores.spec import open_store
from tests.channels.conftest import NOW, World

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CLOCK = NOW  # the lease clock the direct tests pass (the dispatcher uses the wall clock)
LATER = NOW + timedelta(minutes=5)


def lease(store, owner: str, clock=CLOCK, limit: int = 100, **kw) -> list[dict]:
    """lease_outbox as the dispatcher calls it, due at NOW, leased for five minutes."""
    return store.lease_outbox(LeaseRequest(
        owner, iso(NOW), iso(clock), iso(clock + timedelta(minutes=5)), limit, ["reviews"], **kw
    ))  # fmt: skip


@pytest.fixture
def world(tmp_path, moto_endpoint: str) -> World:
    """The channel tests' world (program ``reviews``: email + in_app, 1000 customers) on
    fresh DynamoDB tables; email is a shadow channel, so nothing needs a mail server."""
    w = World(tmp_path)
    w.store_spec = (
        f"dynamodb://t{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={moto_endpoint}"
        "&consistent=true"
    )
    text = (w.config_dir / "reviews.yaml").read_text()
    w.write_program(text=text.replace("  - type: in_app", "    shadow: true\n  - type: in_app"))
    return w


@pytest.fixture
def store(world: World):
    s = open_store(world.store_spec)
    assert isinstance(s, DynamoDBStore)
    yield s
    s.close()


def run(world: World, **kw):
    return dispatch(world.store_spec, world.config_dir, now=kw.pop("now", NOW), **kw)


def due_index(store: DynamoDBStore) -> set[str]:
    """Idempotency keys the sparse ``due`` GSI still holds (pending rows only)."""
    items = store.client.scan(TableName=store.name("outbox"), IndexName="due")["Items"]
    return {i["idempotency_key"]["S"] for i in items}


# -- the dispatcher end to end ----------------------------------------------------------------
def test_dispatch_on_dynamodb_ends_each_row_in_its_status(world: World, store) -> None:
    keys = world.seed(30, channels=("email", "in_app"))
    consumed = world.seed(3, channels=("in_app",), start=100, status="consumed")
    later = world.seed(4, channels=("in_app",), start=200, send_after=NOW + timedelta(hours=2))
    summary = run(world, batch_size=7)  # several rounds
    assert summary.counts[("in_app", "sent")] == 30
    assert summary.counts[("email", "shadowed")] == 30
    assert summary.counts[("in_app", "suppressed")] == 3
    rows = world.outbox()
    for k in keys:
        r = rows[k]
        assert r["lease_owner"] is None and r["lease_until"] is None
        if r["channel"] == "in_app":
            assert (r["status"], r["sent_at"], r["attempts"]) == ("sent", iso(NOW), 1)
        else:  # shadow: formatted, recorded, not an attempt
            assert (r["status"], r["sent_at"], r["attempts"]) == ("shadowed", None, 0)
            assert "@example.com" in r["reason"]
    assert {(rows[k]["status"], rows[k]["reason"]) for k in consumed} == {
        ("suppressed", "candidate consumed")
    }
    assert {rows[k]["status"] for k in later} == {"pending"}
    assert due_index(store) == set(later)  # settled rows left the due index
    # A second run finds nothing due: nothing is sent twice.
    assert run(world).total("sent") == 0
    status = {(r["program"], r["channel"], r["status"]): r["rows"]
              for r in store.outbox_status().to_pylist()}  # fmt: skip
    assert status == {
        ("reviews", "email", "shadowed"): 30,
        ("reviews", "in_app", "pending"): 4,
        ("reviews", "in_app", "sent"): 30,
        ("reviews", "in_app", "suppressed"): 3,
    }
    only = store.outbox_status("reviews", "email")
    assert only.to_pylist() == [
        {"program": "reviews", "channel": "email", "status": "shadowed", "rows": 30}
    ]
    assert store.outbox_status("nope").num_rows == 0


def test_quiet_hours_defer_keeps_the_row_pending_and_due(world: World, store) -> None:
    from tests.channels.conftest import customers_table

    customers_table(world.customers, 2, timezone="America/New_York")
    late = NOW.replace(hour=3)  # 22:00 the day before in New York
    keys = world.seed(2, channels=("email",), send_after=late - timedelta(hours=1))
    summary = run(world, now=late)
    assert summary.counts[("email", "deferred")] == 2
    rows = world.outbox()
    assert {(rows[k]["status"], rows[k]["send_after"]) for k in keys} == {
        ("pending", "2024-03-01T13:00:00Z")  # 08:00 EST
    }
    assert all(rows[k]["lease_owner"] is None for k in keys)
    assert due_index(store) == set(keys)
    assert run(world, now=late.replace(hour=12)).total("shadowed") == 0  # not due yet
    assert run(world, now=late.replace(hour=13)).counts[("email", "shadowed")] == 2


def test_opt_out_made_after_enqueueing_is_honoured(world: World, store) -> None:
    world.seed(4, channels=("email", "in_app"))
    store.add_opt_out("C00000", None, None)  # everything
    store.add_opt_out("C00001", None, "in_app")  # in-app only
    store.add_opt_out("C00002", "other_program", None)  # another program: not this one
    summary = run(world)
    assert summary.counts[("in_app", "suppressed")] == 2
    assert summary.counts[("email", "suppressed")] == 1
    rows = {(r["customer_id"], r["channel"]): r for r in world.outbox().values()}
    assert {k: r["status"] for k, r in rows.items()} == {
        ("C00000", "email"): "suppressed", ("C00000", "in_app"): "suppressed",
        ("C00001", "email"): "shadowed", ("C00001", "in_app"): "suppressed",
        ("C00002", "email"): "shadowed", ("C00002", "in_app"): "sent",
        ("C00003", "email"): "shadowed", ("C00003", "in_app"): "sent",
    }  # fmt: skip
    assert rows[("C00000", "in_app")]["reason"] == "opted out"
    assert rows[("C00000", "in_app")]["sent_at"] is None


def test_a_suppressed_address_ends_later_rows_of_any_program_suppressed(
    world: World, store, monkeypatch
) -> None:
    """DESIGN §8 on DynamoDB (tests/serving/test_feedback.py has it on SQLite): mail really
    sent remembers its address and message id; once the address bounced, another program's
    row to it ends suppressed and is never mailed."""
    from tests.channels.conftest import PROGRAM, SmtpSink, start_smtp

    monkeypatch.setenv("CEAP_SIGNING_KEY", "s" * 32)
    monkeypatch.setenv("CEAP_SMTP_HOST", "127.0.0.1")
    world.write_program(text=PROGRAM.format(customers=world.customers, extra=""))  # no shadow
    text = (world.config_dir / "reviews.yaml").read_text()
    world.write_program(name="surveys.yaml", text=text.replace("reviews", "surveys"))

    def mail() -> SmtpSink:
        sink = SmtpSink()
        controller, port = start_smtp(sink)
        monkeypatch.setenv("CEAP_SMTP_PORT", str(port))
        try:
            run(world)
        finally:
            controller.stop()
        return sink

    keys = world.seed(2)
    bounced = mail().messages[0]  # the store finds it by its Message-ID, as SES names it
    row = store.find_message(message_id=str(bounced["Message-ID"]).strip())
    assert (row["status"], row["address"]) == ("sent", "c00000@example.com")
    assert store.find_message(key=keys[0]) == row
    store.suppress_addresses([("C00000@Example.COM", "bounced address", iso(NOW))])
    world.seed(2, program="surveys")
    assert [str(m["To"]) for m in mail().messages] == ["c00001@example.com"]
    surveys = {r["customer_id"]: r for r in world.outbox().values() if r["program"] == "surveys"}
    assert (surveys["C00000"]["status"], surveys["C00000"]["reason"]) == (
        "suppressed", "bounced address")  # fmt: skip
    assert surveys["C00001"]["status"] == "sent"


def test_frequency_cap_counts_sent_rows_of_other_programs(world: World, monkeypatch) -> None:
    monkeypatch.setenv("CEAP_FREQUENCY_CAP", "1/7d")
    text = (world.config_dir / "reviews.yaml").read_text()
    world.write_program(name="surveys.yaml", text=text.replace("reviews", "surveys"))
    earlier = NOW - timedelta(days=3)
    world.seed(1, channels=("in_app",), send_after=earlier - timedelta(hours=1))
    assert run(world, now=earlier).counts[("in_app", "sent")] == 1
    (second,) = world.seed(1, channels=("in_app",), program="surveys")
    assert run(world).counts[("in_app", "suppressed")] == 1
    assert world.outbox()[second]["reason"] == "frequency cap: 1 per 7d"


# -- two dispatchers at once ----------------------------------------------------------------
def test_two_dispatchers_at_once_send_every_row_exactly_once(world: World, monkeypatch) -> None:
    keys = world.seed(150, channels=("in_app",))
    sent: list[tuple[str, str]] = []
    lock = threading.Lock()
    original = InAppChannel.send

    def counting_send(self, messages):
        with lock:
            sent.extend((threading.current_thread().name, m.key) for m in messages)
        time.sleep(0.02)  # a provider round trip, so the two interleave
        return original(self, messages)

    monkeypatch.setattr(InAppChannel, "send", counting_send)
    summaries, errors = {}, []

    def dispatcher(name: str) -> None:
        try:  # each dispatch opens its own store, so its own DynamoDB client
            summaries[name] = run(world, owner=name, batch_size=10)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher, args=(n,), name=n) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert Counter(k for _, k in sent) == Counter(keys)  # every row once, none twice
    assert {name for name, _ in sent} == {"a", "b"}  # both really took part
    assert summaries["a"].total("sent") + summaries["b"].total("sent") == 150
    rows = world.outbox()
    assert {(r["status"], r["attempts"], r["lease_owner"]) for r in rows.values()} == {
        ("sent", 1, None)
    }


@pytest.mark.slow
def test_two_dispatcher_processes_mail_every_row_exactly_once(world: World) -> None:
    """``python run.py dispatch --store dynamodb://...`` twice at once, real SMTP on loopback."""
    from tests.channels.conftest import PROGRAM, SmtpSink, start_smtp

    world.write_program(text=PROGRAM.format(customers=world.customers, extra=""))  # no shadow
    keys = world.seed(60, channels=("email",))
    sink = SmtpSink(delay=0.01)  # a batch of 10 takes ~0.1s: the two processes interleave
    controller, port = start_smtp(sink)
    env = {**os.environ, "CEAP_SMTP_HOST": "127.0.0.1", "CEAP_SMTP_PORT": str(port),
           "CEAP_SMTP_STARTTLS": "0", "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [
        sys.executable, "run.py", "dispatch", "--store", world.store_spec, "--config-dir",
        str(world.config_dir), "--now", NOW.isoformat(), "--batch-size", "10",
    ]  # fmt: skip
    try:
        procs = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        controller.stop()
    assert [p.returncode for p in procs] == [0, 0], outputs
    sent = [int(line.split()[1]) for out, _ in outputs for line in out.splitlines()
            if line.startswith("email")]  # fmt: skip
    assert sum(sent) == 60  # the two summaries' "sent" add up: no row counted twice
    assert Counter(sink.keys()) == Counter(keys)  # every row mailed once, none twice
    rows = world.outbox()
    assert {(r["status"], r["attempts"], r["lease_owner"]) for r in rows.values()} == {
        ("sent", 1, None)
    }


def test_concurrent_leases_of_the_same_rows_are_disjoint(world: World) -> None:
    keys = world.seed(120, channels=("in_app",))
    stores = [open_store(world.store_spec) for _ in range(3)]
    start = threading.Barrier(len(stores))
    got: dict[str, list[str]] = {}

    def take(i: int) -> None:
        start.wait()  # all three see the same due rows and race for each claim
        got[f"o{i}"] = [r["rowid"] for r in lease(stores[i], f"o{i}", limit=200)]

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in stores:
        s.close()
    leased = [k for rows in got.values() for k in rows]
    assert sorted(leased) == sorted(keys)  # every row leased by exactly one owner
    owners = {r["idempotency_key"]: r["lease_owner"] for r in world.outbox().values()}
    assert all(owners[k] == o for o, rows in got.items() for k in rows)


# -- the lease contract, called directly ---------------------------------------------------------
def test_leased_rows_carry_the_guards_sqlite_attaches(world: World, store) -> None:
    (key,) = world.seed(1, channels=("in_app",))
    store.add_opt_out("C00000", None, "push")  # cannot apply to an in_app row: not read
    store.add_opt_out("C00000", "reviews", "in_app")
    (row,) = lease(store, "a", cap_since={"in_app": iso(NOW - timedelta(days=7))})
    assert row["rowid"] == row["idempotency_key"] == key
    assert (row["cand_status"], row["action"], row["subject_type"]) == ("live", "review", "product")
    assert row["context"] == '{"title": "Kettle"}' and row["expires_at"] > iso(NOW)
    assert (row["attempts"], row["shadow"], row["recent"]) == (0, 0, 0)
    assert row["opt_outs"] == [("reviews", "in_app")]  # the opt-outs that can apply
    assert lease(store, "b") == []  # held by a
    assert lease(store, "b", clock=LATER + timedelta(seconds=1))[0]["rowid"] == key  # expired
    assert store.mark_outbox("a", [{"key": key, "status": "sent"}], iso(LATER)) == 0  # lost it


def test_recent_counts_rows_other_dispatchers_hold_but_not_shadow_ones(world: World, store) -> None:
    world.seed(1, channels=("in_app",))
    world.seed(1, channels=("in_app",), program="surveys")
    world.seed(1, channels=("in_app",), program="ratings", shadow=True)
    since = {"in_app": iso(NOW - timedelta(days=7))}
    other = open_store(world.store_spec)
    held = other.lease_outbox(
        LeaseRequest(
            "b", iso(NOW), iso(CLOCK), iso(LATER), 10, ["surveys", "ratings"], cap_since=since
        )
    )
    assert len(held) == 2 and {r["recent"] for r in held} == {0}
    (row,) = lease(store, "a", cap_since=since)
    assert row["recent"] == 1  # surveys' row in flight at b; ratings' is shadow
    other.mark_outbox("b", [{"key": r["rowid"], "status": "sent", "sent_at": iso(NOW)}
                            for r in held], iso(CLOCK))  # fmt: skip
    other.close()
    store.release_outbox("a", [row["rowid"]])
    (row,) = lease(store, "a", cap_since=since)
    assert row["recent"] == 2  # both sent now: shadow or not, a sent row is a contact


def test_screen_decisions_apply_before_the_rows_are_returned(world: World, store) -> None:
    keys = world.seed(3, channels=("in_app",))
    later = iso(NOW + timedelta(hours=1))

    def screen(rows):
        assert [r["rowid"] for r in rows] == sorted(keys)  # oldest first, then by key
        return [(rows[0]["rowid"], "suppress", "opted out"), (rows[1]["rowid"], "defer", later)]

    (kept,) = lease(store, "a", screen=screen)
    rows = world.outbox()
    first, second = sorted(keys)[:2]
    assert kept["rowid"] == sorted(keys)[2] and rows[kept["rowid"]]["lease_owner"] == "a"
    assert (rows[first]["status"], rows[first]["reason"], rows[first]["lease_owner"]) == (
        "suppressed", "opted out", None,
    )  # fmt: skip
    assert (rows[second]["status"], rows[second]["send_after"], rows[second]["lease_owner"]) == (
        "pending", later, None,
    )  # fmt: skip
    assert due_index(store) == {second, kept["rowid"]}


def test_keep_lease_then_settle_from_sent_and_only_the_owner_marks(world: World, store) -> None:
    (key,) = world.seed(1, channels=("in_app",))
    assert [r["rowid"] for r in lease(store, "a")] == [key]
    commit = {"key": key, "status": "sent", "sent_at": iso(NOW), "keep_lease": True}
    assert store.mark_outbox("b", [commit], iso(CLOCK)) == 0  # not b's lease
    assert store.mark_outbox("a", [commit], iso(CLOCK)) == 1
    row = world.outbox()[key]
    assert (row["status"], row["lease_owner"], row["attempts"]) == ("sent", "a", 1)
    assert key not in due_index(store)
    settle = {"key": key, "status": "sent", "sent_at": iso(NOW), "from_status": "sent",
              "attempted": False}  # fmt: skip
    assert store.mark_outbox("a", [settle | {"from_status": "pending"}], iso(CLOCK)) == 0
    assert store.release_outbox("a", [key]) == 0  # no longer pending: release is a no-op
    # Another process (its own store, which never leased the row) marking as b: refused;
    # as the owner: settled (the row found by Scan, as the lease was not its own).
    elsewhere = open_store(world.store_spec)
    assert elsewhere.mark_outbox("b", [settle], iso(CLOCK)) == 0
    assert elsewhere.mark_outbox("a", [settle], iso(LATER)) == 1
    elsewhere.close()
    row = world.outbox()[key]
    assert (row["status"], row["lease_owner"], row["lease_until"]) == ("sent", None, None)
    assert (row["attempts"], row["updated_at"]) == (1, iso(LATER))
    assert store.mark_outbox("a", [settle], iso(LATER)) == 0  # settled once only


def test_retry_and_release_keep_the_row_pending_and_leasable(world: World, store) -> None:
    k1, k2 = world.seed(2, channels=("in_app",))
    assert len(lease(store, "a")) == 2
    retry = {"key": k1, "status": "pending", "reason": "busy",
             "next_attempt_at": iso(LATER)}  # fmt: skip
    assert store.mark_outbox("a", [retry], iso(CLOCK)) == 1
    assert store.release_outbox("b", [k2]) == 0  # not b's
    assert store.release_outbox("a", [k2, "no-such-key"]) == 1
    rows = world.outbox()
    assert (rows[k1]["status"], rows[k1]["attempts"], rows[k1]["lease_owner"]) == (
        "pending", 1, None,
    )  # fmt: skip
    assert (rows[k2]["attempts"], rows[k2]["lease_owner"]) == (0, None)
    assert due_index(store) == {k1, k2}
    assert [r["rowid"] for r in lease(store, "b")] == [k2]  # k1 waits for its retry time
    assert [r["rowid"] for r in lease(store, "c", clock=LATER)] == [k1]
