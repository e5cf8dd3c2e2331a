"""An enrichment table is one row per key: a table whose keys are unique and present is
taken as read (no window over it); otherwise each key keeps its first row and rows without
a key are ignored, with a warning."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configs.schema import EnrichConfig
from transforms.enrichment import load_lookup


def lookup(tmp_path, table: pa.Table, columns=("tier", "score")) -> pa.Table:
    pq.write_table(table, tmp_path / "users.parquet")
    spec = EnrichConfig(type="parquet", key="customer_id", on="user", columns=list(columns),
                        options={"path": str(tmp_path / "users.parquet")})  # fmt: skip
    return load_lookup(spec)


def test_unique_keys_are_taken_as_read(tmp_path, caplog):
    n = 5000
    table = pa.table({"user": [f"u{i:05d}" for i in reversed(range(n))],  # not in key order
                      "tier": ["a", "b"] * (n // 2), "score": [i / n for i in range(n)]})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        got = lookup(tmp_path, table)
    assert got.column_names == ["_ceap_key", "tier", "score"]
    assert got.column("_ceap_key").to_pylist() == table.column("user").to_pylist()
    assert got.column("score").to_pylist() == table.column("score").to_pylist()
    assert "ignored" not in caplog.text


def test_repeated_and_missing_keys_keep_each_key_first_row(tmp_path, caplog):
    table = pa.table({"user": ["u1", "u2", None, "u1", "u3", "u2"],
                      "tier": ["first", "first", "none", "second", "first", "second"],
                      "score": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        got = lookup(tmp_path, table)
    rows = sorted(zip(*(got.column(c).to_pylist() for c in got.column_names), strict=True))
    assert rows == [("u1", "first", 1.0), ("u2", "first", 2.0), ("u3", "first", 5.0)]
    assert "3 rows with a null or repeated key ignored" in caplog.text


@pytest.mark.parametrize(
    "keys", [["u1", "u2", "u3"], ["u1", "u2", "u1"]], ids=["unique", "repeated"]
)
def test_columns_keep_their_types_either_way(tmp_path, keys):
    """Whether a key repeats or not, the rows come as read: a zoned time stays zoned, a
    dictionary stays one, a duration stays a duration."""
    zoned = pa.timestamp("us", tz="Europe/Paris")
    table = pa.table({
        "user": keys, "seen": pa.array([0, 10**6, 2 * 10**6], zoned),
        "tier": pa.array(["a", "b", "a"]).dictionary_encode(),
        "wait": pa.array([1, 2, 3], pa.duration("s")),
    })  # fmt: skip
    got = lookup(tmp_path, table, columns=("seen", "tier", "wait"))
    assert [got.schema.field(c).type for c in ("seen", "tier", "wait")] == [
        zoned, table.schema.field("tier").type, pa.duration("s"),
    ]  # fmt: skip
    assert got.column("_ceap_key").to_pylist() == list(dict.fromkeys(keys))
