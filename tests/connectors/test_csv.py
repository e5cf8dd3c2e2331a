"""csv: a ragged line (more or fewer fields than the header) is one marked row in its place,
never a failed file; key columns (``text_columns``) keep their text as written; and the
``text_columns`` argument of the connector contract reaches every connector that reads."""

from __future__ import annotations

import gzip
import inspect
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from ceap.plugins import connectors
from connectors.base import ERROR_COLUMN, ORIGIN_COLUMN, Connector, accepts_text_columns
from connectors.csv import CsvConnector
from transforms.dead_letters import RAW

HEADER = "customer_id,product_id,delivered_at,qty\n"
RAGGED = (
    HEADER
    + "C1,P1,2026-11-01T00:00:00Z,1\n"
    + "C3,C\n"  # line 3: 2 fields
    + "C2,P2,2026-11-02T00:00:00Z,2\n"
    + "C4,P4,2026-11-04T00:00:00Z,4,extra\n"  # line 5: 5 fields
    + "C5,P5,2026-11-05T00:00:00Z,5\n"
)


def read(path, **kwargs) -> pa.Table:
    return CsvConnector({"path": str(path)}).read_table(**kwargs)


def test_a_ragged_line_is_a_marked_row_in_its_place(tmp_path):
    (tmp_path / "rows.csv").write_text(RAGGED)
    table = read(tmp_path / "rows.csv")
    assert table.column("customer_id").to_pylist() == ["C1", None, "C2", None, "C5"]
    assert table.column("qty").to_pylist() == [1, None, 2, None, 5]  # still typed
    assert table.column(ERROR_COLUMN).to_pylist() == [
        None,
        "line 3: expected 4 columns, got 2",
        None,
        "line 5: expected 4 columns, got 5",
        None,
    ]
    assert table.column(RAW).to_pylist() == [
        None,
        "C3,C",
        None,
        "C4,P4,2026-11-04T00:00:00Z,4,extra",
        None,
    ]


def test_a_ragged_gzip_file(tmp_path):
    with gzip.open(tmp_path / "rows.csv.gz", "wt") as handle:
        handle.write(RAGGED)
    table = read(tmp_path / "rows.csv.gz")
    assert table.column("customer_id").to_pylist() == ["C1", None, "C2", None, "C5"]
    assert table.column(RAW).to_pylist()[1] == "C3,C"


def test_a_file_where_every_line_is_ragged(tmp_path):
    (tmp_path / "rows.csv").write_text("a,b,c\n1,2\n3\n4,5,6,7\n")
    table = read(tmp_path / "rows.csv")
    assert table.num_rows == 3
    assert table.column("a").to_pylist() == [None, None, None]
    assert table.column(RAW).to_pylist() == ["1,2", "3", "4,5,6,7"]
    assert table.column(ERROR_COLUMN).to_pylist() == [
        "line 2: expected 3 columns, got 2",
        "line 3: expected 3 columns, got 1",
        "line 4: expected 3 columns, got 4",
    ]


def test_a_clean_file_has_no_raw_column(tmp_path):
    (tmp_path / "rows.csv").write_text(HEADER + "C1,P1,2026-11-01T00:00:00Z,1\n")
    assert read(tmp_path / "rows.csv").column_names == [
        "customer_id",
        "product_id",
        "delivered_at",
        "qty",
    ]


def test_ragged_lines_across_blocks_keep_their_order_and_numbers(tmp_path):
    """Large enough for several parse blocks (pyarrow's threaded read numbers no line)."""
    lines, expected = ["id,v"], []
    for i in range(200_000):
        ragged = i % 40_000 == 3
        lines.append(f"bad{i}" if ragged else f"{i},{i}")
        expected.append((None if ragged else i, f"bad{i}" if ragged else None))
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    table = read(tmp_path / "rows.csv")
    got = list(zip(table.column("id").to_pylist(), table.column(RAW).to_pylist(), strict=True))
    assert got == expected
    errors = [e for e in table.column(ERROR_COLUMN).to_pylist() if e]
    assert errors == [f"line {i + 2}: expected 2 columns, got 1" for i in range(3, 200_000, 40_000)]


