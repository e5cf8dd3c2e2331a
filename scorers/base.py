"""The scorer contract: one model, loaded once per worker, scoring a whole batch at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from ceap.context import RunContext


class ScorerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scorer:
    """Base of every scorer.

    Args:
      options: the subclass's validated ``Options``.
      model_id: the ``id`` of the model entry in the program's ``scoring.models``.
      context: the run, for scorers that need the config dir or the model home.
    """

    type_name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = ScorerOptions

    def __init__(
        self, options: BaseModel | dict | None, model_id: str, context: RunContext
    ) -> None:
        if not isinstance(options, BaseModel):
            options = self.Options.model_validate(options or {})
        self.options = options
        self.model_id = model_id
        self.context = context

    def setup(self) -> None:
        """Loads the model (once per worker). Raise ModelError on a bad or unverified file."""

    def reads(self) -> set[str] | None:
        """The candidate columns the model reads, or None when unknown (then every source
        column is read; naming them lets the source read only what the program uses)."""
        return None

    def score(self, batch: pa.RecordBatch) -> np.ndarray:
        """One float per row (NaN where the model has no score for the row)."""
        raise NotImplementedError


class RowErrors(Exception):  # noqa: N818 - an outcome, raised to carry partial results
    """Some rows of the batch could not be scored (a feature cell that is not a number):
    ``scores`` holds every other row's score (NaN at the bad rows) and ``errors`` the reason
    per row (None where scored). The model itself works: the other rows keep their scores,
    only the bad ones go to the dead-letter sink, and the circuit breaker does not count it.
    """

    def __init__(self, scores: np.ndarray, errors: np.ndarray) -> None:
        bad = int(np.not_equal(errors, None).sum())
        super().__init__(f"{bad} of {len(errors)} rows could not be scored")
        self.scores, self.errors = scores, errors


def numbers(values: pa.Array | pa.ChunkedArray, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as float64 (booleans as 0/1; text parsed cell by cell). Returns the values
    (NaN where missing or not a number) and the error text per row, or None when every
    present cell is a number, so one bad cell costs its row, not the batch."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_boolean(values.type):
        values = pc.cast(values, pa.int8())
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), None
    text = values.to_pandas()
    parsed = pd.to_numeric(text.str.strip(), errors="coerce").to_numpy(dtype="float64")
    bad = (
        np.isnan(parsed)
        & text.notna().to_numpy()
        & ~text.str.strip().str.lower().isin(["nan", ""]).to_numpy()
    )
    if not bad.any():
        return parsed, None
    errors = np.full(len(parsed), None, dtype=object)
    errors[bad] = [f"{what}: {v!r} is not a number" for v in text[bad]]
    return parsed, errors


def score_good_rows(
    errors: np.ndarray | None, n: int, predict: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Scores with ``predict(rows)`` the rows without an error; raises ``RowErrors`` with
    those scores when some rows had one."""
    if errors is None:
        return predict(np.arange(n))
    good = np.flatnonzero(np.equal(errors, None))
    scores = np.full(n, np.nan)
    if len(good):
        scores[good] = predict(good)
    raise RowErrors(scores, errors)


def merge_errors(*per_column: np.ndarray | None) -> np.ndarray | None:
    """The first error of each row over several columns' errors (None when none had any)."""
    found = [e for e in per_column if e is not None]
    if not found:
        return None
    out = found[0].copy()
    for more in found[1:]:
        empty = np.equal(out, None)
        out[empty] = more[empty]
    return out
