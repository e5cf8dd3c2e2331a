"""Fixtures shared by the unit tests: a fixed run time and a run context whose store is a
real SQLite file in the test's own directory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pyarrow as pa
import pytest

from ceap.context import RunContext
from stores.base import CANDIDATE_COLUMNS, CandidateStore, iso
from stores.spec import open_store

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`python -m pytest -q` (the README's command) leaves out the cases marked ``slow`` so
    a contributor runs the suite often; ``-m slow`` (or any ``-m``) runs them, and so does
    naming a test by its node id. CI runs both."""
    if config.getoption("markexpr") or any("::" in arg for arg in config.args):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def ctx(tmp_path) -> RunContext:
    """The ``reviews`` program at ``NOW``, with its own empty SQLite store."""
    return RunContext(program="reviews", now=NOW, store="sqlite:///" + str(tmp_path / "ceap.db"))


@pytest.fixture
def store(ctx):
    """The context's store, open for the test to seed (opt-outs, outbox, responses)."""
    s = open_store(ctx.store)
    yield s
    s.close()


@pytest.fixture
def add_candidates(store, ctx):
    """Writes candidates of ``ctx.program`` through the store's own upsert: each row is a
    dict of the fields that matter to the test, the rest defaulted."""

    def add(*rows: dict) -> None:
        defaults = {
            "program": ctx.program, "subject_type": "product", "action": "review",
            "context": "{}", "score": 0.5, "model_id": "m", "treatment": "m",
            "created_at": iso(NOW - timedelta(days=1)), "expires_at": iso(NOW + timedelta(days=29)),
            "deliver_after": iso(NOW - timedelta(days=9)), "status": "live",
        }  # fmt: skip
        full = [{**defaults, **r} for r in rows]
        store.upsert_candidates(pa.table({c: [r[c] for r in full] for c in CANDIDATE_COLUMNS}))

    return add


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)])
def each_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[CandidateStore]:
    """An empty store of each backend in turn: SQLite, and DynamoDB on moto's server (one
    behaviour, asserted on every implementation)."""
    if request.param == "sqlite":
        from stores.sqlite import SqliteStore

        s: CandidateStore = SqliteStore(tmp_path / "c.db")
    else:
        from stores.dynamodb import DynamoDBStore

        endpoint = request.getfixturevalue("moto_endpoint")
        s = DynamoDBStore.from_spec(
            f"dynamodb://t{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={endpoint}&consistent=true"
        )
    yield s
    s.close()


def _one_request_at_a_time(server) -> None:
    """DynamoDB applies each request atomically (a conditional write checks and writes as
    one step); moto's threaded server does not: two UpdateItems on one item can both pass
    their condition, and a test of two dispatchers racing for rows then sees a row leased
    twice under load. Serialising the requests gives moto DynamoDB's per-request atomicity;
    the clients still race, request against request."""
    import threading

    app, lock = server._server.app, threading.Lock()

    def serialised(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    server._server.app = serialised


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's AWS server on loopback (a free port), with fake credentials, for the session."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.setenv(name, "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_CONFIG_FILE", "/dev/null")  # no profile of the machine leaks in
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        env.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()  # port 0: the OS picks a free port, get_host_and_port() tells which
        _one_request_at_a_time(server)
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()
