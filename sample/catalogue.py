"""The dimension tables: customers, products, videos, tracks and events.

Each generator returns the table to write and keeps, in ``ctx.dims``, the numpy columns
the fact tables look up (a customer's region, a product's price, a track's length) so
facts stay consistent with their dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sample.core import (
    HOUR_US,
    Context,
    Popularity,
    codes,
    fixed_ids,
    join,
    table,
    take,
    times,
    vocab,
)
from sample.schema import TABLES
from sample.vocabulary import (
    ADJECTIVES,
    BRANDS,
    CATEGORIES,
    CITIES,
    EVENT_CATEGORIES,
    EVENT_KINDS,
    FIRST_NAMES,
    GEO,
    LAST_NAMES,
    MUSIC_GENRES,
    REGION_WEIGHTS,
    REGIONS,
    RESTRICTED,
    TITLE_NOUNS,
    TITLE_WORDS,
    VIDEO_GENRES,
)


@dataclass
class Catalogue:
    """One dimension as the fact tables see it: its ids and how popular each row is."""

    ids: pa.Array
    popularity: Popularity


@dataclass
class Customers(Catalogue):
    region: np.ndarray  # index into REGIONS
    trust: np.ndarray
    engagement: np.ndarray
    satisfaction: np.ndarray


@dataclass
class Products(Catalogue):
    category: np.ndarray  # index into CATEGORIES
    price: np.ndarray


@dataclass
class Tracks(Catalogue):
    released_us: np.ndarray
    duration_ms: np.ndarray


@dataclass
class Events(Catalogue):
    category: np.ndarray  # index into EVENT_CATEGORIES
    region: np.ndarray  # index into REGIONS
    starts_us: np.ndarray
    by_region: np.ndarray  # event indices sorted by region ...
    region_start: np.ndarray  # ... where each region's run starts ...
    region_count: np.ndarray  # ... and how long it is


def _column(rows: tuple, i: int) -> list:
    return [row[i] for row in rows]


def customers(ctx: Context) -> pa.Table:
    n = ctx.sizes.customers
    rng = ctx.rng("customers")
    number = np.arange(1, n + 1)
    geo = codes(rng, _column(GEO, 6), n)
    region = np.array([REGIONS.index(r) for r in _column(GEO, 0)])[geo]
    # The most active customers (in every fact table) are also the most engaged.
    popularity = Popularity(ctx.rng("customers.activity"), n, skew=2.5)
    active = 1.0 - popularity.rank_fraction()
    engagement = np.clip(0.55 * active**3 + 0.45 * rng.beta(2.0, 2.5, n), 0.0, 1.0)
    trust = rng.beta(5.0, 1.6, n)
    satisfaction = 1.0 + 4.0 * rng.beta(4.0, 1.6, n)
    dims = Customers(
        ids=fixed_ids("C", number, 8),
        popularity=popularity,
        region=region,
        trust=np.round(trust, 4),
        engagement=np.round(engagement, 4),
        satisfaction=np.round(satisfaction, 2),
    )
    ctx.dims["customers"] = dims
    return table(
        TABLES["customers"],
        {
            "customer_id": dims.ids,
            "email": fixed_ids("c", number, 8, suffix="@example.com"),
            "phone": _phones(geo, number),
            "region": take(vocab(REGIONS), region),
            "country": take(vocab(_column(GEO, 1)), geo),
            "timezone": take(vocab(_column(GEO, 2)), geo),
            "locale": take(vocab(_column(GEO, 3)), geo),
            "trust_score": dims.trust,
            "opted_out": rng.random(n) < 0.03,
            "engagement_score": dims.engagement,
            "signup_at": times(ctx.past_us(rng, n)),
            "satisfaction": dims.satisfaction,
        },
    )


def _phones(geo: np.ndarray, number: np.ndarray) -> pa.Array:
    """E.164 numbers in each country's fictional range: built per country, then reordered."""
    order = np.argsort(geo, kind="stable")
    parts = []
    for g in np.unique(geo):
        rows = order[geo[order] == g]
        _, _, _, _, prefix, digits, _ = GEO[g]
        parts.append(fixed_ids(prefix, number[rows] % 10**digits, digits))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return pa.concat_arrays(parts).take(pa.array(inverse))


def products(ctx: Context) -> pa.Table:
    n = ctx.sizes.products
    rng = ctx.rng("products")
    category = codes(rng, _column(CATEGORIES, 1), n)
    median = np.array(_column(CATEGORIES, 2))[category]
    price = np.maximum(0.99, np.round(median * rng.lognormal(0.0, 0.5, n), 2))
    nouns = [noun for *_, words in CATEGORIES for noun in words]
    noun = category * 5 + rng.integers(0, 5, n)
    restricted = np.isin(category, [_column(CATEGORIES, 0).index(c) for c in RESTRICTED])
    dims = Products(
        ids=fixed_ids("P", np.arange(1, n + 1), 6),
        popularity=Popularity(ctx.rng("products.popularity"), n, skew=2.0),
        category=category,
        price=price,
    )
    ctx.dims["products"] = dims
    title = join(
        take(vocab(ADJECTIVES), rng.integers(0, len(ADJECTIVES), n)),
        take(vocab(nouns), noun),
        fixed_ids("", rng.integers(100, 1000, n), 3),
    )
    return table(
        TABLES["products"],
        {
            "product_id": dims.ids,
            "title": title,
            "category": take(vocab(_column(CATEGORIES, 0)), category),
            "brand": take(vocab(BRANDS), rng.integers(0, len(BRANDS), n)),
            "price": price,
            "restricted": restricted,
        },
    )


