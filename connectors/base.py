"""The connector contract: a named source of rows as Arrow record batches.

A connector lists its *splits* (files, row-group ranges, query shards) when the graph is
built and reads each split on a worker, so ``read()`` is ``Create(splits) | FlatMap(read)``:
portable to every runner (the DaskRunner included) and parallel across splits. On the
in-process runner with one worker the splits are one element, read a batch ahead across
their boundaries (``_read_ahead``): there is no other worker to share them with.
``read_table()`` reads everything in-process, which is what enrichment lookups need.

Every read takes ``text_columns``: the columns the program joins or keys on (the customer
and subject columns, enrichment join columns). A source that infers types from text (csv)
keeps those as the text written, so an id ``1E5`` or ``12.50`` is not read as a number;
typed sources (Parquet, warehouses) ignore it.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, ClassVar

import apache_beam as beam
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from ceap.prefetch import prefetch
from ceap.workers import one_worker
from connectors.batch_coder import batches

BATCH_ROWS = 262_144
"""Rows per Arrow batch between stages: large enough that per-batch overhead vanishes."""
ERROR_COLUMN = "_ceap_error"
"""A connector may mark rows it could not read faithfully (a cell that does not parse)
with text in this column; such rows go to the dead-letter sink with that reason."""
RAW = "_ceap_raw"
"""The text of a row or event that could not be parsed (a ragged CSV line, a streaming event
that is not JSON): its dead letter keeps it."""
ORIGIN_COLUMN = "_ceap_origin"
"""Where each row came from (split and row number): the stable key of a dead letter."""


class ConnectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Connector:
    """Base of every source. Subclasses set ``Options`` and implement ``splits``/``read_split``.

    Args:
      options: an instance of the subclass's ``Options`` model (validated at config load).
    """

    type_name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = ConnectorOptions

    def __init__(self, options: BaseModel | dict[str, Any] | None = None) -> None:
        if not isinstance(options, BaseModel):
            options = self.Options.model_validate(options or {})
        self.options = options

    # -- batch ---------------------------------------------------------------------------
    def splits(self) -> Sequence[Any]:
        """Units of parallel work, listed at graph-build time (raise ConnectorError if none)."""
        return [None]

    def read_split(
        self,
        split: Any,
        columns: Sequence[str] | None = None,
        *,
        text_columns: Collection[str] = (),
    ) -> Iterator[pa.RecordBatch]:
        """Reads one split as record batches of at most ``BATCH_ROWS`` rows.

        Args:
          split: one of ``splits()``.
          columns: the columns wanted (None: all); names the source lacks are skipped.
          text_columns: columns to return as the source's own text, never typed by
            inference (ids, join keys). Sources whose columns are typed ignore it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not read batches")

    def read(
        self, columns: Sequence[str] | None = None, *, text_columns: Collection[str] = ()
    ) -> beam.PTransform:
        """PBegin -> PCollection[pa.RecordBatch]; arguments as for ``read_split``."""
        return _ReadSplits(self, columns, text_columns)

    def read_table(
        self, columns: Sequence[str] | None = None, *, text_columns: Collection[str] = ()
    ) -> pa.Table:
        """The whole source in memory (enrichment tables, lookups, tests); arguments as for
        ``read_split``."""
        batches = [
            b
            for s in self.splits()
            for b in _read_split(self, s, columns, text_columns)
            if b.num_rows
        ]
        if not batches:
            return _empty_table(columns)
        # Files may differ in type (int vs float) or columns: promote to one schema.
        tables = [pa.Table.from_batches([b]) for b in batches]
        return pa.concat_tables(tables, promote_options="permissive")

    # -- streaming (see pipelines/streaming.py) ------------------------------------------
    def read_events(self, start: int = 0, on_batch=None) -> beam.PTransform:
        """PBegin -> unbounded PCollection[pa.RecordBatch] of events, each row with its
        position in ``ORIGIN_COLUMN``; streaming sources override this.

        Args:
          start: the position to resume from (the first event not fully accounted for).
          on_batch: ``on_batch(first_position, end_position, count)`` before each batch.
        """
        raise NotImplementedError(f"connector {self.type_name!r} is not a streaming source")

    def column_names(self) -> list[str] | None:
        """The columns this source provides, known without reading its rows (a file's
        schema or header), or None when it cannot tell cheaply (a query, a stream). A batch
        run checks before any row is read that every column its filters and models read
        exists; None skips that check (the missing column is then found when rows arrive)."""
        return None

    def split_label(self, split: Any) -> str:
        """A short, stable name for a split (dead letters record it as the row's origin)."""
        return str(split)

    def describe(self) -> str:
        return f"{self.type_name}({self.options.model_dump(exclude_none=True)})"


