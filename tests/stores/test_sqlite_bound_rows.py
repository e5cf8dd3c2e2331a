"""The rows the SQLite store binds are the table's rows, whether a column repeats one value
(bound as a repeat) or not."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.sqlite.schema import bound_rows


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 6), st.data())
def test_bound_rows_are_the_rows_of_the_table(n, data):
    kinds = [st.sampled_from([None, "a", "b", ""]), st.none() | st.sampled_from([0.0, -0.0]) | st.floats(allow_nan=True),
             st.none() | st.integers(-3, 3), st.just("same"), st.none()]  # fmt: skip
    columns = {
        f"c{i}": data.draw(st.lists(kind, min_size=n, max_size=n)) for i, kind in enumerate(kinds)
    }
    types = [pa.string(), pa.float64(), pa.int64(), pa.string(), pa.string()]
    table = pa.table(
        {name: pa.array(v, t) for (name, v), t in zip(columns.items(), types, strict=True)}
    )
    got = bound_rows(table, list(columns))
    expected = list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    assert len(got) == len(expected)
    assert [tuple(map(repr, row)) for row in got] == [tuple(map(repr, row)) for row in expected]
