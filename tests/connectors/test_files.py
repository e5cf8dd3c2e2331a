"""File connectors: parquet (directories, globs, splits by row groups, types promoted across
files) and csv (types inferred over the whole file, bad cells marked for dead letters)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ceap.errors import ConnectorError
from connectors import parquet as parquet_module
from connectors.base import ERROR_COLUMN, ORIGIN_COLUMN
from connectors.csv import CsvConnector
from connectors.files import list_files
from connectors.parquet import ParquetConnector

# --- parquet -------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """A table written by two jobs: ``x`` is int64 in one file and double in the other."""
    root = tmp_path / "deliveries"
    (root / "dt=2024-03-01").mkdir(parents=True)
    pq.write_table(
        pa.table({"id": ["a", "b"], "x": pa.array([1, 2], pa.int64())}),
        root / "part-0.parquet",
    )
    pq.write_table(
        pa.table({"id": ["c"], "x": pa.array([2.5]), "extra": ["e"]}),
        root / "dt=2024-03-01" / "part-1.parquet",
    )
    (root / "_SUCCESS").write_text("")
    pq.write_table(pa.table({"id": ["hidden"]}), root / ".part-9.parquet")
    pq.write_table(pa.table({"id": ["tmp"]}), root / "_tmp.parquet")
    (root / "notes.txt").write_text("not data")
    return root


def test_parquet_reads_a_directory_tree_and_promotes_types(tree):
    connector = ParquetConnector({"path": str(tree)})
    assert [p for p, _ in connector.splits()] == [
        str(tree / "dt=2024-03-01" / "part-1.parquet"),
        str(tree / "part-0.parquet"),
    ]
    table = connector.read_table()
    assert table.schema.field("x").type == pa.float64()
    assert sorted(zip(table["id"].to_pylist(), table["x"].to_pylist(), strict=True)) == [
        ("a", 1.0),
        ("b", 2.0),
        ("c", 2.5),
    ]
    assert table.column("extra").to_pylist().count(None) == 2  # a column one file lacks
    assert connector.read_table(["id", "nope"]).column_names == ["id"]


def test_parquet_globs_and_a_single_file(tree):
    assert [p for p, _ in ParquetConnector({"path": str(tree / "*.parquet")}).splits()] == [
        str(tree / "part-0.parquet")
    ]
    nested = ParquetConnector({"path": str(tree / "**" / "part-*.parquet")})
    assert len(nested.splits()) == 2
    single = ParquetConnector({"path": str(tree / "part-0.parquet")})
    assert single.read_table()["id"].to_pylist() == ["a", "b"]


def test_parquet_nothing_to_read_names_the_path(tmp_path):
    with pytest.raises(ConnectorError, match="no .parquet/.pq files at"):
        ParquetConnector({"path": str(tmp_path / "nowhere")}).splits()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConnectorError, match="empty"):
        ParquetConnector({"path": str(tmp_path / "empty")}).splits()


def test_parquet_splits_by_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet_module, "SPLIT_ROWS", 5)
    pq.write_table(pa.table({"v": list(range(10))}), tmp_path / "a.parquet", row_group_size=3)
    pq.write_table(pa.table({"v": list(range(10, 14))}), tmp_path / "b.parquet", row_group_size=2)
    connector = ParquetConnector({"path": str(tmp_path)})
    splits = connector.splits()
    a, b = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    # row groups of 3,3,3,1 rows -> [0,1] (6 rows) and [2,3]; of 2,2 -> [0,1] (4 rows).
    assert splits == [(a, (0, 1)), (a, (2, 3)), (b, (0, 1))]
    read = [b.column("v").to_pylist() for s in splits for b in connector.read_split(s)]
    assert sum(read, []) == list(range(14))
    assert connector.split_label(splits[1]) == f"{a}[row groups 2-3]"


def test_parquet_read_in_a_pipeline_tags_each_row_with_its_origin(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet_module, "SPLIT_ROWS", 4)
    pq.write_table(pa.table({"v": list(range(8))}), tmp_path / "a.parquet", row_group_size=4)
    connector = ParquetConnector({"path": str(tmp_path)})
    with TestPipeline() as p:
        batches = p | connector.read()
        rows = batches | beam.FlatMap(
            lambda b: [
                (r["v"], r[ORIGIN_COLUMN], b.schema.metadata[b"ceap.split"].decode())
                for r in b.to_pylist()
            ]
        )
        path = tmp_path / "a.parquet"
        expected = [(v, v % 4, f"{path}[row groups {v // 4}-{v // 4}]") for v in range(8)]
        assert_that(rows, equal_to(expected))


# --- csv -----------------------------------------------------------------------------------


def read_csv(tmp_path, text: str, name: str = "rows.csv", **options) -> pa.Table:
    path = tmp_path / name
    path.write_text(text)
    return CsvConnector({"path": str(path), **options}).read_table()


def test_csv_types_are_inferred_over_the_whole_file(tmp_path):
    # the first 1,000 rows look like integers; a later one is a float
    body = "".join(f"{i},{i}\n" for i in range(1000)) + "1000,2.5\n"
    table = read_csv(tmp_path, "id,amount\n" + body)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("amount").type == pa.float64()
    assert ERROR_COLUMN not in table.column_names
    assert table["amount"][-1].as_py() == 2.5


def test_csv_types(tmp_path):
    table = read_csv(
        tmp_path,
        "customer_id,zip,orders,price,prime,flag,when,name\n"
        "007,01234,3,1.5,true,yes,2024-03-01T10:00:00Z,Ann\n"
        "010,99999,,2,False,no,2024-03-02,Bob\n"
        "123,00000,4,NA,,Y,,\n",
    )
    types = dict(zip(table.column_names, map(str, table.schema.types), strict=True))
    assert types == {
        "customer_id": "string",  # zero-padded ids stay text
        "zip": "string",
        "orders": "int64",
        "price": "double",
        "prime": "bool",
        "flag": "bool",
        "when": "timestamp[us, tz=UTC]",
        "name": "string",
    }
    assert table["customer_id"].to_pylist() == ["007", "010", "123"]
    assert table["orders"].to_pylist() == [3, None, 4]
    assert table["price"].to_pylist() == [1.5, 2.0, None]
    assert table["prime"].to_pylist() == [True, False, None]  # an empty cell is null, not False
    assert table["flag"].to_pylist() == [True, False, True]
    assert table["when"].to_pylist() == [
        datetime(2024, 3, 1, 10, tzinfo=UTC),
        datetime(2024, 3, 2, tzinfo=UTC),
        None,
    ]
    assert table["name"].to_pylist() == ["Ann", "Bob", None]


def test_csv_a_bad_cell_marks_its_row_only(tmp_path):
    table = read_csv(tmp_path, "id,qty,price\na,1,1.5\nb,two,2.5\nc,3,abc\nd,4,4.5\n")
    assert table.schema.field("qty").type == pa.int64()
    assert table["qty"].to_pylist() == [1, None, 3, 4]
    assert table["price"].to_pylist() == [1.5, 2.5, None, 4.5]
    assert table[ERROR_COLUMN].to_pylist() == [
        None,
        "column 'qty': 'two' is not a int64",
        "column 'price': 'abc' is not a double",
        None,
    ]


def test_csv_numbers_stay_exact_and_zero_one_columns_stay_numbers(tmp_path):
    table = read_csv(tmp_path, "id,count,big\n1,1,9007199254740993\n2,0,-12\n3,1,\n")
    assert table.schema.field("count").type == pa.int64()
    assert table["count"].to_pylist() == [1, 0, 1]
    assert table["big"].to_pylist() == [9007199254740993, -12, None]


def test_csv_options_columns_and_delimiter(tmp_path):
    table = read_csv(tmp_path, "a;b;c\n1;x;-\n2;y;3\n", delimiter=";", null_values=["-"])
    assert table["c"].to_pylist() == [None, 3]
    path = tmp_path / "rows.csv"
    assert CsvConnector({"path": str(path), "delimiter": ";"}).read_table(["b"]).column_names == [
        "b"
    ]


def test_csv_gzip_files_in_a_directory(tmp_path):
    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "part-0.csv.gz", "wt") as handle:
        handle.write("id,n\na,1\nb,2\n")
    (tmp_path / "in" / "part-1.csv").write_text("id,n\nc,3\n")
    assert len(list_files(str(tmp_path / "in"), (".csv", ".csv.gz"))) == 2
    table = CsvConnector({"path": str(tmp_path / "in")}).read_table()
    assert sorted(zip(table["id"].to_pylist(), table["n"].to_pylist(), strict=True)) == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
    ]
