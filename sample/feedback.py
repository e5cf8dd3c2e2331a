"""What the platform did before: contacts, responses, and labelled past candidates.

Contacts and responses are drawn from the samples the fact tables kept, so they name
(customer, subject) pairs that also appear in the facts: dedup and frequency caps have
something to find. ``outcomes`` is the training set of the propensity models: one row per
past candidate with its features and whether the customer responded, drawn from a
logistic function of those features so a model learns a real signal (AUC ~0.75).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from sample.core import DAY_US, Context, codes, fixed_ids, table, take, times, vocab
from sample.schema import PROGRAMS, TABLES

CHANNELS = ("email", "sms", "push", "in_app")
CHANNEL_WEIGHTS = (0.45, 0.1, 0.25, 0.2)
STARS = ("1", "2", "3", "4", "5")
# program -> (possible responses, their weights)
RESPONSES = {
    "reviews": (STARS, (0.06, 0.07, 0.12, 0.3, 0.45)),
    "video_ratings": (STARS, (0.05, 0.08, 0.17, 0.35, 0.35)),
    "music_feedback": (("like", "dislike", "skip"), (0.6, 0.25, 0.15)),
    "service_surveys": (STARS, (0.08, 0.07, 0.15, 0.3, 0.4)),
    "event_invites": (("accepted", "declined", "maybe"), (0.45, 0.4, 0.15)),
}
# program -> the catalogue its subjects come from (service surveys ask about interactions)
SUBJECTS = {
    "reviews": "products",
    "video_ratings": "videos",
    "music_feedback": "tracks",
    "event_invites": "events",
}
OPTIONAL_FEATURES = ("price", "watched_pct", "played_pct", "satisfaction", "interest_match")


def subject_ids(ctx: Context, program: str, index: np.ndarray) -> pa.Array:
    if program == "service_surveys":
        return fixed_ids("S", index + 1, 9)
    return take(ctx.dims[SUBJECTS[program]].ids, index)


def contacts(ctx: Context) -> pa.Table:
    """Past contacts: a few days after the fact (delivery, view, listen, interaction), or
    in the last 30 days for invitations to events that are still to come."""
    cust, n = ctx.dims["customers"], ctx.sizes.contacts_per_program
    contacted: dict[str, np.ndarray] = {}
    parts = []
    for i, program in enumerate(PROGRAMS):
        rng = ctx.rng("contacts", i)
        sample = ctx.sample(program)
        if program == "event_invites":
            at = ctx.past_us(rng, n, days=30)
        else:
            at = ctx.after_us(rng, sample.time_us[:n], within_us=7 * DAY_US)
        contacted[program] = at
        parts.append(
            table(
                TABLES["contacts"],
                {
                    "customer_id": take(cust.ids, sample.customer[:n]),
                    "program": take(vocab(PROGRAMS), np.full(n, i)),
                    "subject_id": subject_ids(ctx, program, sample.subject[:n]),
                    "channel": take(vocab(CHANNELS), codes(rng, CHANNEL_WEIGHTS, n)),
                    "contacted_at": times(at),
                },
            )
        )
    ctx.dims["contacted_at"] = contacted
    return pa.concat_tables(parts)


def responses(ctx: Context) -> pa.Table:
    """Past responses: answers to some of the contacts, and as many given unprompted."""
    cust, sizes = ctx.dims["customers"], ctx.sizes
    n, answered = sizes.contacts_per_program, sizes.responses_to_contacts
    parts = []
    for i, program in enumerate(PROGRAMS):
        rng = ctx.rng("responses", i)
        sample = ctx.sample(program)
        own = slice(n, 2 * n - answered)  # the sampled facts after the contacted ones
        reply_at = ctx.after_us(rng, ctx.dims["contacted_at"][program][:answered], 3 * DAY_US)
        if program == "event_invites":
            own_at = ctx.past_us(rng, n - answered, days=30)
        else:
            own_at = ctx.after_us(rng, sample.time_us[own], within_us=5 * DAY_US)
        customer = np.concatenate([sample.customer[:answered], sample.customer[own]])
        subject = np.concatenate([sample.subject[:answered], sample.subject[own]])
        values, weights = RESPONSES[program]
        parts.append(
            table(
                TABLES["responses"],
                {
                    "customer_id": take(cust.ids, customer),
                    "program": take(vocab(PROGRAMS), np.full(n, i)),
                    "subject_id": subject_ids(ctx, program, subject),
                    "response": take(vocab(values), codes(rng, weights, n)),
                    "responded_at": times(np.concatenate([reply_at, own_at])),
                },
            )
        )
    return pa.concat_tables(parts)


def outcomes(ctx: Context) -> Iterator[pa.Table]:
    """``outcomes_per_program`` past candidates per program, in chunks."""
    cust = ctx.dims["customers"]
    for i, program in enumerate(PROGRAMS):
        for part, _, n in ctx.chunks(ctx.sizes.outcomes_per_program):
            rng = ctx.rng(f"outcomes.{program}", part)
            c = cust.popularity.pick(rng, n)
            engagement, trust = cust.engagement[c], cust.trust[c]
            subject, features, effect = _program_features(ctx, program, rng, c)
            logit = -1.5 + 3.0 * (engagement - 0.45) + 1.5 * (trust - 0.75) + effect
            responded = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
            columns: dict[str, pa.Array | np.ndarray] = {
                name: features.get(name, pa.nulls(n, pa.float64())) for name in OPTIONAL_FEATURES
            }
            yield table(
                TABLES["outcomes"],
                {
                    "program": take(vocab(PROGRAMS), np.full(n, i)),
                    "customer_id": take(cust.ids, c),
                    "subject_id": subject_ids(ctx, program, subject),
                    "created_at": times(ctx.past_us(rng, n)),
                    "engagement_score": engagement,
                    "trust_score": trust,
                    **columns,
                    "responded": responded,
                },
            )


def _program_features(
    ctx: Context, program: str, rng: np.random.Generator, customer: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The subjects of a program's past candidates, the program's own features, and
    their effect on the log-odds of a response."""
    n = len(customer)
    if program == "reviews":
        products = ctx.dims["products"]
        subject = products.popularity.pick(rng, n)
        price = products.price[subject]
        return subject, {"price": price}, 0.5 * np.log(price / 30.0)
    if program == "video_ratings":
        subject = ctx.dims["videos"].popularity.pick(rng, n)
        finished = rng.random(n) < 0.5
        pct = np.round(np.where(finished, rng.uniform(0.85, 1, n), rng.beta(2, 2.5, n)), 3)
        return subject, {"watched_pct": pct}, 3.0 * (pct - 0.65)
    if program == "music_feedback":
        subject = ctx.dims["tracks"].popularity.pick(rng, n)
        pct = np.round(np.where(rng.random(n) < 0.55, 1.0, rng.beta(1.2, 2.0, n)), 3)
        return subject, {"played_pct": pct}, 2.0 * (pct - 0.6)
    if program == "service_surveys":
        subject = rng.integers(0, ctx.sizes.rows, n)
        mean = ctx.dims["customers"].satisfaction[customer]
        csat = np.clip(np.round(mean + rng.normal(0.0, 0.9, n)), 1.0, 5.0)
        # Unhappy customers answer surveys more often.
        return subject, {"satisfaction": csat}, -0.7 * (csat - 3.5)
    if program == "event_invites":
        subject = ctx.dims["events"].popularity.pick(rng, n)
        match = np.round(np.where(rng.random(n) < 0.6, rng.beta(5, 2, n), rng.beta(1.5, 5, n)), 3)
        return subject, {"interest_match": match}, 3.0 * (match - 0.5)
    raise ValueError(f"unknown program {program!r}")
