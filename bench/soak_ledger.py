"""The soak bench's view of the store: new candidate and outcome rows as they appear
(incremental by rowid), and the final reckoning of what was sent against the ledger.

Why these checks catch loss and duplication even though the tables cannot hold a second
row for one key (``event_outcomes`` is keyed by position, ``candidates`` and ``outbox`` by
customer and subject): each event has its own (customer, subject) key, so an event read
twice under a *different* position shows as a second outcome for its key, or as a
``duplicate`` outcome, or as an outcome at a position that was never sent. Re-reading at
the *same* position (a replay after a crash) is the designed, harmless case: it changes
nothing, which is what exactly-once means here.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak_feeds import PROGRAM, index_of, passes


class Poller:
    """New rows of ``candidates`` and ``event_outcomes`` since the last call (rowid > last):
    two index range scans, cheap enough to run every couple of milliseconds."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self._con: sqlite3.Connection | None = None
        self.last_candidate = 0
        self.last_outcome = 0

    def poll(self) -> tuple[list[str], list[tuple[int, str, str]]]:
        """(candidate subject ids, [(position, outcome, subject id)]) that appeared."""
        if self._con is None:
            if not self._db.exists():
                return [], []
            self._con = sqlite3.connect(f"file:{self._db}?mode=ro", uri=True, timeout=5)
        try:
            cands = self._con.execute(
                "SELECT rowid, subject_id FROM candidates WHERE rowid > ? ORDER BY rowid",
                (self.last_candidate,),
            ).fetchall()
            outs = self._con.execute(
                "SELECT rowid, position, outcome, subject_id FROM event_outcomes "
                "WHERE rowid > ? ORDER BY rowid",
                (self.last_outcome,),
            ).fetchall()
        except sqlite3.OperationalError:  # the stream has not created its tables yet
            return [], []
        if cands:
            self.last_candidate = cands[-1][0]
        if outs:
            self.last_outcome = outs[-1][0]
        return [s for _, s in cands], [(p, o, s) for _, p, o, s in outs]

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


@dataclass
class Reckoning:
    """Sent events against the ledger, candidates and outbox after the stop."""

    sent: int = 0
    lost: list[int] = field(default_factory=list)
    """Indexes of events with no outcome."""
    duplicated: Counter = field(default_factory=Counter)
    """Kind of duplication -> count (see the module docstring)."""
    outcomes: Counter = field(default_factory=Counter)
    wrong_outcome: int = 0
    """Events whose outcome is neither candidate (passing) nor filtered (not passing)."""
    missing_candidates: int = 0
    unexpected_candidates: int = 0
    outbox_mismatch: int = 0
    dead_letters: int = 0

    @property
    def lost_count(self) -> int:
        return len(self.lost)

    @property
    def duplicated_count(self) -> int:
        return sum(self.duplicated.values())

    @property
    def mismatches(self) -> int:
        return (self.wrong_outcome + self.missing_candidates + self.unexpected_candidates
                + self.outbox_mismatch + self.dead_letters)  # fmt: skip


def reckon(db: Path, positions: list[int]) -> Reckoning:
    """Event ``i`` was sent at ledger position ``positions[i]``; its key is subject(i)."""
    r = Reckoning(sent=len(positions))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        outcomes = con.execute(
            "SELECT position, outcome, subject_id FROM event_outcomes WHERE program = ?",
            (PROGRAM,),
        ).fetchall()
        candidates = con.execute(
            "SELECT subject_id, count(*) FROM candidates WHERE program = ? GROUP BY subject_id",
            (PROGRAM,),
        ).fetchall()
        outbox = con.execute(
            "SELECT subject_id, channel, count(*) FROM outbox WHERE program = ? "
            "GROUP BY subject_id, channel",
            (PROGRAM,),
        ).fetchall()
        r.dead_letters = con.execute(
            "SELECT count(*) FROM dead_letters WHERE program = ?", (PROGRAM,)
        ).fetchone()[0]
    at = {p: i for i, p in enumerate(positions)}
    per_event: Counter = Counter()
    outcome_of: dict[int, str] = {}
    for position, outcome, subject_id in outcomes:
        r.outcomes[outcome] += 1
        i = index_of(subject_id)
        if position not in at or i is None or at[position] != i:
            r.duplicated["outcome at a position never sent"] += 1
        if outcome == "duplicate":
            r.duplicated["'duplicate' outcome (event seen twice)"] += 1
        if i is not None:
            per_event[i] += 1
            outcome_of[i] = outcome
    r.duplicated["event with 2+ outcomes"] = sum(n - 1 for n in per_event.values() if n > 1)
    accounted = {position for position, _, _ in outcomes}
    r.lost = [i for i, p in enumerate(positions) if p not in accounted]
    for i, outcome in outcome_of.items():
        if i < len(positions) and outcome != ("candidate" if passes(i) else "filtered"):
            r.wrong_outcome += 1
    expected = {i for i in range(len(positions)) if passes(i)}
    got = {index_of(s) for s, _ in candidates}
    r.duplicated["candidate row twice"] = sum(n - 1 for _, n in candidates if n > 1)
    r.duplicated["outbox row twice"] = sum(n - 1 for _, _, n in outbox if n > 1)
    r.missing_candidates = len(expected - got)
    r.unexpected_candidates = len(got - expected)
    r.outbox_mismatch = len({index_of(s) for s, _, _ in outbox} ^ got)
    r.duplicated = +r.duplicated  # drop the zero counts
    return r


def runs_recorded(db: Path) -> int:
    """Finished streaming runs of the program (one per clean stop; a SIGKILL leaves none)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute(
            "SELECT count(*) FROM runs WHERE program = ? AND mode = 'streaming' "
            "AND finished_at IS NOT NULL",
            (PROGRAM,),
        ).fetchone()[0]
