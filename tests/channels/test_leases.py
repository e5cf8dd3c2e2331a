"""Freeing the leases of a dispatcher that is gone, only when that can be proven: the same
host and PID namespace, and no process with its pid. On both stores."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pyarrow as pa

from channels.leases import _pid_namespace, default_owner, reclaim_orphaned_leases
from stores.base import OUTBOX_COLUMNS, CandidateStore
from stores.leasing import LeaseRequest

NOW, UNTIL = "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z"


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def lease(store: CandidateStore, owner: str, customers: list[str]) -> list[str]:
    rows = [{
        "program": "reviews", "customer_id": c, "subject_id": "P", "channel": "email",
        "send_after": "2026-11-25T09:00:00Z", "status": "pending", "attempts": 0,
        "idempotency_key": f"k-{c}", "reason": None, "template": None, "shadow": 0,
        "created_at": "2026-11-24T00:00:00Z",
    } for c in customers]  # fmt: skip
    cols = [*OUTBOX_COLUMNS, "template", "shadow", "created_at"]
    store.enqueue_outbox(pa.table({
        k: pa.array([r[k] for r in rows], pa.string() if k in ("reason", "template") else None)
        for k in cols
    }))  # fmt: skip
    leased = store.lease_outbox(LeaseRequest(owner, NOW, NOW, UNTIL, 100, ["reviews"]))
    return sorted(r["idempotency_key"] for r in leased)


def test_only_the_leases_of_a_dead_process_of_this_host_and_namespace_are_freed(each_store):
    store = each_store
    host, ns = socket.gethostname(), _pid_namespace()
    dead = f"{host}:{dead_pid()}:aaaa:{ns}"
    alive = default_owner()  # this process
    elsewhere = f"other-host:{dead_pid()}:bbbb:{ns}"
    other_container = f"{host}:{dead_pid()}:cccc:1"
    old_format = f"{host}:{dead_pid()}:dddd"
    assert lease(store, dead, ["c1", "c2"]) == ["k-c1", "k-c2"]
    for i, owner in enumerate((alive, elsewhere, other_container, old_format)):
        lease(store, owner, [f"x{i}"])
    assert reclaim_orphaned_leases(store, NOW) == 2
    held = store.outbox_leases("", NOW)
    assert dead not in held and sorted(held) == sorted(
        [alive, elsewhere, other_container, old_format]
    )
    # freed: due again, for whoever asks next
    again = store.lease_outbox(LeaseRequest(default_owner(), NOW, NOW, UNTIL, 100, ["reviews"]))
    assert sorted(r["idempotency_key"] for r in again) == ["k-c1", "k-c2"]


def test_an_expired_lease_is_not_listed(each_store):
    store = each_store
    owner = f"{socket.gethostname()}:{os.getpid()}:eeee:{_pid_namespace()}"
    lease(store, owner, ["c1"])
    assert store.outbox_leases(socket.gethostname() + ":", NOW) == {owner: ["k-c1"]}
    assert store.outbox_leases(socket.gethostname() + ":", "2026-11-25T12:00:00Z") == {}


def test_a_loop_looks_for_dead_peers_on_its_first_pass_only(world, monkeypatch):
    """The look reads every pending row (16 Queries on DynamoDB): once per process, not per
    round of a `dispatch --loop`."""
    from channels import dispatcher

    calls = []
    monkeypatch.setattr(dispatcher, "reclaim_orphaned_leases", lambda *a: calls.append(a) or 0)
    dispatcher.dispatch(world.store_spec, world.config_dir)
    dispatcher.dispatch(world.store_spec, world.config_dir, reclaim=False)
    assert len(calls) == 1
