"""``StoreDoFn``: a DoFn that keeps one candidate-store connection per worker instance."""

from __future__ import annotations

import apache_beam as beam

from ceap.context import RunContext
from stores.spec import open_store


class StoreDoFn(beam.DoFn):
    """Opens the run's store in ``setup`` and closes it in ``teardown``.

    Args:
      context: the run (its ``store`` spec and program).
    """

    def __init__(self, context: RunContext) -> None:
        self._ctx = context

    def setup(self) -> None:
        self._store = open_store(self._ctx.store)

    def teardown(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()