def accepts_text_columns(method: Callable[..., Any]) -> bool:
    """Whether a connector method (``read``, ``read_split``, ``read_table``) takes
    ``text_columns``: connectors written before it existed (third-party plugins) are called
    without it, as before."""
    params = inspect.signature(method).parameters.values()
    return any(p.name == "text_columns" or p.kind is p.VAR_KEYWORD for p in params)


def _read_split(
    connector: Connector,
    split: Any,
    columns: Sequence[str] | None,
    text_columns: Collection[str],
) -> Iterator[pa.RecordBatch]:
    if text_columns and accepts_text_columns(connector.read_split):
        return connector.read_split(split, columns, text_columns=text_columns)
    return connector.read_split(split, columns)


class _ReadSplits(beam.PTransform):
    def __init__(
        self,
        connector: Connector,
        columns: Sequence[str] | None,
        text_columns: Collection[str] = (),
    ) -> None:
        super().__init__()
        self._connector = connector
        self._columns = list(columns) if columns else None
        self._text = sorted(text_columns)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        connector, columns, text = self._connector, self._columns, self._text
        splits = list(connector.splits())
        if one_worker(pbegin.pipeline) and len(splits) > 1:
            # One thread reads them all: in one call, the next split's first batch is read
            # while this one's last are processed (each split started cold, ~20 ms). They
            # ride with the function, not as an element: Beam types an element part by part.
            read = beam.FlatMap(_read_ahead, tuple(splits), connector, columns, text)
            return (
                pbegin
                | "Splits" >> beam.Create([len(splits)], reshuffle=False)
                | "ReadSplit" >> batches(read)
            )
        return (
            pbegin
            | "Splits" >> beam.Create(splits, reshuffle=False)
            | "ReadSplit" >> batches(beam.FlatMap(_with_origin, connector, columns, text))
        )


def _read_ahead(
    _count: int,
    splits: tuple,
    connector: Connector,
    columns: Sequence[str] | None,
    text_columns: Collection[str] = (),
) -> Iterator[pa.RecordBatch]:
    """Every split's batches in order (each tagged as ``_with_origin`` tags it), produced
    a batch ahead on a second thread across the splits' boundaries."""
    each = (_with_origin(s, connector, columns, text_columns) for s in splits)
    # One ahead is enough: a split that reads ahead itself (Parquet) keeps its own two.
    yield from prefetch(itertools.chain.from_iterable(each), depth=1)


def _with_origin(
    split: Any,
    connector: Connector,
    columns: Sequence[str] | None,
    text_columns: Collection[str] = (),
):
    """Tags each row with its position in the split: the stable key of a dead letter."""
    offset = 0
    label = connector.split_label(split).encode()
    for batch in _read_split(connector, split, columns, text_columns):
        n = batch.num_rows
        if not n:
            continue
        rows = pa.array(np.arange(offset, offset + n, dtype=np.int64))
        offset += n
        batch = batch.append_column(ORIGIN_COLUMN, rows)
        yield batch.replace_schema_metadata({**(batch.schema.metadata or {}), b"ceap.split": label})


def _empty_table(columns: Sequence[str] | None) -> pa.Table:
    return pa.table({c: pa.array([], pa.null()) for c in columns or []})
