"""The roles a store plays, each a small set of methods, and which commands need which.

Each role is a typed Protocol (stores/roles.py) whose methods are the role's;
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
from stores import roles


class Role(StrEnum):
    CANDIDATES = "candidate writes"
    LOOKUPS = "filter lookups"
    REGISTRIES = "registries"
    SERVING = "serving reads"
    OUTBOX = "outbox queue"
    LEDGER = "streaming ledger"
    ANALYTICS = "analytics reads"
    FEEDBACK = "delivery feedback"


PROTOCOLS: dict[Role, type] = {
    Role.CANDIDATES: roles.CandidateWrites,
    Role.LOOKUPS: roles.FilterLookups,
    Role.REGISTRIES: roles.Registries,
    Role.SERVING: roles.ServingReads,
    Role.OUTBOX: roles.OutboxQueue,
    Role.LEDGER: roles.StreamingLedger,
    Role.ANALYTICS: roles.AnalyticsReads,
    Role.FEEDBACK: roles.DeliveryFeedback,
}
"""Each role's typed Protocol (stores/roles.py)."""
METHODS: dict[Role, tuple[str, ...]] = {role: roles.methods(p) for role, p in PROTOCOLS.items()}
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
