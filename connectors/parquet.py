"""``parquet``: Parquet files (a file, a directory tree, a glob; local or a Beam URI).

Splits are (file, row groups) ranges of about a million rows, so large files read in
parallel and each worker streams record batches without loading a file whole.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from ceap.errors import ConnectorError
from ceap.file_fields import file_field
from ceap.plugins import connectors
from ceap.prefetch import prefetch
from connectors.base import BATCH_ROWS, Connector
from connectors.files import is_local, list_files, open_file

SPLIT_ROWS = 1_048_576


class ParquetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = file_field(min_length=1)
    """A .parquet file, a directory (read recursively), a glob, or gs:// / s3:// URI."""


@connectors.register("parquet")
class ParquetConnector(Connector):
    Options = ParquetOptions

    def splits(self) -> list[tuple[str, tuple[int, ...] | None]]:
        splits: list[tuple[str, tuple[int, ...] | None]] = []
        for path in list_files(self.options.path, (".parquet", ".pq")):
            if not is_local(path):
                splits.append((path, None))
                continue
            meta = _open_parquet(path).metadata
            group: list[int] = []
            rows = 0
            for i in range(meta.num_row_groups):
                group.append(i)
                rows += meta.row_group(i).num_rows
                if rows >= SPLIT_ROWS:
                    splits.append((path, tuple(group)))
                    group, rows = [], 0
            if group or not splits or splits[-1][0] != path:
                splits.append((path, tuple(group)))
        return splits

    def column_names(self) -> list[str]:
        """Every column of every file (files may differ), from the footers only."""
        names: dict[str, None] = {}
        for path in list_files(self.options.path, (".parquet", ".pq")):
            with open_file(path) as handle:
                names.update(dict.fromkeys(_open_parquet(path, handle).schema_arrow.names))
        return list(names)

    def split_label(self, split: tuple[str, tuple[int, ...] | None]) -> str:
        path, groups = split
        return path if not groups else f"{path}[row groups {groups[0]}-{groups[-1]}]"

    def read_split(
        self,
        split: tuple[str, tuple[int, ...] | None],
        columns: Sequence[str] | None = None,
        *,
        text_columns: Collection[str] = (),  # Parquet columns are typed: nothing to keep
    ) -> Iterator[pa.RecordBatch]:
        path, row_groups = split
        with open_file(path) as handle:
            pf = _open_parquet(path, handle)
            names = set(pf.schema_arrow.names)
            wanted = [c for c in columns if c in names] if columns else None
            if row_groups == ():
                return
            try:
                # The next batch decodes on a second core while this one goes through the graph.
                yield from prefetch(
                    pf.iter_batches(batch_size=BATCH_ROWS, row_groups=row_groups, columns=wanted)
                )
            except (pa.ArrowException, OSError) as exc:  # a corrupt page: say which file
                raise ConnectorError(f"parquet: {path} cannot be read: {exc}") from exc


def _open_parquet(path: str, handle=None) -> pq.ParquetFile:
    """A Parquet file, or a ConnectorError naming it: pyarrow's own message for a corrupt or
    truncated file ("Parquet magic bytes not found in footer") does not say which."""
    try:
        return pq.ParquetFile(handle if handle is not None else path)
    except (pa.ArrowException, OSError) as exc:
        raise ConnectorError(f"parquet: {path} cannot be read: {exc}") from exc
