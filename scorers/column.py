"""``column``: the score is a column of the candidate (a precomputed propensity, a rule)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from ceap.errors import ConfigError
from ceap.plugins import scorers
from scorers.base import Scorer, numbers, score_good_rows


class ColumnOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str


@scorers.register("column")
class ColumnScorer(Scorer):
    Options = ColumnOptions

    def reads(self) -> set[str]:
        return {self.options.column}

    def score(self, batch: pa.RecordBatch) -> np.ndarray:
        name = self.options.column
        if name not in batch.schema.names:
            raise ConfigError(f"scorer {self.model_id}: no column {name!r} on the candidate")
        values, errors = numbers(batch.column(name), f"column {name!r}")
        return score_good_rows(errors, batch.num_rows, lambda rows: values[rows])
