"""Building blocks shared by the sample tables: sizes, seeded streams, ids, times, skew.

Everything here works on whole numpy arrays: the generator makes tens of millions of rows
in seconds, so no helper loops over rows in Python.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sample.schema import TS

US_PER_S = 1_000_000
HOUR_US = 3_600 * US_PER_S
DAY_US = 24 * HOUR_US
WINDOW_DAYS = 60  # every past timestamp lies in (as_of - 60 days, as_of]
PART_ROWS = 2_000_000  # rows per Parquet file, and per generated chunk of a fact table


@dataclass(frozen=True)
class Sizes:
    """Row counts of every table, derived from the size of one fact table."""

    rows: int
    customers: int
    products: int
    videos: int
    tracks: int
    events: int
    agents: int
    ratings: int
    contacts_per_program: int
    outcomes_per_program: int

    @classmethod
    def for_rows(cls, rows: int, dims_rows: int | None = None) -> Sizes:
        """``rows`` per fact table; every other table sized as for ``dims_rows`` (default
        ``rows``), so a benchmark can grow the facts alone."""
        if dims_rows is not None:
            return replace(cls.for_rows(dims_rows), rows=cls.for_rows(rows).rows)
        if rows < 100:
            raise ValueError(f"rows must be at least 100, got {rows}")
        return cls(
            rows=rows,
            customers=max(200, rows // 10),
            products=max(50, rows // 100),
            videos=max(50, rows // 100),
            tracks=max(50, rows // 100),
            # Event ids have five digits; a catalogue of 10k events is already large.
            events=min(99_999, max(20, rows // 1_000)),
            agents=max(10, rows // 2_000),
            ratings=rows // 10,
            contacts_per_program=rows // 25,  # contacts and responses: rows // 5 in all
            outcomes_per_program=rows // 2,
        )

    @property
    def responses_to_contacts(self) -> int:
        """Responses that answer a recorded contact; the rest came unprompted."""
        return int(self.contacts_per_program * 0.4)

    def sample_size(self, program: str) -> int:
        """Rows of a program's fact table kept for contacts, unprompted responses (and,
        for videos, half of the ratings): in that order."""
        size = 2 * self.contacts_per_program - self.responses_to_contacts
        return size + (self.ratings // 2 if program == "video_ratings" else 0)


@dataclass
class Sample:
    """A random subset of a fact table's rows kept to derive contacts, responses, ratings.

    ``customer`` and ``subject`` are row indices into the customer and subject catalogues
    (for service interactions: the interaction's own row number); ``time_us`` is the
    fact's time in microseconds since the epoch.
    """

    customer: np.ndarray
    subject: np.ndarray
    time_us: np.ndarray


@dataclass
class Context:
    """What every table generator needs: sizes, the clock, seeded streams, shared state."""

    sizes: Sizes
    seed: int
    as_of_us: int
    dims: dict[str, Any] = field(default_factory=dict)  # name -> catalogue.Customers ...
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def rng(self, stream: str, part: int = 0) -> np.random.Generator:
        """An independent generator per (seed, stream, part), so tables and chunks do not
        depend on the order they are made in."""
        return np.random.default_rng([self.seed, zlib.crc32(stream.encode()), part])

    def chunks(self, total: int) -> Iterator[tuple[int, int, int]]:
        """(part, start, length) of the chunks a table of ``total`` rows is made in."""
        for part, start in enumerate(range(0, total, PART_ROWS)):
            yield part, start, min(PART_ROWS, total - start)

    def keep_sample(
        self,
        program: str,
        start: int,
        valid: np.ndarray,
        customer: np.ndarray,
        subject: np.ndarray,
        time_us: np.ndarray,
    ) -> None:
        """Keep this chunk's share of the sample of a program's fact table.

        Fact rows are drawn independently, so the first valid rows of a chunk are already
        a random sample; the shares of all chunks add up to exactly ``sample_size``.
        """
        size, rows, n = self.sizes.sample_size(program), self.sizes.rows, len(valid)
        share = size * (start + n) // rows - size * start // rows
        keep = np.flatnonzero(valid)[:share]
        picked = Sample(customer[keep], subject[keep], time_us[keep])
        self.samples.setdefault(program, []).append(picked)

    def sample(self, name: str) -> Sample:
        parts = self.samples[name]
        return Sample(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Sample.__annotations__)
        )

    def past_us(self, rng: np.random.Generator, n: int, days: int = WINDOW_DAYS) -> np.ndarray:
        """Times in the last ``days`` days before as_of, to the second."""
        return self.as_of_us - rng.integers(0, days * 86_400, n) * US_PER_S

    def after_us(
        self, rng: np.random.Generator, start_us: np.ndarray, within_us: int | None = None
    ) -> np.ndarray:
        """Times after ``start_us`` (within ``within_us`` if given), never after as_of, in
        whole seconds after the start."""
        room = self.as_of_us - start_us
        if within_us is not None:
            room = np.minimum(room, within_us)
        seconds = (rng.random(len(start_us)) * (room // US_PER_S)).astype(np.int64)
        return start_us + seconds * US_PER_S


class Popularity:
    """A fixed, shuffled ranking of n keys; draws favour the top (a few keys get most rows).

    A key's share falls off with its rank r (as a fraction of n) like ``(r + 0.0003) **
    (1 / skew - 1)``: with ``skew`` 2.5 the top 1 % of keys get ~13 % of the draws, the
    busiest key ~50 times the mean and the median key ~0.6 times the mean, at any n.
    """

    OFFSET = 3e-4  # keeps the busiest key finite: ~50x the mean rather than a pole

    def __init__(self, rng: np.random.Generator, n: int, skew: float) -> None:
        self.order = rng.permutation(n)
        self.n = n
        self.power = 1.0 / skew
        self.low = self.OFFSET**self.power
        self.span = (1.0 + self.OFFSET) ** self.power - self.low

    def pick(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw key indices by inverting the rank distribution's CDF."""
        u = rng.random(size)
        rank = ((self.low + u * self.span) ** (1.0 / self.power) - self.OFFSET) * self.n
        return self.order[np.clip(rank.astype(np.int64), 0, self.n - 1)]

    def rank_fraction(self) -> np.ndarray:
        """Each key's rank as a fraction in [0, 1): 0 for the most popular key."""
        frac = np.empty(self.n)
        frac[self.order] = np.arange(self.n) / self.n
        return frac


def fixed_ids(prefix: str, numbers: np.ndarray, width: int, suffix: str = "") -> pa.Array:
    """Strings ``prefix + zero-padded number + suffix`` built as one byte buffer.

    ``width`` grows when a number needs more digits, so ids stay unique at any size.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(numbers):
        width = max(width, len(str(int(numbers.max()))))
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    tail = np.frombuffer(suffix.encode(), dtype=np.uint8)
    length = len(head) + width + len(tail)
    buf = np.empty((len(numbers), length), dtype=np.uint8)
    buf[:, : len(head)] = head
    buf[:, length - len(tail) :] = tail
    rest = numbers.copy()
    for pos in range(len(head) + width - 1, len(head) - 1, -1):
        rest, digit = np.divmod(rest, 10)
        buf[:, pos] = digit + 48
    if length * len(numbers) >= 2**31:  # pa.string() has 32-bit offsets
        raise ValueError("id column too large for one array; generate it in chunks")
    offsets = np.arange(0, length * len(numbers) + 1, length, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(numbers), [None, pa.py_buffer(offsets), pa.py_buffer(buf)]
    )


def codes(rng: np.random.Generator, weights: Sequence[float], n: int) -> np.ndarray:
    """n draws of indices 0..len(weights)-1 with the given relative weights."""
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.searchsorted(cum / cum[-1], rng.random(n), side="right").astype(np.int64)


def vocab(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def take(values: pa.Array, index: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """values[index], null where ``null`` is True."""
    return values.take(pa.array(index, mask=null))


def times(us: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(us, type=TS, mask=null)


def exact_count(n: int, fraction: float) -> int:
    """How many rows of n a fraction stands for, at least one when n is not empty."""
    return min(n, max(1, math.ceil(n * fraction))) if n else 0


def join(*parts: pa.Array | str, sep: str = " ") -> pa.Array:
    """Element-wise string concatenation of arrays (and scalars) with a separator."""
    return pc.binary_join_element_wise(*parts, sep)


def table(schema: pa.Schema, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    """A table in the schema's column order; a column of the wrong type raises here."""
    arrays = []
    for col in schema:
        value = columns[col.name]
        if not isinstance(value, pa.Array | pa.ChunkedArray):
            value = pa.array(value, type=col.type)
        if value.type != col.type:
            raise TypeError(f"column {col.name}: {value.type}, expected {col.type}")
        arrays.append(value)
    return pa.Table.from_arrays(arrays, schema=schema)
