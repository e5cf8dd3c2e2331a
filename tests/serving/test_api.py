"""The Serving API (docs/architecture.md, "Serving API") on a real SQLite store: in-process through TestClient for
the rules, and over real sockets (uvicorn on loopback, then `run.py serve`) for the wiring."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.eligibility import CircuitBreaker, EligibilityCheck
from stores.base import CANDIDATE_COLUMNS, iso
from stores.sqlite import SqliteStore
from tests.serving.live_server import run_py_serve

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"  # reviews: staleness 1d, channels email + in_app
KEY = {"X-API-Key": "secret"}
NOW = datetime.now(UTC).replace(microsecond=0)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def candidate(subject: str, **fields) -> dict:
    return {
        "program": "reviews", "customer_id": "C1", "subject_type": "product",
        "subject_id": subject, "action": "review", "context": '{"region": "EU"}', "score": 0.5,
        "model_id": "m1", "treatment": "control", "created_at": iso(NOW - HOUR),
        "expires_at": iso(NOW + 7 * DAY), "deliver_after": iso(NOW - HOUR), "status": "live",
    } | fields  # fmt: skip


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "ceap.db"


@pytest.fixture
def seed(db):
    def add(*rows: dict) -> None:
        store = SqliteStore(db)
        store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))
        store.close()

    return add


@pytest.fixture
def make_client(db):
    clients = []

    def make(**kwargs) -> TestClient:
        kwargs.setdefault("api_keys", ["secret"])
        kwargs.setdefault("config_dir", CONFIGS)
        client = TestClient(create_app(f"sqlite:{db}", **kwargs))
        clients.append(client.__enter__())
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def served(client: TestClient, query: str = "", customer: str = "C1") -> list[str]:
    r = client.get(f"/v1/customers/{customer}/candidates{query}", headers=KEY)
    assert r.status_code == 200, r.text
    return [c["subject_id"] for c in r.json()["candidates"]]


def status(db: Path, subject: str) -> str:
    store = SqliteStore(db)
    row = store.connection.execute(
        "SELECT status FROM candidates WHERE subject_id = ?", (subject,)
    ).fetchone()
    store.close()
    return row[0]


# -- candidates --------------------------------------------------------------------------------
def test_candidates_live_best_first_with_the_contract_fields(client, seed):
    seed(candidate("P1", score=0.2), candidate("P2", score=0.9), candidate("P3", score=0.5))
    body = client.get("/v1/customers/C1/candidates", headers=KEY).json()
    assert body["customer_id"] == "C1"
    assert [c["subject_id"] for c in body["candidates"]] == ["P2", "P3", "P1"]
    assert set(body["candidates"][0]) == {
        "program", "subject_type", "subject_id", "action", "score", "model_id", "treatment",
        "context", "created_at", "expires_at",
    }  # fmt: skip
    assert body["candidates"][0]["context"] == {"region": "EU"}
    assert served(client, "?limit=2") == ["P2", "P3"]


def test_ttl_expired_and_not_yet_deliverable_are_not_served(client, seed):
    # still `live` in the store (no TTL sweep ran): the clock decides
    seed(candidate("old", expires_at=iso(NOW - timedelta(seconds=1))),
         candidate("later", deliver_after=iso(NOW + HOUR)), candidate("ok"))  # fmt: skip
    assert served(client) == ["ok"]


def test_program_and_channel_filters(client, seed):
    seed(candidate("R1"), candidate("V1", program="video_ratings", subject_type="video"))
    assert served(client, "?program=video_ratings") == ["V1"]
    assert served(client, "?channel=email") == ["R1"]  # only reviews lists email
    assert sorted(served(client, "?channel=in_app")) == ["R1", "V1"]
    assert served(client, "?channel=sms") == []
    assert served(client, customer="nobody") == []


# -- auth and validation -------------------------------------------------------------------------
def test_api_keys(make_client, seed, monkeypatch):
    seed(candidate("P1"))
    client = make_client()
    path = "/v1/customers/C1/candidates"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer secret"}).status_code == 200
    assert client.get(path, headers=KEY).status_code == 200
    assert client.post("/v1/opt-outs", json={"customer_id": "C1"}).status_code == 401
    assert client.get("/healthz").status_code == 200  # no key needed
    monkeypatch.setenv("CEAP_API_KEYS", "a, b")
    from_env = make_client(api_keys=None)
    assert from_env.get(path, headers={"X-API-Key": "b"}).status_code == 200
    monkeypatch.setenv("CEAP_API_KEYS", "")
    assert make_client(api_keys=None).get(path, headers=KEY).status_code == 401  # no keys: no data


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/has%20space/candidates", "/v1/customers/" + "x" * 129 + "/candidates",
        "/v1/customers/-lead/candidates", "/v1/customers/C1/candidates?limit=0",
        "/v1/customers/C1/candidates?limit=101", "/v1/customers/C1/candidates?limit=abc",
        "/v1/customers/C1/candidates?program=Bad-Name", "/v1/customers/C1/candidates?channel=e%00",
        "/v1/opt-outs/%C3%A9t%C3%A9",
    ],
)  # fmt: skip
def test_bad_parameters_are_422(client, path):
    method = client.delete if path.startswith("/v1/opt-outs") else client.get
    r = method(path, headers=KEY)
    assert r.status_code == 422, r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "body",
    [
        {"program": "reviews", "customer_id": "C1"},
        {"program": "reviews", "customer_id": "C 1", "subject_id": "P1"},
        {"program": "reviews", "customer_id": "C1", "subject_id": "P1", "extra": 1},
        {"program": "reviews", "customer_id": "C1", "subject_id": "P1", "response": "x" * 5000},
        {"program": 3, "customer_id": "C1", "subject_id": "P1"},
        [1, 2],
    ],
)
def test_bad_bodies_are_422(client, body):
    assert client.post("/v1/responses", json=body, headers=KEY).status_code == 422


def test_body_limits_and_no_stack_traces(client):
    big = client.post("/v1/opt-outs", content=b"{" + b" " * 20_000 + b"}", headers=KEY)
    assert big.status_code == 413
    bad = client.post("/v1/opt-outs", content=b"{not json", headers=KEY | {"content-type": "application/json"})  # fmt: skip
    assert bad.status_code == 422


def test_unexpected_errors_answer_a_bare_500(make_client):
    client = make_client()
    client.app.state.stores.read = None  # any failure inside the handler
    client_no_raise = TestClient(client.app, raise_server_exceptions=False)
    r = client_no_raise.get("/v1/customers/C1/candidates", headers=KEY)
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error"}


# -- responses and opt-outs ----------------------------------------------------------------------
def test_response_consumes_the_candidate(client, seed, db):
    seed(candidate("P1"), candidate("P2"))
    body = {"program": "reviews", "customer_id": "C1", "subject_id": "P1", "response": {"stars": 5}}
    r = client.post("/v1/responses", json=body, headers=KEY)
    assert r.status_code == 200 and r.json() == {"recorded": True, "consumed": True}
    assert status(db, "P1") == "consumed"
    assert served(client) == ["P2"]
    # no such candidate: still recorded (feeds dedup), not consumed, not an error
    unknown = client.post("/v1/responses", json=body | {"subject_id": "P9"}, headers=KEY)
    assert unknown.json() == {"recorded": True, "consumed": False}


def test_opt_out_via_api_is_honoured_at_once_by_serving_and_pipeline(client, seed, db):
    seed(candidate("P1"), candidate("V1", program="video_ratings", subject_type="video"))
    r = client.post("/v1/opt-outs", json={"customer_id": "C1", "program": "reviews"}, headers=KEY)
    assert r.status_code == 200 and r.json()["program"] == "reviews"
    assert served(client) == ["V1"]
    store = SqliteStore(db)  # the pipeline's opt_out filter reads the same registry
    assert store.opt_outs(["C1"]).to_pylist() == [
        {"customer_id": "C1", "program": "reviews", "channel": None}
    ]
    store.close()
    client.post("/v1/opt-outs", json={"customer_id": "C1", "channel": "push"}, headers=KEY)
    assert served(client) == ["V1"]  # channel-only: other channels still deliver
    assert served(client, "?channel=push") == []
    removed = client.delete("/v1/opt-outs/C1", headers=KEY)
    assert removed.json() == {"customer_id": "C1", "removed": 2}
    assert sorted(served(client)) == ["P1", "V1"]


def test_an_opt_out_of_a_channel_type_that_does_not_exist_is_refused(client, db):
    """``fax`` (or a typo of ``sms``) would suppress nothing while the caller believes the
    customer opted out: 422 naming the known types, and nothing recorded."""
    r = client.post("/v1/opt-outs", json={"customer_id": "C1", "channel": "fax"}, headers=KEY)
    assert r.status_code == 422 and "unknown channel 'fax'" in r.text and "sms" in r.text
    store = SqliteStore(db)
    assert store.opt_outs(["C1"]).num_rows == 0
    store.close()


@pytest.mark.parametrize(
    "method, path, body, where",
    [
        ("post", "/v1/opt-outs", {"customer_id": "C1", "program": "course_fedback"}, "body"),
        ("post", "/v1/responses",
         {"program": "course_fedback", "customer_id": "C1", "subject_id": "P1"}, "body"),
        ("get", "/v1/customers/C1/candidates?program=course_fedback", None, "query"),
    ],
)  # fmt: skip
def test_a_program_no_config_declares_is_refused(client, db, method, path, body, where):
    """A typo of a program would record an opt-out that suppresses nothing (and grow an
    export partition): 422 naming the known programs, and nothing recorded."""
    kwargs = {"json": body} if body else {}
    r = getattr(client, method)(path, headers=KEY, **kwargs)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == [where, "program"]
    assert "unknown program 'course_fedback'" in detail["msg"] and "reviews" in detail["msg"]
    store = SqliteStore(db)
    assert store.opt_outs(["C1"]).num_rows == 0
    assert store.table("responses").num_rows == 0
    store.close()


@pytest.mark.parametrize("number", ["1e999", "NaN", "Infinity", "-Infinity"])
def test_a_response_that_is_not_json_is_refused(client, db, number):
    """Python's parser takes them; stored, they were ``Infinity`` text that strict JSON
    readers of the export reject."""
    body = '{"program": "reviews", "customer_id": "C1", "subject_id": "P1", "response": {"x": %s}}'
    r = client.post("/v1/responses", content=body % number,
                    headers=KEY | {"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and "plain JSON" in r.text
    store = SqliteStore(db)
    assert store.table("responses").num_rows == 0
    store.close()


def test_a_trailing_newline_in_an_id_is_refused(client):
    """The hand-written check used re.match, whose `$` also matches before a final newline."""
    r = client.get("/v1/customers/C1%0A/candidates", headers=KEY)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "customer_id"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/opt-outs", '{"customer_id": "\\ud800"}'),
        ("/v1/responses", '{"program": "reviews", "customer_id": "C1", "subject_id": "P1", '
                          '"response": "\\ud800"}'),
        ("/v1/responses", '{"program": "reviews", "customer_id": "C1", "subject_id": "\\ud800"}'),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_a_422_not_a_500(client, path, body):
    r = client.post(path, content=body, headers=KEY | {"content-type": "application/json"})
    assert r.status_code == 422, r.text


def test_three_responses_in_one_second_are_three_and_a_keyed_retry_is_one(client, db):
    body = {"program": "reviews", "customer_id": "C1", "subject_id": "P1"}
    for stars in (3, 4, 5):
        r = client.post("/v1/responses", json=body | {"response": stars}, headers=KEY)
        assert r.json()["recorded"] is True
    for _ in range(2):
        keyed = body | {"response": 1, "idempotency_key": "app-42"}
        assert client.post("/v1/responses", json=keyed, headers=KEY).status_code == 200
    store = SqliteStore(db)
    assert sorted(store.table("responses").column("response").to_pylist()) == ["1", "3", "4", "5"]
    store.close()


def test_a_program_whose_config_fails_to_load_is_still_known(make_client, tmp_path, db):
    """Its candidates are in the store and its customers may still opt out."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "broken.yaml").write_text("program: broken\naction: [not, a, string]\n")
    client = make_client(config_dir=configs)
    r = client.post("/v1/opt-outs", json={"customer_id": "C1", "program": "broken"}, headers=KEY)
    assert r.status_code == 200, r.text


