"""A third-party scorer, as a package outside this repo would ship it: one class plus an
entry point ``[ceap.scorers] constant = ceap_test_plugin:ConstantScorer``."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from scorers.base import Scorer


class ConstantOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float


class ConstantScorer(Scorer):
    """Scores every row with ``options.value``."""

    Options = ConstantOptions

    def score(self, batch):
        return np.full(batch.num_rows, self.options.value)
