"""A deterministic, seeded sample warehouse written as Parquet tables.

``generate_warehouse(root)`` writes ``root/<table>/part-NNNNN.parquet`` for every table in
``TABLES``: the local warehouse the embedded default programs read. Times are relative to
``as_of`` (the last 60 days; upcoming events in the next 60), so data generated today is
fresh today. The same (rows, seed, as_of) gives the same values, whatever the machine.

Generation is vectorised and overlaps with writing (one writer thread, since Parquet
encoding releases the GIL): 10 million rows per fact table take well under a minute.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sample import activity, catalogue, feedback
from sample.core import PART_ROWS, Context, Sizes
from sample.schema import TABLES, UNIQUE_COLUMNS

ROW_GROUP_ROWS = 262_144
COMPRESSION = "zstd"

Generator = Callable[[Context], pa.Table | Iterator[pa.Table]]

# In dependency order: facts look up dimensions, feedback reads the facts' samples.
GENERATORS: dict[str, Generator] = {
    "customers": catalogue.customers,
    "products": catalogue.products,
    "videos": catalogue.videos,
    "tracks": catalogue.tracks,
    "events": catalogue.events,
    "deliveries": activity.deliveries,
    "watch_events": activity.watch_events,
    "ratings": activity.ratings,
    "listens": activity.listens,
    "service_interactions": activity.service_interactions,
    "event_matches": activity.event_matches,
    "contacts": feedback.contacts,
    "responses": feedback.responses,
    "outcomes": feedback.outcomes,
}
assert list(GENERATORS) == list(TABLES)


def generate_warehouse(
    root: str | Path,
    rows: int = 20_000,
    seed: int = 42,
    as_of: datetime | date | None = None,
    progress: Callable[[str], None] | None = None,
    dims_rows: int | None = None,
) -> dict[str, int]:
    """Write every sample table under ``root`` and return ``{table: row_count}``.

    Args:
      root: directory of the warehouse; each table goes to ``root/<table>/`` as
        ``part-00000.parquet``, ``part-00001.parquet``, ... (at most 2,000,000 rows per
        file, row groups of 262,144 rows). Parquet files already in a table's directory
        are replaced.
      rows: rows of each main fact table (deliveries, watch_events, listens,
        service_interactions, event_matches); the other tables scale from it
        (customers ``max(200, rows // 10)``, products, videos and tracks
        ``max(50, rows // 100)``, contacts and responses ``rows // 5``, outcomes
        ``rows // 2`` per program).
      seed: the same (rows, seed, as_of) always gives the same data.
      as_of: the generation's "now" (naive means UTC); default: today's midnight, UTC.
      progress: called with a short line as each part is made, e.g. for a CLI.
      dims_rows: size every table but the main facts as for this many rows (default
        ``rows``): facts grow, customers, catalogues and histories stay put.
    """
    sizes = Sizes.for_rows(rows, dims_rows)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    ctx = Context(sizes=sizes, seed=seed, as_of_us=_epoch_us(as_of))
    root = Path(root)
    counts: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ceap-sample-writer") as writer:
        pending: Future | None = None
        for name, generate in GENERATORS.items():
            directory = root / name
            directory.mkdir(parents=True, exist_ok=True)
            for stale in [*directory.glob("*.parquet"), *directory.glob(".*.tmp")]:
                stale.unlink()
            counts[name] = 0
            for part, piece in enumerate(_parts(generate(ctx), TABLES[name])):
                if pending is not None:
                    pending.result()  # one part in flight: bounded memory, errors surface
                pending = writer.submit(_write, piece, directory / f"part-{part:05d}.parquet")
                counts[name] += piece.num_rows
                if progress is not None:
                    progress(f"{name}: {counts[name]:,} rows")
        if pending is not None:
            pending.result()
    return counts


def _parts(made: pa.Table | Iterable[pa.Table], schema: pa.Schema) -> Iterator[pa.Table]:
    """Regroup generated chunks into parts of exactly PART_ROWS rows (the last: fewer).

    A table with no rows still gets one (empty) part, so its schema is on disk.
    """
    buffered: list[pa.Table] = []
    rows = 0
    emitted = False
    for chunk in [made] if isinstance(made, pa.Table) else made:
        buffered.append(chunk)
        rows += chunk.num_rows
        while rows >= PART_ROWS:
            whole = pa.concat_tables(buffered)
            yield whole.slice(0, PART_ROWS)
            emitted = True
            buffered, rows = [whole.slice(PART_ROWS)], rows - PART_ROWS
    if rows or not emitted:
        yield pa.concat_tables(buffered) if buffered else schema.empty_table()


def _write(piece: pa.Table, path: Path) -> None:
    """Write one part under a hidden name, then rename: readers never see half a file."""
    dictionary = [
        f.name for f in piece.schema if f.type == pa.string() and f.name not in UNIQUE_COLUMNS
    ]
    hidden = path.with_name(f".{path.name}.tmp")
    pq.write_table(
        piece,
        hidden,
        compression=COMPRESSION,
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=dictionary,
    )
    os.replace(hidden, path)


def _epoch_us(as_of: datetime | date | None) -> int:
    if as_of is None:
        as_of = datetime.now(UTC).date()
    if not isinstance(as_of, datetime):
        as_of = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    elif as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return (as_of - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