def test_read_gives_ragged_rows_their_position_in_the_split(tmp_path):
    (tmp_path / "rows.csv").write_text(RAGGED)
    source = CsvConnector({"path": str(tmp_path / "rows.csv")})
    with TestPipeline() as p:
        rows = (
            p
            | source.read(["customer_id"], text_columns=["customer_id"])
            | beam.FlatMap(
                lambda b: zip(
                    b.column(ORIGIN_COLUMN).to_pylist(),
                    b.column("customer_id").to_pylist(),
                    b.column(RAW).to_pylist(),
                    strict=True,
                )
            )
        )
        assert_that(
            rows,
            equal_to(
                [
                    (0, "C1", None),
                    (1, None, "C3,C"),
                    (2, "C2", None),
                    (3, None, "C4,P4,2026-11-04T00:00:00Z,4,extra"),
                    (4, "C5", None),
                ]
            ),
        )


# --- text_columns ---------------------------------------------------------------------------

IDS = "cust,sku,n\n1E5,1E5,1\n2E5,0012,2\n12.50,12.50,3\n7,7,4\n"


def test_text_columns_keep_ids_as_written(tmp_path):
    (tmp_path / "ids.csv").write_text(IDS)
    table = read(tmp_path / "ids.csv", text_columns=["cust", "sku"])
    assert table.column("cust").to_pylist() == ["1E5", "2E5", "12.50", "7"]
    assert table.column("sku").to_pylist() == ["1E5", "0012", "12.50", "7"]
    assert table.column("n").type == pa.int64()  # the other columns are still typed
    assert ERROR_COLUMN not in table.column_names


def test_without_text_columns_the_same_column_is_typed(tmp_path):
    """What ``text_columns`` prevents: ``1E5`` read as the number 100000."""
    (tmp_path / "ids.csv").write_text("cust,n\n1E5,1\n2E5,2\n7,3\n")
    assert read(tmp_path / "ids.csv").column("cust").to_pylist() == [1e5, 2e5, 7.0]
    kept = read(tmp_path / "ids.csv", text_columns=["cust"])
    assert kept.column("cust").to_pylist() == ["1E5", "2E5", "7"]


def test_text_columns_absent_from_the_file_are_ignored(tmp_path):
    (tmp_path / "ids.csv").write_text(IDS)
    table = read(tmp_path / "ids.csv", columns=["n"], text_columns=["cust", "nowhere"])
    assert table.column_names == ["n"]


def test_every_connector_that_reads_takes_text_columns():
    """The contract changed in base.py: each built-in override follows it."""
    for name in connectors.names():
        cls = connectors.get(name)
        if not cls.__module__.startswith("connectors."):
            continue  # a third-party plugin: see the next test
        for method in ("read", "read_split", "read_table"):
            if method in vars(cls):
                assert accepts_text_columns(getattr(cls, method)), f"{name}.{method}"
                param = inspect.signature(getattr(cls, method)).parameters["text_columns"]
                assert param.kind is param.KEYWORD_ONLY, f"{name}.{method}"


class _Legacy(Connector):
    """A third-party connector written before ``text_columns`` existed."""

    def read_split(self, split, columns=None) -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"id": ["a", "b"]})


def test_a_connector_without_text_columns_is_called_as_before():
    assert not accepts_text_columns(_Legacy().read_split)
    table = _Legacy().read_table(["id"], text_columns=["id"])
    assert table.column("id").to_pylist() == ["a", "b"]
    with TestPipeline() as p:
        ids = (
            p
            | _Legacy().read(["id"], text_columns=["id"])
            | beam.FlatMap(lambda b: b.column("id").to_pylist())
        )
        assert_that(ids, equal_to(["a", "b"]))