def _titles(rng: np.random.Generator, n: int) -> pa.Array:
    return join(
        take(vocab(TITLE_WORDS), rng.integers(0, len(TITLE_WORDS), n)),
        take(vocab(TITLE_NOUNS), rng.integers(0, len(TITLE_NOUNS), n)),
    )


def videos(ctx: Context) -> pa.Table:
    n = ctx.sizes.videos
    rng = ctx.rng("videos")
    # Series episodes (~25-50 min) and films (~90-150 min).
    film = rng.random(n) < 0.4
    minutes = np.where(film, rng.normal(115, 20, n), rng.normal(38, 10, n))
    dims = Catalogue(
        ids=fixed_ids("V", np.arange(1, n + 1), 6),
        popularity=Popularity(ctx.rng("videos.popularity"), n, skew=2.0),
    )
    ctx.dims["videos"] = dims
    return table(
        TABLES["videos"],
        {
            "video_id": dims.ids,
            "title": _titles(rng, n),
            "genre": take(vocab(VIDEO_GENRES), rng.integers(0, len(VIDEO_GENRES), n)),
            "duration_s": (np.clip(minutes, 5, 240) * 60).astype(np.int32),
        },
    )


def tracks(ctx: Context) -> pa.Table:
    n = ctx.sizes.tracks
    rng = ctx.rng("tracks")
    artists = max(10, n // 8)
    artist_names = join(
        take(vocab(FIRST_NAMES), rng.integers(0, len(FIRST_NAMES), artists)),
        take(vocab(LAST_NAMES), rng.integers(0, len(LAST_NAMES), artists)),
    )
    artist_genre = rng.integers(0, len(MUSIC_GENRES), artists)
    artist = Popularity(rng, artists, skew=1.5).pick(rng, n)
    # Released evenly over the window, so ~12 % of the catalogue is from the last week.
    released = ctx.past_us(rng, n)
    duration = (np.clip(rng.normal(210, 45, n), 90, 480) * 1000).astype(np.int64)
    dims = Tracks(
        ids=fixed_ids("T", np.arange(1, n + 1), 6),
        popularity=Popularity(ctx.rng("tracks.popularity"), n, skew=2.0),
        released_us=released,
        duration_ms=duration,
    )
    ctx.dims["tracks"] = dims
    return table(
        TABLES["tracks"],
        {
            "track_id": dims.ids,
            "title": _titles(rng, n),
            "artist": take(artist_names, artist),
            "genre": take(vocab(MUSIC_GENRES), artist_genre[artist]),
            "released_at": times(released),
            "duration_ms": duration,
        },
    )


def events(ctx: Context) -> pa.Table:
    n = ctx.sizes.events
    rng = ctx.rng("events")
    category = rng.integers(0, len(EVENT_CATEGORIES), n)
    region = codes(rng, REGION_WEIGHTS, n)
    city = region * 4 + rng.integers(0, 4, n)
    kind = category * 4 + rng.integers(0, 4, n)
    # On the hour, 1 hour to 60 days from as_of.
    starts = ctx.as_of_us + rng.integers(1, 60 * 24, n) * HOUR_US
    by_region = np.argsort(region, kind="stable")
    count = np.bincount(region, minlength=len(REGIONS))
    city_names = vocab([c for r in REGIONS for c in CITIES[r]])
    dims = Events(
        ids=fixed_ids("E", np.arange(1, n + 1), 5),
        popularity=Popularity(ctx.rng("events.popularity"), n, skew=1.5),
        category=category,
        region=region,
        starts_us=starts,
        by_region=by_region,
        region_start=np.concatenate([[0], np.cumsum(count)[:-1]]),
        region_count=count,
    )
    ctx.dims["events"] = dims
    return table(
        TABLES["events"],
        {
            "event_id": dims.ids,
            "name": join(
                take(city_names, city),
                take(vocab([k for c in EVENT_CATEGORIES for k in EVENT_KINDS[c]]), kind),
            ),
            "category": take(vocab(EVENT_CATEGORIES), category),
            "region": take(vocab(REGIONS), region),
            "city": take(city_names, city),
            "starts_at": times(starts),
            # Its own stream: the draws above (and every table seeded before) stay as they were.
            "ends_at": times(starts + ctx.rng("events.duration").integers(2, 7, n) * HOUR_US),
            "capacity": rng.choice([50, 100, 250, 500, 1000, 5000], n).astype(np.int32),
        },
    )
