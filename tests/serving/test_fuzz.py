"""Fuzzing the Serving API: schemathesis generates requests from the app's own OpenAPI
schema (valid and invalid ones); hypothesis throws arbitrary text at every parameter.
Whatever comes in, no answer is a 5xx and none carries a stack trace."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.app import create_app
from stores.base import CANDIDATE_COLUMNS, iso
from stores.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
KEY = {"X-API-Key": "fuzz"}


def _app():
    db = Path(tempfile.mkdtemp(prefix="ceap-fuzz-")) / "ceap.db"
    now = datetime.now(UTC)
    row = {
        "program": "reviews", "customer_id": "C1", "subject_type": "product", "subject_id": "P1",
        "action": "review", "context": "{}", "score": 0.5, "model_id": "m", "treatment": "t",
        "created_at": iso(now - timedelta(days=2)), "expires_at": iso(now + timedelta(days=2)),
        "deliver_after": iso(now - timedelta(days=1)), "status": "live",
    }  # fmt: skip
    store = SqliteStore(db)
    store.upsert_candidates(pa.table({c: [row[c]] for c in CANDIDATE_COLUMNS}))
    store.close()
    return create_app(f"sqlite:{db}", config_dir=ROOT / "configs", api_keys=["fuzz"])


APP = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@schema.parametrize()
@FUZZ
def test_no_server_errors_from_the_schema(case):
    response = case.call(headers=KEY)
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


@pytest.fixture(scope="module")
def client():
    with TestClient(APP, raise_server_exceptions=False) as c:
        yield c


text = st.text(max_size=300)


@given(customer=text, program=st.one_of(st.none(), text), channel=st.one_of(st.none(), text),
       limit=st.one_of(st.none(), text, st.integers()))  # fmt: skip
@FUZZ
def test_candidates_parameters(client, customer, program, channel, limit):
    params = {k: v for k, v in {"program": program, "channel": channel, "limit": limit}.items() if v is not None}  # fmt: skip
    r = client.get(f"/v1/customers/{quote(customer, safe='')}/candidates", params=params, headers=KEY)  # fmt: skip
    assert r.status_code in (200, 404, 422), r.text


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


@given(body=st.dictionaries(st.sampled_from(["program", "customer_id", "subject_id", "response", "channel", "x"]), json_values) | json_values)  # fmt: skip
@FUZZ
def test_bodies(client, body):
    for path in ("/v1/responses", "/v1/opt-outs"):
        r = client.post(path, json=body, headers=KEY)
        assert r.status_code in (200, 413, 422), r.text


@given(raw=st.binary(max_size=2000))
@FUZZ
def test_raw_bytes_bodies(client, raw):
    r = client.post("/v1/responses", content=raw, headers=KEY | {"content-type": "application/json"})  # fmt: skip
    assert r.status_code in (200, 400, 413, 422), r.text
