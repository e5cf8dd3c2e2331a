"""The tables of the sample warehouse and their Arrow schemas, in the order they are written.

This is the contract the sample data offers to program configs, connectors and tests:
column names and types here are what ``root/<table>/part-*.parquet`` holds. Ids are
strings with a one-letter prefix and zero padding (``C00000001``, ``P000001``); times are
``timestamp("us", tz="UTC")``; flags are real booleans. Nullable columns are marked in the
comments; every other column is null-free, except the deliberate bad rows of
``deliveries`` (``customer_id`` or ``delivered_at`` null) that exercise dead letters.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
STR = pa.string()
F64 = pa.float64()
I32 = pa.int32()
I64 = pa.int64()
BOOL = pa.bool_()

# The programs of the platform, and the subject each one asks about.
PROGRAMS = ("reviews", "video_ratings", "music_feedback", "service_surveys", "event_invites")

TABLES: dict[str, pa.Schema] = {
    # Dimensions.
    "customers": pa.schema(
        [
            ("customer_id", STR),
            ("email", STR),
            ("phone", STR),  # E.164, fictional ranges (+1555..., +447700...)
            ("region", STR),  # us-east | us-west | eu-west | eu-central | apac
            ("country", STR),  # ISO 3166 alpha-2
            ("timezone", STR),  # IANA, consistent with region and country
            ("locale", STR),  # BCP 47, consistent with country
            ("trust_score", F64),  # 0..1, skewed high
            ("opted_out", BOOL),  # ~3 %
            ("engagement_score", F64),  # 0..1, higher for the most active customers
            ("signup_at", TS),
            ("satisfaction", F64),  # 1..5, the customer's average CSAT
        ]
    ),
    "products": pa.schema(
        [
            ("product_id", STR),
            ("title", STR),
            ("category", STR),  # ~12 categories; "adult" and "tobacco" are restricted
            ("brand", STR),
            ("price", F64),  # USD
            ("restricted", BOOL),
        ]
    ),
    "videos": pa.schema([("video_id", STR), ("title", STR), ("genre", STR), ("duration_s", I32)]),
    "tracks": pa.schema(
        [
            ("track_id", STR),
            ("title", STR),
            ("artist", STR),
            ("genre", STR),  # the artist's genre
            ("released_at", TS),  # spread over the last 60 days
            ("duration_ms", I64),
        ]
    ),
    "events": pa.schema(
        [
            ("event_id", STR),
            ("name", STR),
            ("category", STR),  # the same vocabulary as event_matches.interest
            ("region", STR),
            ("city", STR),
            ("starts_at", TS),  # in the next 60 days
            ("ends_at", TS),  # 2 to 6 hours later
            ("capacity", I32),
        ]
    ),
    # Facts: `rows` rows each.
    "deliveries": pa.schema(
        [
            ("delivery_id", STR),
            ("customer_id", STR),  # null in ~0.1 % of rows (deliberately bad)
            ("product_id", STR),
            ("delivered_at", TS),  # null in ~0.05 % of rows (deliberately bad)
            ("quantity", I32),
            ("price", F64),  # unit price paid, USD
            ("category", STR),  # the product's category
            ("region", STR),  # the customer's region (null with customer_id)
        ]
    ),
    "watch_events": pa.schema(
        [
            ("customer_id", STR),
            ("video_id", STR),
            ("watched_pct", F64),  # 0..1; ~0.1 % of rows are exact duplicates
            ("completed_at", TS),
            ("device", STR),
        ]
    ),
    "ratings": pa.schema(
        [("customer_id", STR), ("video_id", STR), ("rated_at", TS), ("rating", I32)]
    ),
    "listens": pa.schema(
        [
            ("customer_id", STR),
            ("track_id", STR),
            ("listened_at", TS),  # after the track's released_at
            ("played_ms", I64),
            ("track_ms", I64),  # the track's duration_ms
            ("full_playback", BOOL),  # played_ms >= track_ms
        ]
    ),
    "service_interactions": pa.schema(
        [
            ("interaction_id", STR),
            ("customer_id", STR),
            ("service_type", STR),
            ("status", STR),  # completed | cancelled | open
            ("completed_at", TS),  # for open ones: the last update
            ("agent_id", STR),
            ("satisfaction", F64),  # 1..5, null until the customer gave a CSAT
        ]
    ),
    "event_matches": pa.schema(
        [
            ("customer_id", STR),
            ("event_id", STR),
            ("interest", STR),  # the customer's interest, an event category
            ("interest_match", F64),  # 0..1
            ("attended_similar", BOOL),
            ("event_region", STR),
            ("starts_at", TS),  # the event's start, in the future
        ]
    ),
    # What the platform did before: contacts, responses and labelled past candidates.
    "contacts": pa.schema(
        [
            ("customer_id", STR),
            ("program", STR),
            ("subject_id", STR),
            ("channel", STR),  # email | sms | push | in_app
            ("contacted_at", TS),
        ]
    ),
    "responses": pa.schema(
        [
            ("customer_id", STR),
            ("program", STR),
            ("subject_id", STR),
            ("response", STR),
            ("responded_at", TS),
        ]
    ),
    "outcomes": pa.schema(
        [
            ("program", STR),
            ("customer_id", STR),
            ("subject_id", STR),
            ("created_at", TS),
            ("engagement_score", F64),
            ("trust_score", F64),
            ("price", F64),  # reviews only, else null
            ("watched_pct", F64),  # video_ratings only, else null
            ("played_pct", F64),  # music_feedback only, else null
            ("satisfaction", F64),  # service_surveys only, else null
            ("interest_match", F64),  # event_invites only, else null
            ("responded", BOOL),  # the label: logistic in the features above
        ]
    ),
}

# Columns with one distinct value per row: dictionary encoding only costs time there.
UNIQUE_COLUMNS = frozenset({"delivery_id", "interaction_id", "email", "phone"})
