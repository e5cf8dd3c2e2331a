"""Feedback written in batches (serving/feedback_writer.py): clicks and opens written behind
their answers reach the store (at once, after a stalled store frees up, and at a clean
shutdown), concurrent hits all land once each, from two API workers on one file too; webhook
and delivery requests still answer only once stored, each with its own counts; a failing
request's events fail alone."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from ceap.tokens import Purpose, sign
from serving.app import create_app
from serving.feedback import Feedback
from serving.feedback_writer import LOST, FeedbackWriter
from tests.channels.conftest import World
from tests.serving.live_server import run_py_serve

KEY = {"X-API-Key": "k"}


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("CEAP_SIGNING_KEY", "s" * 32)
    world = World(tmp_path)
    world.keys = world.seed(20)
    return world


def app_of(world: World):
    return create_app(world.store_spec, config_dir=world.config_dir, api_keys=["k"])


def events(world: World) -> list[tuple]:
    with sqlite3.connect(world.db) as con:
        return sorted(con.execute("SELECT idempotency_key, event, event_id FROM engagement_events"))


def click(key: str, n: int) -> str:
    return "/c/" + sign(Purpose.CLICK, key, f"https://shop.example/p/{n}")


def test_a_click_written_behind_is_stored_by_the_clean_shutdown(world):
    app = app_of(world)
    with TestClient(app, follow_redirects=False) as client:
        app.state.feedback.linger = 30  # the writer would sit on it for 30 s
        assert client.get(click(world.keys[0], 1)).status_code == 302
        assert client.get(f"/o/{sign(Purpose.OPEN, world.keys[1])}.gif").status_code == 200
        assert events(world) == []  # answered, not yet written
        started = time.monotonic()
    assert time.monotonic() - started < 10  # the shutdown wrote at once, it did not linger
    assert events(world) == sorted([(world.keys[0], "clicked", "https://shop.example/p/1"),
                                    (world.keys[1], "opened", "")])  # fmt: skip


def test_the_redirect_does_not_wait_for_a_stalled_store(world):
    app = app_of(world)
    blocker = sqlite3.connect(world.db, isolation_level=None)
    with TestClient(app, follow_redirects=False) as client:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            started = time.monotonic()
            answer = client.get(click(world.keys[0], 1))
            assert answer.status_code == 302 and time.monotonic() - started < 5
            assert answer.headers["location"] == "https://shop.example/p/1"
            assert not app.state.feedback.flush(timeout=0.3)  # waiting for the lock
        finally:
            blocker.execute("COMMIT")
        assert app.state.feedback.flush()
        assert events(world) == [(world.keys[0], "clicked", "https://shop.example/p/1")]
    blocker.close()


async def hit_all(app, paths: list[str]) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = await asyncio.gather(*(client.get(p) for p in paths))
    return [a.status_code for a in answers]


def test_concurrent_hits_from_two_workers_all_land_once(world):
    """Two apps on one SQLite file, as two uvicorn workers: 400 clicks and opens at once,
    each link hit twice (a double click, a client reloading the pixel)."""
    apps = [app_of(world), app_of(world)]
    links = [click(k, n) for n in range(10) for k in world.keys]  # 200 distinct clicks
    links += [f"/o/{sign(Purpose.OPEN, k)}.gif" for k in world.keys]  # 20 distinct opens

    async def both() -> list[int]:
        halves = [links + links[::-1][: len(links) // 2], links[len(links) // 2 :] + links]
        answers = await asyncio.gather(*(hit_all(a, h) for a, h in zip(apps, halves, strict=True)))
        return [s for a in answers for s in a]

    assert set(asyncio.run(both())) == {200, 302}
    for app in apps:
        app.state.feedback.close()
    stored = events(world)
    assert len(stored) == len(set(stored)) == 220
    assert sum(e[1] == "opened" for e in stored) == 20


def test_concurrent_deliveries_answer_once_stored_each_with_its_own_counts(world):
    app = app_of(world)
    body = [{"idempotency_key": k, "event": "delivered", "id": f"d-{k}"} for k in world.keys]
    body.append({"idempotency_key": "no-such-message", "event": "delivered"})

    async def post_all() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = await asyncio.gather(
                *(client.post("/v1/deliveries", json=body, headers=KEY) for _ in range(8))
            )
        # Every answer came after its events were stored: read before any flush or close.
        assert len(events(world)) == 20
        return [a.json() for a in answers]

    answers = asyncio.run(post_all())
    app.state.feedback.close()
    assert sum(a["recorded"] for a in answers) == 20  # once, whichever request got there first
    assert sum(a["replayed"] for a in answers) == 7 * 20
    assert all(a["unmatched"] == 1 and a["recorded"] + a["replayed"] == 20 for a in answers)


def test_a_full_queue_makes_a_post_wait_for_its_write(world):
    app = app_of(world)
    with TestClient(app, follow_redirects=False) as client:
        app.state.feedback.max_queued, app.state.feedback.linger = 0, 30
        assert client.get(click(world.keys[0], 1)).status_code == 302
        assert events(world) == [(world.keys[0], "clicked", "https://shop.example/p/1")]


def test_a_failing_request_fails_alone():
    """A batch that fails is retried request by request: the bad one's waiter gets the
    error, a posted bad one is counted lost, and the others are written."""
    written: list[list[str]] = []

    def write(fn):
        class Store:
            def find_message(self, key=None, message_id=None):
                if key == "bad":
                    raise sqlite3.OperationalError("disk I/O error")
                return {"program": "p", "customer_id": "C", "subject_id": "S", "channel": "email",
                        "step": "email", "idempotency_key": key, "address": None}  # fmt: skip

            def record_engagement(self, rows):
                written.append([r["idempotency_key"] for r in rows])
                return [True] * len(rows)

        return fn(Store())

    from datetime import UTC, datetime

    writer = FeedbackWriter(write, lambda: datetime(2024, 3, 1, tzinfo=UTC), linger=0.05)
    lost = LOST._value.get()

    async def run() -> list:
        posted = [writer.post([Feedback("opened", key=k)]) for k in ("a", "bad", "b")]
        await asyncio.gather(*posted)
        results = await asyncio.gather(
            writer.apply([Feedback("delivered", key="c")]),
            writer.apply([Feedback("delivered", key="bad")]),
            return_exceptions=True,
        )
        writer.close()
        return results

    good, bad = asyncio.run(run())
    assert good.recorded == 1 and isinstance(bad, sqlite3.OperationalError)
    assert sorted(k for batch in written for k in batch) == ["a", "b", "c"]
    assert LOST._value.get() - lost == 1


def test_close_while_idle_and_reuse_after_close(world):
    writer = FeedbackWriter(lambda fn: fn(None), time.time)
    writer.close()  # never started: nothing to do
    done = threading.Event()

    async def once() -> None:
        await writer.post([])
        done.set()

    asyncio.run(once())
    assert done.is_set() and writer.flush(timeout=5)
    writer.close()


@pytest.mark.slow
@pytest.mark.integration
def test_run_py_serve_stopped_by_sigterm_keeps_every_click(world, tmp_path):
    """Two uvicorn workers, 400 clicks answered, SIGTERM at once: each worker's lifespan
    shutdown writes what it still held, so every click is stored."""
    env = dict(os.environ, CEAP_API_KEYS="k", CEAP_HOME=str(tmp_path), CEAP_SIGNING_KEY="s" * 32)
    with run_py_serve(world.store_spec, world.config_dir, env) as base:
        links = [click(k, n) for n in range(20) for k in world.keys]

        async def hit() -> list[int]:
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(base_url=base, limits=limits) as client:
                return [r.status_code for r in await asyncio.gather(*map(client.get, links))]

        assert asyncio.run(hit()) == [302] * 400
    assert len(events(world)) == 400
