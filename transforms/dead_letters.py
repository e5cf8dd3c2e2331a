"""Dead letters with a fixed shape (program, stage, reason, row as JSON, time, origin).

Stages emit them on the ``DEAD_LETTER`` tagged output as small Arrow tables; the sink
writes them to the store, keyed by origin so a re-run adds none.
"""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa

from connectors.base import RAW
from stores.base import iso

__all__ = ["DEAD_LETTER", "RAW", "dead_letters"]

DEAD_LETTER = "dead_letter"
"""Tag name of every stage's failure output."""


def dead_letters(
    program: str,
    stage: str,
    rows: pa.Table | pa.RecordBatch,
    reasons: list[str],
    origins: list[str],
    now: datetime,
) -> pa.Table:
    """Builds the dead-letter records for the offending rows (few by nature: per-row Python)."""
    payload = rows.drop_columns(
        [c for c in rows.schema.names if c.startswith("_ceap_") and c != RAW]
    )
    records = []
    for r in payload.to_pylist():
        raw = r.pop(RAW, None)
        if raw is not None:  # an event that was not JSON: keep its text as it came
            r["raw"] = raw
        records.append(json.dumps(r, default=str, sort_keys=True))
    n = len(records)
    return pa.table({
        "program": [program] * n, "stage": [stage] * n, "reason": reasons, "row": records,
        "time": [iso(now)] * n, "origin": origins,
    })  # fmt: skip
