"""``to_candidates``: rows that fail validation leave as dead letters with their origin;
the candidates carry the source's columns, a row id unique across splits (batch) and no
connector bookkeeping columns."""

from __future__ import annotations

import json

import pyarrow as pa

from configs.schema import FieldsConfig
from connectors.base import ERROR_COLUMN, ORIGIN_COLUMN
from transforms.candidates import row_ids, to_candidates
from transforms.dead_letters import RAW

FIELDS = FieldsConfig(customer_id="c", subject_id="s")


def split_batch(label: str, rows: dict) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_pydict(rows)
    return batch.replace_schema_metadata({b"ceap.split": label.encode()})


def test_a_ragged_line_is_a_dead_letter_and_good_rows_carry_no_bookkeeping(ctx):
    batch = split_batch("x.csv", {
        "c": ["c1", None, "c3"], "s": ["p1", None, "p3"], "n": [1, None, 3],
        ERROR_COLUMN: [None, "line 3: expected 3 columns, got 1", None],
        RAW: [None, "oops", None], ORIGIN_COLUMN: [0, 1, 2],
    })  # fmt: skip
    good, bad = to_candidates(batch, FIELDS, ctx)
    assert good.column("customer_id").to_pylist() == ["c1", "c3"]
    assert RAW not in good.schema.names and ERROR_COLUMN not in good.schema.names
    assert good.column(ORIGIN_COLUMN).to_pylist() == row_ids("x.csv", pa.array([0, 2])).to_pylist()
    letter = bad.to_pylist()[0]
    assert (letter["reason"], letter["origin"]) == ("line 3: expected 3 columns, got 1", "x.csv#1")
    assert json.loads(letter["row"])["raw"] == "oops"
