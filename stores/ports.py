"""The roles a store plays, each a small set of methods, and which commands need which.

``CandidateStore`` (stores/base.py) is the union of every role; a backend declares the
roles it implements in ``roles`` and the contract suite (tests/stores/test_contract.py)
holds it to them. A command calls ``require_roles`` when it opens its store, so a backend
that lacks a role fails at start with a sentence naming it, not with NotImplementedError in
the middle of a run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ceap.errors import StoreError


class Role(StrEnum):
    CANDIDATES = "candidate writes"
    LOOKUPS = "filter lookups"
    REGISTRIES = "registries"
    SERVING = "serving reads"
    OUTBOX = "outbox queue"
    LEDGER = "streaming ledger"
    ANALYTICS = "analytics reads"
    FEEDBACK = "delivery feedback"


METHODS: dict[Role, tuple[str, ...]] = {
    Role.CANDIDATES: ("upsert_candidates", "write_dead_letters", "record_run", "cached_scores"),
    Role.LOOKUPS: ("live_keys", "acted_keys", "contacts", "opt_outs"),
    Role.REGISTRIES: ("add_opt_out", "remove_opt_outs", "record_response"),
    Role.SERVING: ("customer_candidates", "expire_candidate", "is_opted_out", "has_response"),
    Role.OUTBOX: (
        "enqueue_outbox",
        "lease_outbox",
        "mark_outbox",
        "release_outbox",
        "outbox_leases",
        "outbox_status",
        "settle_waiting",
    ),  # fmt: skip
    Role.LEDGER: (
        "record_outcomes",
        "record_stream_batch",
        "resume_position",
        "seen_events",
        "unaccounted_events",
    ),  # fmt: skip
    Role.ANALYTICS: ("table",),
    Role.FEEDBACK: (
        "find_message",
        "record_engagement",
        "suppress_addresses",
        "suppressed_addresses",
    ),  # fmt: skip
}
"""What each role is: the store methods it consists of."""

NEEDS: dict[str, frozenset[Role]] = {
    "batch run": frozenset({Role.CANDIDATES, Role.LOOKUPS, Role.OUTBOX, Role.ANALYTICS}),
    "streaming run": frozenset(
        {Role.CANDIDATES, Role.LOOKUPS, Role.OUTBOX, Role.ANALYTICS, Role.LEDGER}
    ),
    "serve": frozenset({Role.SERVING, Role.REGISTRIES, Role.FEEDBACK}),
    "dispatch": frozenset({Role.OUTBOX, Role.FEEDBACK}),  # it checks the suppression list
    "export": frozenset({Role.ANALYTICS}),
    "report": frozenset({Role.ANALYTICS}),
}
"""The roles each command uses."""


def require_roles(store: Any, command: str, spec: str | None = None) -> None:
    """Raises StoreError naming what ``store`` lacks for ``command`` (a key of ``NEEDS``)."""
    missing = sorted(NEEDS[command] - frozenset(getattr(store, "roles", ())), key=list(Role).index)
    if missing:
        what = "; ".join(f"the {r.value} ({', '.join(METHODS[r])})" for r in missing)
        name = spec or type(store).__name__
        raise StoreError(f"store {name} cannot be used for a {command}: it lacks {what}")
