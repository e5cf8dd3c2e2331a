"""``StoreDoFn``: a DoFn that keeps one candidate-store connection per worker instance, and
``Gathered``: a batch run's rows held for one store write."""

from __future__ import annotations

from collections.abc import Callable

import apache_beam as beam
import pyarrow as pa

from ceap.context import RunContext
from connectors.base import BATCH_ROWS
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


class Gathered:
    """A batch run's rows for the store, added part by part and handed to ``write`` as one
    table once they reach ``BATCH_ROWS`` rows, and at the bundle's end (``flush``): a
    transaction per part cost more than its rows."""

    def __init__(self, write: Callable[[pa.Table], None]) -> None:
        self._write = write
        self._parts: list[pa.Table] = []

    def add(self, part: pa.Table | pa.RecordBatch) -> None:
        if isinstance(part, pa.RecordBatch):
            part = pa.Table.from_batches([part])
        self._parts.append(part)
        if sum(p.num_rows for p in self._parts) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            table = pa.concat_tables(self._parts, promote_options="permissive")
            self._parts = []
            self._write(table)
