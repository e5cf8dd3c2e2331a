"""The scorer contract: one model, loaded once per worker, scoring a whole batch at a time."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
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
