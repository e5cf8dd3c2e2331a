"""The Snowflake connector against a fake ``snowflake.connector`` module.

The fake records what the connector sends (connect arguments, SQL, bound parameters) and
answers ``fetch_arrow_batches()`` with Arrow tables, as the real cursor does.
"""

from __future__ import annotations

import datetime as dt
import sys
import types

import apache_beam as beam
import pyarrow as pa
import pydantic
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import connectors.snowflake as snowflake_module
from ceap.errors import ConnectorError
from ceap.plugins import connectors
from connectors.snowflake import SnowflakeConnector, rechunk

QUERY = "SELECT customer_id, orders FROM deliveries WHERE region = ? AND day >= ?"
OPTIONS = {
    "query": QUERY,
    "parameters": ["north'; DROP TABLE x; --", dt.date(2024, 5, 1)],
    "account": "myorg-acct",
    "user": "ceap",
    "warehouse": "WH",
    "database": "DB",
    "schema": "PUBLIC",
    "role": "READER",
}


def chunk(start: int, n: int, int_type: pa.DataType | None = None) -> pa.Table:
    return pa.table(
        {
            "CUSTOMER_ID": [f"c{i}" for i in range(start, start + n)],
            "ORDERS": pa.array(range(start, start + n), int_type or pa.int64()),
        }
    )


class FakeSnowflake:
    """Stands in for ``snowflake.connector``; one instance per test."""

    class Error(Exception):
        pass

    def __init__(self, chunks, fail_on_execute=False):
        self.chunks = chunks
        self.fail_on_execute = fail_on_execute
        self.connects: list[dict] = []
        self.executed: list[tuple[str, object]] = []
        self.closed = 0

    def connect(self, **kwargs):
        self.connects.append(kwargs)
        return _Connection(self, kwargs.get("paramstyle", "pyformat"))

    def install(self, monkeypatch) -> FakeSnowflake:
        module = types.ModuleType("snowflake.connector")
        module.Error = self.Error
        module.connect = self.connect
        package = types.ModuleType("snowflake")
        package.__path__ = []
        package.connector = module
        monkeypatch.setitem(sys.modules, "snowflake", package)
        monkeypatch.setitem(sys.modules, "snowflake.connector", module)
        return self


class _Connection:
    def __init__(self, fake, paramstyle):
        self.fake, self.paramstyle = fake, paramstyle

    def cursor(self):
        return _Cursor(self)

    def close(self):
        self.fake.closed += 1


class _Cursor:
    def __init__(self, connection):
        self.connection = connection

    def execute(self, sql, params=None):
        fake = self.connection.fake
        if params and self.connection.paramstyle != "qmark":
            raise AssertionError("parameters would be interpolated client-side")
        if params and sql.count("?") != len(params):
            raise fake.Error("wrong number of bind variables")
        if fake.fail_on_execute:
            raise fake.Error(
                "002003 (42S02): SQL compilation error: Object 'DELIVERIES' does not exist"
            )
        fake.executed.append((sql, params))
        return self

    def fetch_arrow_batches(self):
        yield from self.connection.fake.chunks


@pytest.fixture
def password(monkeypatch):
    monkeypatch.delenv(snowflake_module.PRIVATE_KEY_ENV, raising=False)
    monkeypatch.setenv(snowflake_module.PASSWORD_ENV, "s3cret")


def test_registered_by_name():
    assert connectors.get("snowflake") is SnowflakeConnector


def test_parameters_are_bound_not_formatted(monkeypatch, password):
    fake = FakeSnowflake([chunk(0, 3)]).install(monkeypatch)
    SnowflakeConnector(OPTIONS).read_table()
    [(sql, params)] = fake.executed
    assert sql == QUERY
    assert "DROP" not in sql
    assert params == ["north'; DROP TABLE x; --", dt.date(2024, 5, 1)]
    [args] = fake.connects
    assert args["paramstyle"] == "qmark"  # server-side binding


def test_password_comes_from_the_environment(monkeypatch, password):
    fake = FakeSnowflake([chunk(0, 1)]).install(monkeypatch)
    SnowflakeConnector(OPTIONS).read_table()
    assert fake.connects == [
        {
            "account": "myorg-acct",
            "user": "ceap",
            "paramstyle": "qmark",
            "warehouse": "WH",
            "database": "DB",
            "schema": "PUBLIC",
            "role": "READER",
            "password": "s3cret",
        }
    ]
    assert fake.closed == 1