# -- staleness re-checks -------------------------------------------------------------------------
class Fixed(EligibilityCheck):
    """Answers ``answer`` after ``delay`` seconds, or raises when ``answer`` is an exception."""

    name = "fixed"

    def __init__(self, answer, delay: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.answer, self.delay, self.calls = answer, delay, 0

    def check(self, candidate: dict) -> bool:
        self.calls += 1
        time.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_fresh_candidates_are_not_rechecked(make_client, seed):
    check = Fixed(False)
    client = make_client(eligibility_checks=[check])
    seed(candidate("fresh", created_at=iso(NOW - HOUR)))  # reviews staleness: 1d
    assert served(client) == ["fresh"] and check.calls == 0


def test_stale_ineligible_is_marked_expired_and_omitted(make_client, seed, db):
    client = make_client(eligibility_checks=[Fixed(False)])
    seed(candidate("stale", created_at=iso(NOW - 2 * DAY)), candidate("fresh"))
    assert served(client) == ["fresh"]
    assert status(db, "stale") == "expired"


def test_default_checks_expire_stale_candidates_already_acted_on(client, seed, db):
    seed(candidate("stale", created_at=iso(NOW - 2 * DAY)))
    store = SqliteStore(db)
    store.connection.execute(  # a response that did not consume (e.g. recorded elsewhere)
        "INSERT INTO responses VALUES ('reviews', 'C1', 'stale', 'null', ?, 'r1')", (iso(NOW),)
    )
    store.close()
    assert served(client) == []
    assert status(db, "stale") == "expired"


def test_slow_check_within_its_timeout_answers(make_client, seed):
    check = Fixed(True, delay=0.05, timeout=1.0)
    client = make_client(eligibility_checks=[check])
    seed(candidate("stale", created_at=iso(NOW - 2 * DAY)))
    assert served(client) == ["stale"] and check.calls == 1
    assert served(client) == ["stale"] and check.calls == 1  # cached answer


def test_check_slower_than_its_timeout_degrades_in_time(make_client, seed, db):
    slow = Fixed(False, delay=1.0, timeout=0.05)
    client = make_client(eligibility_checks=[slow])
    seed(candidate("stale", created_at=iso(NOW - 2 * DAY)))
    start = time.perf_counter()
    assert served(client) == ["stale"]  # policy serve: a check that cannot answer keeps it
    assert time.perf_counter() - start < 0.5
    assert status(db, "stale") == "live"


def test_failing_check_opens_its_breaker_and_requests_still_answer(make_client, seed, db):
    failing = Fixed(RuntimeError("catalogue down"), failures=3, cooldown=60)
    client = make_client(eligibility_checks=[failing], policies={"video_ratings": "omit"})
    seed(candidate("stale", created_at=iso(NOW - 2 * DAY)),
         candidate("V1", program="video_ratings", subject_type="video",
                   created_at=iso(NOW - 2 * DAY)))  # fmt: skip
    for _ in range(2):  # 2 stale candidates a request, checked concurrently: 4 failures
        assert served(client) == ["stale"]  # serve policy keeps it; omit policy drops V1
    assert failing.breaker.state == "open"
    calls = failing.calls
    for _ in range(3):
        assert served(client) == ["stale"]
    assert failing.calls == calls  # open: not called any more, requests still answer
    assert status(db, "V1") == "live"  # omitted, not expired: nothing said it was ineligible
    metrics = client.get("/metrics").text
    assert 'ceap_eligibility_outcomes_total{check="fixed",outcome="breaker_open"}' in metrics
    assert "ceap_eligibility_cache_total" in metrics
    assert (
        'ceap_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/customers/{customer_id}/candidates"}'
        in metrics
    )


def test_circuit_breaker_half_opens_after_its_cooldown():
    breaker = CircuitBreaker(failures=2, cooldown=0.05)
    breaker.record(False)
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow() and not breaker.allow()  # one trial call at a time
    breaker.record(True)
    assert breaker.state == "closed" and breaker.allow()


def test_catalogue_check_by_callable(make_client, seed, db):
    from serving.eligibility import CatalogueCheck

    gone = {"P2"}
    check = CatalogueCheck(lambda kind, subject: subject not in gone)
    client = make_client(eligibility_checks=[check])
    seed(*(candidate(s, created_at=iso(NOW - 2 * DAY)) for s in ("P1", "P2")))
    assert served(client) == ["P1"]
    assert status(db, "P2") == "expired"


def test_openapi_documents_every_route_and_the_keys(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/customers/{customer_id}/candidates", "/v1/responses", "/v1/opt-outs",
            "/v1/opt-outs/{customer_id}", "/healthz", "/metrics"} <= set(spec["paths"])  # fmt: skip
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    assert client.get("/docs").status_code == 200


# -- real servers ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_real_uvicorn_server(db, seed):
    import uvicorn

    seed(candidate("P1"))
    port = free_port()
    app = create_app(f"sqlite:{db}", config_dir=CONFIGS, api_keys=["secret"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=KEY) as http:
            assert [c["subject_id"] for c in http.get("/v1/customers/C1/candidates").json()["candidates"]] == ["P1"]  # fmt: skip
            body = {"program": "reviews", "customer_id": "C1", "subject_id": "P1"}
            assert http.post("/v1/responses", json=body).json()["consumed"] is True
            assert http.get("/v1/customers/C1/candidates").json()["candidates"] == []
            assert (
                httpx.get(f"http://127.0.0.1:{port}/v1/customers/C1/candidates").status_code == 401
            )
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.slow
@pytest.mark.integration
def test_run_py_serve_with_two_workers(db, seed, tmp_path):
    seed(candidate("P1"))
    env = dict(os.environ, CEAP_API_KEYS="secret", CEAP_HOME=str(tmp_path))
    with (
        run_py_serve(f"sqlite:{db}", CONFIGS, env) as base,
        httpx.Client(base_url=base, headers=KEY) as http,
    ):
        for _ in range(20):  # both workers answer
            r = http.get("/v1/customers/C1/candidates")
            assert r.status_code == 200 and r.json()["candidates"][0]["subject_id"] == "P1"
        metrics = http.get("/metrics").text  # summed across the workers
        assert (
            'ceap_http_request_duration_seconds_count{method="GET",route="/v1/customers/{customer_id}/candidates"} 20.0'
            in metrics
        )


@pytest.mark.integration
def test_the_api_on_dynamodb(moto_endpoint):
    from uuid import uuid4

    spec = f"dynamodb://t{uuid4().hex[:10]}_?region=us-east-1&endpoint_url={moto_endpoint}"
    app = create_app(spec, config_dir=CONFIGS, api_keys=["secret"])
    app.state.stores.writer.upsert_candidates(
        pa.table({c: [r[c] for r in (candidate("P1", score=0.3), candidate("P2", score=0.8),
                                     candidate("stale", created_at=iso(NOW - 2 * DAY)))]
                  for c in CANDIDATE_COLUMNS})
    )  # fmt: skip
    with TestClient(app) as client:
        assert served(client) == ["P2", "stale", "P1"]
        body = {"program": "reviews", "customer_id": "C1", "subject_id": "P2"}
        assert client.post("/v1/responses", json=body, headers=KEY).json()["consumed"] is True
        assert served(client) == ["stale", "P1"]
        client.post("/v1/opt-outs", json={"customer_id": "C1"}, headers=KEY)
        assert served(client) == []
        assert client.delete("/v1/opt-outs/C1", headers=KEY).json()["removed"] == 1
        assert served(client) == ["stale", "P1"]
