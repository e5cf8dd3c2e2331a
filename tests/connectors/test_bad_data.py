"""Bad data costs its row, or fails with the file named; it is never silently wrong: times
that mix offsets and naive values, a byte that is not UTF-8, a corrupt Parquet file, a full
disk under the SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ceap.errors import ConfigError, ConnectorError
from configs.schema import parse_program, read_yaml
from connectors.base import ERROR_COLUMN
from connectors.csv import CsvConnector
from connectors.parquet import ParquetConnector
from stores.base import CANDIDATE_COLUMNS
from stores.sqlite import SqliteStore


def read(path, **options) -> dict:
    return CsvConnector({"path": str(path), **options}).read_table().to_pydict()


def test_each_time_keeps_its_own_offset_and_naive_ones_are_the_connectors_zone(tmp_path):
    """pandas gave a naive value the offset of the row before it (10:00 after a -08:00 row
    became 18:00 UTC)."""
    (tmp_path / "t.csv").write_text(
        "id,at\n1,2026-12-01T10:00:00-08:00\n2,2026-12-01 10:00:00\n3,2026-12-01T10:00:00Z\n"
        "4,2026-12-01\n5,2026-12-01T10:00:00.5+05:30\n"
    )
    utc = [datetime(2026, 12, 1, 18, tzinfo=UTC), datetime(2026, 12, 1, 10, tzinfo=UTC),
           datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
           datetime(2026, 12, 1, 4, 30, 0, 500000, tzinfo=UTC)]  # fmt: skip
    assert read(tmp_path / "t.csv")["at"] == utc
    paris = read(tmp_path / "t.csv", timezone="Europe/Paris")["at"]
    assert paris[1] == datetime(2026, 12, 1, 9, tzinfo=UTC)  # 10:00 in Paris
    assert paris[3] == datetime(2026, 11, 30, 23, tzinfo=UTC)  # midnight in Paris
    assert [paris[i] for i in (0, 2, 4)] == [utc[i] for i in (0, 2, 4)]  # offsets win


def test_a_time_zone_that_does_not_exist_is_a_config_error():
    text = """
program: p
action: review
subject_type: product
source: {type: csv, options: {path: x.csv, timezone: Europe/Parsi}}
fields: {customer_id: c, subject_id: s}
scoring: {models: [{id: m, type: column, options: {column: v}}]}
"""
    with pytest.raises(ConfigError, match="unknown time zone 'Europe/Parsi'"):
        parse_program(read_yaml(text), "p.yaml")


def test_a_byte_that_is_not_utf8_costs_its_row_not_the_file(tmp_path):
    (tmp_path / "t.csv").write_bytes(
        b"id,name,price\n1,tea,2.5\n2,caf\xe9,3.0\n3,cake,4.0\n"  # a Latin-1 e-acute
    )
    table = read(tmp_path / "t.csv")
    assert table["id"] == [1, 2, 3] and table["price"] == [2.5, 3.0, 4.0]
    assert table["name"] == ["tea", None, "cake"]
    assert table[ERROR_COLUMN][0] is None and table[ERROR_COLUMN][2] is None
    assert table[ERROR_COLUMN][1] == "column 'name': not valid UTF-8: b'caf\\xe9'"


@pytest.mark.parametrize("content", [b"not parquet at all", b"PAR1" + b"\x00" * 64])
def test_a_corrupt_parquet_file_is_named(tmp_path, content):
    good = tmp_path / "data" / "part-0.parquet"
    good.parent.mkdir()
    pq.write_table(pa.table({"id": [1, 2]}), good)
    bad = tmp_path / "data" / "part-1.parquet"
    bad.write_bytes(content)
    with pytest.raises(ConnectorError, match=f"parquet: {bad} cannot be read"):
        ParquetConnector({"path": str(tmp_path / "data")}).splits()


def test_a_full_disk_says_so_instead_of_a_rollback_error(tmp_path):
    store = SqliteStore(tmp_path / "c.db")
    store.connection.execute("PRAGMA max_page_count = 40")  # a disk with 160 KiB free
    rows = [{
        "program": "r", "customer_id": f"c{i}", "subject_type": "p", "subject_id": "s" * 50,
        "action": "a", "context": "{}" * 100, "score": 0.5, "model_id": "m", "treatment": "m",
        "created_at": "2026-11-25T00:00:00Z", "expires_at": "2026-12-25T00:00:00Z",
        "deliver_after": "2026-11-25T00:00:00Z", "status": "live",
    } for i in range(5000)]  # fmt: skip
    with pytest.raises(Exception, match="database or disk is full"):
        store.upsert_candidates(pa.table({c: [r[c] for r in rows] for c in CANDIDATE_COLUMNS}))
    store.close()
