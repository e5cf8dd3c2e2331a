"""Funnel accounting: Beam counters per program and stage, read back into a summary.

Every input row ends as exactly one of: candidate, filtered (filter + reason), below
min_score, ranked out (reason), dead letter (stage). ``Funnel.check()`` proves it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from ceap import alerts
from ceap.logs import context

SEP = "|"
KEPT = " (kept)"
"""Suffix of a ``source_read`` counter counting the rows a split primary kept."""
log = logging.getLogger(__name__)

# Per arm (model id) of a program: its candidates in the store, and how many of them have a
# response (one per candidate key: a repeated POST replaces it). All time, not this run only.
ARM_RESPONSES_SQL = (
    "SELECT c.model_id, count(*) AS stored, count(r.customer_id) AS responses "
    "FROM candidates c LEFT JOIN (SELECT DISTINCT customer_id, subject_id FROM responses "
    "WHERE program = ?) r ON r.customer_id = c.customer_id AND r.subject_id = c.subject_id "
    "WHERE c.program = ? AND c.model_id IS NOT NULL GROUP BY c.model_id"
)


_TOTALS = {"read", "below_min_score", "candidates", "stored", "fallback", "shadow_read"}
"""Counters ``<stage>`` summed into the Funnel field of the same name."""
_KEYED = {
    "dead_letter": ("dead_letters", 1), "filtered": ("filtered", 2), "ranked_out": ("ranked_out", 1),
    "scored": ("scored", 1), "queued": ("queued", 2), "model_circuit_open": ("circuit_open", 1),
    "source_read": ("sources", 1),
}  # fmt: skip
"""Counters ``<stage>|<detail>...``: the Funnel dict they sum into, keyed by 1 or 2 details."""


def namespace(program: str) -> str:
    return f"ceap.{program}"


def counter(program: str, *name: str):
    """A Beam counter ``ceap.<program>/<stage>|<detail>|...``."""
    return Metrics.counter(namespace(program), SEP.join(name))


@dataclass
class Funnel:
    program: str
    read: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    filtered: dict[tuple[str, str], int] = field(default_factory=dict)
    below_min_score: int = 0
    ranked_out: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    scored: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    queued: dict[tuple[str, str], int] = field(default_factory=dict)
    fallback: int = 0
    shadow_read: int = 0
    circuit_open: dict[str, int] = field(default_factory=dict)
    """Models whose circuit breaker opened (how many workers opened it)."""
    arms: dict[str, dict[str, int]] = field(default_factory=dict)
    """Experiment arm (model id) -> {"rows": its rows scored >= min_score (by the model or,
    on fallback, from the cache), "score_sum": theirs, in millionths, "candidates"}. Not
    the arm's ``scored`` count: that one also holds the rows then dropped below min_score."""
    arm_responses: dict[str, dict[str, int]] = field(default_factory=dict)
    """Arm (model id) -> {"stored": its candidates in the store, "responses": of those, with a
    response so far}; read from the store after the run (``add_responses``), not a counter."""
    sources: dict[str, int] = field(default_factory=dict)
    """Rows read per source (its ``name``, else ``<index>:<type>``) before any traffic split,
    and ``<source> (kept)``: the rows a primary kept by its ``traffic:`` share (split only).
    A shadow source's rows are read, never kept."""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went, per step (pipelines/stage_times.py): sampled, summed over
    worker threads; empty when the runner does not report it."""

    @property
    def accounted(self) -> int:
        return (
            sum(self.dead_letters.values()) + sum(self.filtered.values()) + self.below_min_score
            + sum(self.ranked_out.values()) + self.candidates
        )  # fmt: skip

    def check(self) -> bool:
        return self.accounted == self.read

    def degraded(self) -> list[str]:
        """Why a run that finished did not do its job (empty when it did): a model whose
        circuit breaker opened, or scoring that failed for every row that reached it. The
        CLI exits with ``EXIT_DEGRADED`` and the run is recorded as ``degraded``."""
        reasons = [f"model {m}: circuit breaker opened" for m in sorted(self.circuit_open)]
        failed = self.dead_letters.get("score", 0)
        if failed and not sum(self.scored.values()) and not self.fallback:
            reasons.append(f"every row that reached scoring failed ({failed:,} dead letters)")
        return reasons

    def as_dict(self) -> dict:
        return {
            "program": self.program, "read": self.read, "dead_letters": self.dead_letters,
            "filtered": [{"filter": f, "reason": r, "rows": n} for (f, r), n in self.filtered.items()],
            "below_min_score": self.below_min_score, "ranked_out": self.ranked_out,
            "candidates": self.candidates, "scored": self.scored, "stored": self.stored,
            "queued": [{"channel": c, "status": s, "rows": n} for (c, s), n in self.queued.items()],
            "fallback": self.fallback, "shadow_read": self.shadow_read, "adds_up": self.check(),
            "circuit_open": self.circuit_open, "arms": self.arm_summary(),
            "sources": self.source_summary(), "degraded": self.degraded(),
        }  # fmt: skip

    def timing(self) -> dict:
        """How long the run took and where (kept apart from the counts, which a re-run or
        another runner reproduces exactly); the ``runs`` record holds both."""
        return {"seconds": round(self.seconds, 3), "stage_seconds": self.stage_seconds}

    def source_summary(self) -> dict[str, dict[str, int]]:
        """Per source: ``read`` (all its rows) and, for a primary split by ``traffic:``,
        ``kept`` (the rows of its share of customers): a split is checked from its output."""
        out: dict[str, dict[str, int]] = {}
        for name, n in sorted(self.sources.items()):
            base, kept = (name[: -len(KEPT)], True) if name.endswith(KEPT) else (name, False)
            out.setdefault(base, {"read": 0})["kept" if kept else "read"] = n
        return out

    def alert_degraded(self, run_id: str, mode: str = "batch") -> None:
        """A ``run_degraded`` alert (ceap/alerts.py: logged, posted where configured) when the
        run did not do its job; nothing otherwise. Once per run."""
        reasons = self.degraded()
        if reasons:
            alerts.alert(
                "run_degraded", self.program,
                f"program {self.program}: {mode} run {run_id} degraded: {'; '.join(reasons)}"[:500],
                subject=run_id,
                details={"run_id": run_id, "mode": mode, "reasons": reasons, "read": self.read,
                         "candidates": self.candidates, "circuit_open": self.circuit_open,
                         "dead_letters": self.dead_letters},
            )  # fmt: skip

    def arm_summary(self) -> dict[str, dict]:
        """Per experiment arm: ``rows`` scored >= min_score (all its scored rows when there
        is no minimum), their ``mean_score``, and how many became ``candidates`` (after
        ranking); with ``add_responses``, also the arm's candidates in the store (all runs),
        how many have a response, and that response rate."""
        out = {}
        for arm, c in sorted(self.arms.items()):
            rows = c.get("rows", 0)
            mean = c.get("score_sum", 0) / 1_000_000 / rows if rows else None
            out[arm] = {
                "rows": rows, "mean_score": None if mean is None else round(mean, 6),
                "candidates": c.get("candidates", 0),
            }  # fmt: skip
            if self.arm_responses:
                r = self.arm_responses.get(arm, {})
                stored, responses = r.get("stored", 0), r.get("responses", 0)
                out[arm].update(stored=stored, responses=responses,
                                response_rate=round(responses / stored, 6) if stored else None)  # fmt: skip
        return out

    def add_responses(self, store) -> None:
        """Reads the responses recorded so far to each arm's candidates of the program (see
        ``arm_responses``). A store that cannot answer leaves the summary without them: the
        run itself has succeeded by then."""
        try:
            self.arm_responses = arm_responses(store, self.program)
        except Exception as exc:  # noqa: BLE001 - a summary detail, logged, never fails a run
            log.warning("per-arm responses of %s not read: %s", self.program, exc,
                        extra=context(program=self.program, stage="summary"))  # fmt: skip

    @classmethod
    def from_result(cls, program: str, result, filter_order: list[str] | None = None) -> Funnel:
        """Reads the committed counters of a finished pipeline; filters listed in chain order."""
        query = result.metrics().query(MetricsFilter().with_namespace(namespace(program)))
        totals: dict[str, int] = defaultdict(int)
        for c in query["counters"]:
            value = c.committed if c.committed is not None else c.attempted
            totals[c.key.metric.name] += int(value or 0)
        return cls.from_counts(program, totals, filter_order)

    @classmethod
    def from_counts(
        cls, program: str, totals: dict[str, int], filter_order: list[str] | None = None
    ) -> Funnel:
        f = cls(program)
        for name, value in sorted(totals.items()):
            stage, *rest = name.split(SEP)
            if stage in _TOTALS:
                setattr(f, stage, getattr(f, stage) + value)
            elif stage in _KEYED:
                field_name, parts = _KEYED[stage]
                counts = getattr(f, field_name)
                key = SEP.join(rest) if parts == 1 else tuple(rest[:parts])
                counts[key] = counts.get(key, 0) + value
            elif stage == "arm":
                f.arms.setdefault(rest[0], {})[rest[1]] = value
        if filter_order:
            rank = {label: i for i, label in enumerate(filter_order)}
            f.filtered = dict(
                sorted(f.filtered.items(), key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0][1]))
            )
        return f

    def render(self) -> str:
        """The summary printed at the end of a run: outcomes first (they add up to the rows
        read), then what happened to the candidates (scored, stored, queued)."""
        outcomes: list[tuple[str, int]] = []
        outcomes += [
            (f"dead letter ({stage})", n) for stage, n in sorted(self.dead_letters.items())
        ]
        outcomes += [(f"filtered {flt}: {reason}", n) for (flt, reason), n in self.filtered.items()]
        outcomes.append(("below min_score", self.below_min_score))
        outcomes += [(f"ranked out ({reason})", n) for reason, n in sorted(self.ranked_out.items())]
        outcomes.append(("candidates", self.candidates))
        details = [(f"scored by {model}", n) for model, n in sorted(self.scored.items())]
        if self.fallback:
            details.append(("scored from cache (fallback)", self.fallback))
        details.append(("stored", self.stored))
        details += [
            (f"queued {channel} ({status})", n)
            for (channel, status), n in sorted(self.queued.items())
        ]
        if self.shadow_read:
            details.append(("shadow source rows read", self.shadow_read))
        for name, c in self.source_summary().items() if len(self.source_summary()) > 1 else ():
            details.append((f"source {name}: rows read", c["read"]))
            if "kept" in c:
                details.append((f"source {name}: kept by its traffic share", c["kept"]))
        details += [(f"CIRCUIT OPEN: model {m}", n) for m, n in sorted(self.circuit_open.items())]
        arms = self.arm_summary()
        if len(arms) > 1:
            for arm, a in arms.items():
                # Not "of N scored": "scored by" also counts the rows then below min_score.
                details.append(
                    (f"arm {arm}: candidates (of {a['rows']:,} scored >= min_score, "
                     f"mean {a['mean_score'] or 0:.4f})", a["candidates"])
                )  # fmt: skip
                if "responses" in a:
                    rate = f"{a['response_rate']:.1%}" if a["response_rate"] is not None else "-"
                    details.append(
                        (f"arm {arm}: responses so far (of {a['stored']:,} stored, {rate})",
                         a["responses"])
                    )  # fmt: skip
        width = max(len(label) for label, _ in [("rows read", 0), *outcomes, *details]) + 2
        lines = [f"funnel [{self.program}]", f"  {'rows read':<{width}}{self.read:>12,}"]
        lines += [f"    {label:<{width - 2}}{n:>12,}" for label, n in outcomes]
        verdict = "adds up" if self.check() else f"DOES NOT ADD UP ({self.accounted:,} accounted)"
        lines.append(f"  {'(' + verdict + ')':<{width}}")
        lines += [f"  {label:<{width}}{n:>12,}" for label, n in details]
        lines += [f"  DEGRADED: {reason}" for reason in self.degraded()]
        return "\n".join(lines)


def arm_responses(store, program: str) -> dict[str, dict[str, int]]:
    """Per arm (``model_id``) of ``program``: ``stored``, its candidates in the store (any run,
    any status), and ``responses``, how many of them have a response. Responses whose
    candidate is gone count nowhere. SQLite answers the SQL itself; other stores give their
    two tables as Arrow (a full read) to DuckDB."""
    from stores.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        rows = store.connection.execute(ARM_RESPONSES_SQL, (program, program)).fetchall()
    else:
        import duckdb
        import pyarrow as pa

        con = duckdb.connect()
        for name, columns in (("candidates", ("program", "customer_id", "subject_id", "model_id")),
                              ("responses", ("program", "customer_id", "subject_id"))):  # fmt: skip
            arrow = store.table(name)
            for column in columns:
                if column not in arrow.column_names:
                    arrow = arrow.append_column(column, pa.nulls(arrow.num_rows, pa.string()))
            con.register(name, arrow.select(list(columns)))
        rows = con.execute(ARM_RESPONSES_SQL, [program, program]).fetchall()
    return {str(m): {"stored": int(n), "responses": int(r)} for m, n, r in rows}