def test_secrets_are_not_options():
    with pytest.raises(pydantic.ValidationError, match="password"):
        SnowflakeConnector({**OPTIONS, "password": "in-the-yaml"})


def test_private_key_path_from_the_environment(monkeypatch):
    monkeypatch.delenv(snowflake_module.PASSWORD_ENV, raising=False)
    monkeypatch.setenv(snowflake_module.PRIVATE_KEY_ENV, "/secrets/rsa_key.p8")
    monkeypatch.setenv(snowflake_module.PASSPHRASE_ENV, "pass")
    fake = FakeSnowflake([chunk(0, 1)]).install(monkeypatch)
    SnowflakeConnector(OPTIONS).read_table()
    [args] = fake.connects
    assert args["private_key_file"] == "/secrets/rsa_key.p8"
    assert args["private_key_file_pwd"] == "pass"
    assert args["authenticator"] == "SNOWFLAKE_JWT"
    assert "password" not in args


def test_no_credentials_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(snowflake_module.PASSWORD_ENV, raising=False)
    monkeypatch.delenv(snowflake_module.PRIVATE_KEY_ENV, raising=False)
    FakeSnowflake([]).install(monkeypatch)
    with pytest.raises(ConnectorError, match="SNOWFLAKE_PASSWORD"):
        SnowflakeConnector(OPTIONS).read_table()


def test_batches_are_rechunked(monkeypatch, password):
    monkeypatch.setattr(snowflake_module, "BATCH_ROWS", 4)
    # Snowflake chunks are small and may encode a NUMBER column narrower in some of them.
    fake = FakeSnowflake([chunk(0, 3), chunk(3, 3, pa.int16()), chunk(6, 5)]).install(monkeypatch)
    batches = list(SnowflakeConnector(OPTIONS).read_split(None))
    assert [b.num_rows for b in batches] == [4, 4, 3]
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    table = pa.Table.from_batches(batches)
    assert table.column_names == ["customer_id", "orders"]  # lower-cased
    assert table.column("orders").to_pylist() == list(range(11))
    assert table.schema.field("orders").type == pa.int64()
    assert fake.closed == 1


def test_rechunk_splits_large_chunks():
    sizes = [b.num_rows for b in rechunk([chunk(0, 10).to_batches()[0]], rows=4)]
    assert sizes == [4, 4, 2]
    assert list(rechunk([], rows=4)) == []


def test_columns_and_names(monkeypatch, password):
    FakeSnowflake([chunk(0, 2)]).install(monkeypatch)
    table = SnowflakeConnector(OPTIONS).read_table(columns=["orders", "nope"])
    assert table.column_names == ["orders"]
    FakeSnowflake([chunk(0, 2)]).install(monkeypatch)
    table = SnowflakeConnector({**OPTIONS, "lowercase_columns": False}).read_table()
    assert table.column_names == ["CUSTOMER_ID", "ORDERS"]


def test_query_error_is_a_connector_error(monkeypatch, password):
    fake = FakeSnowflake([], fail_on_execute=True).install(monkeypatch)
    with pytest.raises(ConnectorError, match="does not exist"):
        SnowflakeConnector(OPTIONS).read_table()
    assert fake.closed == 1


def test_missing_client_names_the_extra(monkeypatch, password):
    monkeypatch.setitem(sys.modules, "snowflake", None)
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)
    with pytest.raises(ConnectorError, match=r"pip install 'ceap\[snowflake\]'"):
        SnowflakeConnector(OPTIONS).read_table()


def test_read_in_a_beam_pipeline(monkeypatch, password):
    monkeypatch.setattr(snowflake_module, "BATCH_ROWS", 4)
    FakeSnowflake([chunk(0, 3), chunk(3, 3), chunk(6, 4)]).install(monkeypatch)
    with TestPipeline() as p:
        sizes = p | "Snowflake" >> SnowflakeConnector(OPTIONS).read() | beam.Map(len)
        assert_that(sizes, equal_to([4, 4, 2]))
