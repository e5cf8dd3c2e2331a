"""Enrichment gathers few-valued text columns through dictionaries: the rows it adds are
the plain gather's, value for value and type for type (absent keys give nulls)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.enrichment import _Lookup


def test_the_gathered_columns_are_the_plain_take():
    rng = np.random.default_rng(3)
    n = 5000
    table = pa.table({
        "_ceap_key": [f"c{i}" for i in range(n)],
        "region": pa.array(rng.choice(["eu", "us", "日本", None], n).tolist(), pa.string()),
        "name": [f"name {i}" for i in range(n)],  # many values: gathered as it is
        "score": rng.random(n),
        "tier": pa.array(rng.choice(["a", "b"], n).tolist()).dictionary_encode(),  # as read
    })  # fmt: skip
    lookup = _Lookup(table)
    assert pa.types.is_dictionary(lookup.values.schema.field("region").type)
    assert not pa.types.is_dictionary(lookup.values.schema.field("name").type)
    probe = pa.array([f"c{i}" for i in rng.integers(0, 2 * n, 3000)])
    rows = lookup.positions(probe)
    columns = ["region", "name", "score", "tier"]
    want = table.select(columns).take(rows)
    for name, got in zip(columns, lookup.gather(columns, rows), strict=True):
        expected = want.column(name).combine_chunks()
        assert got.type == expected.type, name
        assert got.to_pylist() == expected.to_pylist(), name
    assert pc.sum(pc.is_null(rows)).as_py() > 0  # some probes were absent
