"""The fact tables: what customers did in the last 60 days.

Each generator yields chunks of at most ``PART_ROWS`` rows, each from its own seeded
stream, and keeps a sample of its rows (``ctx.keep_sample``) from which contacts,
responses and ratings are derived, so those reference real (customer, subject) pairs.
Customers, products, videos and tracks are drawn by popularity: a few are much more
active than the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from sample.core import (
    DAY_US,
    Context,
    codes,
    exact_count,
    fixed_ids,
    table,
    take,
    times,
    vocab,
)
from sample.schema import TABLES
from sample.vocabulary import CATEGORIES, EVENT_CATEGORIES, REGIONS

DEVICES = ("tv", "mobile", "web", "tablet")
DEVICE_WEIGHTS = (0.45, 0.3, 0.15, 0.1)
SERVICE_TYPES = ("repair", "installation", "billing", "support_call", "delivery_issue", "returns")
SERVICE_WEIGHTS = (0.15, 0.12, 0.2, 0.28, 0.13, 0.12)
STATUSES = ("completed", "cancelled", "open")
STATUS_WEIGHTS = (0.85, 0.08, 0.07)

BAD_CUSTOMER = 0.001  # deliveries with a null customer_id
BAD_TIME = 0.0005  # deliveries with a null delivered_at
DUPLICATES = 0.001  # watch events repeated verbatim


def deliveries(ctx: Context) -> Iterator[pa.Table]:
    cust, prod = ctx.dims["customers"], ctx.dims["products"]
    category_names = vocab([c[0] for c in CATEGORIES])
    for part, start, n in ctx.chunks(ctx.sizes.rows):
        rng = ctx.rng("deliveries", part)
        c = cust.popularity.pick(rng, n)
        p = prod.popularity.pick(rng, n)
        t = ctx.past_us(rng, n)
        quantity = np.minimum(rng.geometric(0.65, n), 10).astype(np.int32)
        discount = np.where(rng.random(n) < 0.2, rng.uniform(0.1, 0.3, n), 0.0)
        price = np.maximum(0.5, np.round(prod.price[p] * (1.0 - discount), 2))
        # The deliberately bad rows, at disjoint random positions.
        n_cust, n_time = exact_count(n, BAD_CUSTOMER), exact_count(n, BAD_TIME)
        bad = rng.choice(n, n_cust + n_time, replace=False)
        no_cust = np.zeros(n, dtype=bool)
        no_cust[bad[:n_cust]] = True
        no_time = np.zeros(n, dtype=bool)
        no_time[bad[n_cust:]] = True
        ctx.keep_sample("reviews", start, ~(no_cust | no_time), c, p, t)
        yield table(
            TABLES["deliveries"],
            {
                "delivery_id": fixed_ids("D", np.arange(start + 1, start + n + 1), 9),
                "customer_id": take(cust.ids, c, null=no_cust),
                "product_id": take(prod.ids, p),
                "delivered_at": times(t, null=no_time),
                "quantity": quantity,
                "price": price,
                "category": take(category_names, prod.category[p]),
                "region": take(vocab(REGIONS), cust.region[c], null=no_cust),
            },
        )


def watch_events(ctx: Context) -> Iterator[pa.Table]:
    cust, video = ctx.dims["customers"], ctx.dims["videos"]
    for part, start, n in ctx.chunks(ctx.sizes.rows):
        rng = ctx.rng("watch_events", part)
        c = cust.popularity.pick(rng, n)
        v = video.popularity.pick(rng, n)
        t = ctx.past_us(rng, n)
        # Half the views run (nearly) to the end; the rest stop anywhere.
        finished = rng.random(n) < 0.5
        pct = np.where(finished, rng.uniform(0.85, 1.0, n), rng.beta(2.0, 2.5, n))
        device = codes(rng, DEVICE_WEIGHTS, n)
        # Exact duplicates (a client retrying its upload): odd rows repeat the row before.
        row = np.arange(n)
        dup = 1 + 2 * rng.choice(max(1, (n - 1) // 2), exact_count(n, DUPLICATES), replace=False)
        row[dup] -= 1
        c, v, t, pct, device = c[row], v[row], t[row], pct[row], device[row]
        ctx.keep_sample("video_ratings", start, np.ones(n, dtype=bool), c, v, t)
        yield table(
            TABLES["watch_events"],
            {
                "customer_id": take(cust.ids, c),
                "video_id": take(video.ids, v),
                "watched_pct": np.round(pct, 3),
                "completed_at": times(t),
                "device": take(vocab(DEVICES), device),
            },
        )


def ratings(ctx: Context) -> pa.Table:
    """Past ratings: half rate a video the customer watched in the window, half are older
    viewing habits (any video, any time in the window)."""
    cust, video = ctx.dims["customers"], ctx.dims["videos"]
    rng = ctx.rng("ratings")
    n = ctx.sizes.ratings
    watched = ctx.sample("video_ratings")
    first = ctx.sizes.sample_size("video_ratings") - n // 2
    w_cust, w_video = watched.customer[first:], watched.subject[first:]
    w_time = ctx.after_us(rng, watched.time_us[first:], within_us=2 * DAY_US)
    k = n - len(w_cust)
    c = np.concatenate([w_cust, cust.popularity.pick(rng, k)])
    v = np.concatenate([w_video, video.popularity.pick(rng, k)])
    t = np.concatenate([w_time, ctx.past_us(rng, k)])
    rating = 1 + codes(rng, (0.05, 0.08, 0.17, 0.35, 0.35), n)
    return table(
        TABLES["ratings"],
        {
            "customer_id": take(cust.ids, c),
            "video_id": take(video.ids, v),
            "rated_at": times(t),
            "rating": rating.astype(np.int32),
        },
    )


def listens(ctx: Context) -> Iterator[pa.Table]:
    cust, track = ctx.dims["customers"], ctx.dims["tracks"]
    for part, start, n in ctx.chunks(ctx.sizes.rows):
        rng = ctx.rng("listens", part)
        c = cust.popularity.pick(rng, n)
        k = track.popularity.pick(rng, n)
        t = ctx.after_us(rng, track.released_us[k])  # never before the release
        track_ms = track.duration_ms[k]
        full = rng.random(n) < 0.55
        partial = (track_ms * rng.beta(1.2, 2.0, n)).astype(np.int64)
        played = np.where(full, track_ms, np.minimum(partial, track_ms - 1))
        ctx.keep_sample("music_feedback", start, np.ones(n, dtype=bool), c, k, t)
        yield table(
            TABLES["listens"],
            {
                "customer_id": take(cust.ids, c),
                "track_id": take(track.ids, k),
                "listened_at": times(t),
                "played_ms": played,
                "track_ms": track_ms,
                "full_playback": played >= track_ms,
            },
        )


def service_interactions(ctx: Context) -> Iterator[pa.Table]:
    cust = ctx.dims["customers"]
    agents = fixed_ids("A", np.arange(1, ctx.sizes.agents + 1), 5)
    for part, start, n in ctx.chunks(ctx.sizes.rows):
        rng = ctx.rng("service_interactions", part)
        c = cust.popularity.pick(rng, n)
        t = ctx.past_us(rng, n)
        status = codes(rng, STATUS_WEIGHTS, n)
        # About 60 % of completed interactions already have the customer's CSAT; it
        # scatters around the customer's average.
        rated = (status == 0) & (rng.random(n) < 0.6)
        csat = np.clip(np.round(cust.satisfaction[c] + rng.normal(0.0, 0.9, n)), 1.0, 5.0)
        number = np.arange(start, start + n)
        ctx.keep_sample("service_surveys", start, status == 0, c, number, t)
        yield table(
            TABLES["service_interactions"],
            {
                "interaction_id": fixed_ids("S", number + 1, 9),
                "customer_id": take(cust.ids, c),
                "service_type": take(vocab(SERVICE_TYPES), codes(rng, SERVICE_WEIGHTS, n)),
                "status": take(vocab(STATUSES), status),
                "completed_at": times(t),
                "agent_id": take(agents, rng.integers(0, ctx.sizes.agents, n)),
                "satisfaction": pa.array(csat, mask=~rated),
            },
        )


def event_matches(ctx: Context) -> Iterator[pa.Table]:
    """Customers matched to upcoming events: mostly in their own region, mostly on one of
    their interests (then with a high interest_match)."""
    cust, event = ctx.dims["customers"], ctx.dims["events"]
    for part, start, n in ctx.chunks(ctx.sizes.rows):
        rng = ctx.rng("event_matches", part)
        c = cust.popularity.pick(rng, n)
        region = cust.region[c]
        count = event.region_count[region]
        local = event.by_region[
            np.minimum(
                event.region_start[region] + (rng.random(n) * count).astype(np.int64),
                len(event.by_region) - 1,
            )
        ]
        e = np.where((rng.random(n) < 0.8) & (count > 0), local, event.popularity.pick(rng, n))
        category = event.category[e]
        interest = np.where(
            rng.random(n) < 0.65, category, rng.integers(0, len(EVENT_CATEGORIES), n)
        )
        match = np.where(interest == category, rng.beta(5.0, 2.0, n), rng.beta(1.5, 5.0, n))
        match = np.round(match, 3)
        ctx.keep_sample("event_invites", start, np.ones(n, dtype=bool), c, e, event.starts_us[e])
        yield table(
            TABLES["event_matches"],
            {
                "customer_id": take(cust.ids, c),
                "event_id": take(event.ids, e),
                "interest": take(vocab(EVENT_CATEGORIES), interest),
                "interest_match": match,
                "attended_similar": rng.random(n) < 0.1 + 0.35 * match,
                "event_region": take(vocab(REGIONS), event.region[e]),
                "starts_at": times(event.starts_us[e]),
            },
        )
