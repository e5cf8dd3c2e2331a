"""The soak bench's printing: the per-minute lines, the restart, and the closing summary
with a PASS/FAIL per goal (see bench/soak.py for what each figure means)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.soak_ledger import Reckoning
from bench.streaming import percentile

GRACE = 30.0
P99_GOAL_MS = 50.0
RSS_GOAL = 0.10
WARM_UP_SECONDS = 120.0
"""RSS growth is measured from this long after a process (re)started ..."""
RSS_SPAN_SECONDS = 60.0
"""... to its last sample, when at least this much later."""
HEADER = (f"{'min':>5}{'sent':>8}{'cands':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'lag p99':>9}{'lag max':>9}{'RSS MB':>8}{'cpu%':>6}{'lost':>6}{'dup':>5}  note")  # fmt: skip


@dataclass
class Mark:
    """Figures taken at a minute's end (``at``: seconds into the run; None: the start)."""

    at: float | None
    pid: int
    rss: float
    cpu: float
    """CPU seconds of the streaming processes so far."""
    server_cpu: float
    """CPU seconds of the moto server so far (0 for the event log)."""


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.1f}"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


class Report:
    def __init__(self, args, events, duration: float) -> None:
        self.args, self.events, self.duration = args, events, duration
        self.per_minute = args.rate * 60
        self.total = round(args.rate * duration)
        self.t0 = 0.0
        self.marks: list[Mark] = []
        self.samples: list[tuple[float, int, float]] = []
        """(seconds into the run, pid, RSS MiB) every few seconds."""
        self.start: Mark | None = None
        self.restart = None
        self.printed = 0
        self.p99s: list[tuple[int, float]] = []
        self.source = ""

    def header(self, source: str, work) -> None:
        self.source = source
        kill = (f"SIGKILL + restart at {_clock(self.args.kill_at * self.duration)}"
                if 0 < self.args.kill_at < 1 else "no kill")  # fmt: skip
        print(f"soak: {source}, {self.args.minutes:g} min at {self.args.rate} ev/s, {kill}; "
              f"work dir {work}", flush=True)  # fmt: skip

    def warm_up_done(self, warm: int, mark: Mark) -> None:
        self.start = mark
        print(f"stream up after {warm} warm-up event(s); RSS {mark.rss:.0f} MB\n{HEADER}",
              flush=True)  # fmt: skip

    # -- per minute -----------------------------------------------------------------------
    def minutes(self, elapsed: float, warm: int, final: bool) -> None:
        """Prints each finished minute once all its events are accounted for, or GRACE
        seconds after its end (the rest count as lost so far), or at the end."""
        ev = self.events
        while self.printed < len(self.marks):
            m = self.printed
            first = warm + m * self.per_minute
            end = min(warm + min((m + 1) * self.per_minute, self.total), len(ev.sent_at))
            due = self.marks[m].at + GRACE
            if not (final or ev.first_open >= end or elapsed >= due):
                return
            self._line(m, first, end)
            self.printed += 1

    def _line(self, m: int, first: int, end: int) -> None:
        ev, mark = self.events, self.marks[m]
        prev = self.marks[m - 1] if m else self.start
        span = mark.at - (prev.at or 0.0)
        cand, lag = ev.latencies(first, end, restart=False)
        seen = sum(1 for i in range(first, end) if not math.isnan(ev.cand_at[i]))
        lost = sum(1 for i in range(ev.first_open, end) if math.isnan(ev.out_at[i]))
        p99 = percentile(cand, 0.99)
        if cand:
            self.p99s.append((m + 1, p99))
        notes = []
        apart = sum(ev.restart[first:end])
        if apart:
            notes.append(f"restart: {apart} events reported apart")
        if mark.server_cpu:
            notes.append(f"moto {100 * (mark.server_cpu - prev.server_cpu) / span:.0f}% cpu")
        print(f"{m + 1:>5}{end - first:>8}{seen:>8}{_ms(percentile(cand, 0.5)):>8}{_ms(p99):>8}"
              f"{_ms(cand[-1] if cand else math.nan):>8}{_ms(percentile(lag, 0.99)):>9}"
              f"{_ms(lag[-1] if lag else math.nan):>9}{mark.rss:>8.0f}"
              f"{100 * (mark.cpu - prev.cpu) / span:>6.0f}{lost:>6}{ev.duplicated:>5}  "
              f"{'; '.join(notes)}", flush=True)  # fmt: skip

    # -- the restart ----------------------------------------------------------------------
    def restart_line(self, r, events) -> None:
        print(f"  restart: SIGKILL at {_clock(r.kill_t - self.t0)}, first outcome of the new "
              f"process after {r.ready_t - r.kill_t:.1f} s, caught up after "
              f"{r.end_t - r.kill_t:.1f} s", flush=True)  # fmt: skip

    def _restart_figures(self) -> str:
        ev, r = self.events, self.restart
        cand, lag = ev.latencies(0, len(ev.sent_at), restart=True)
        caught = f"{r.end_t - r.kill_t:.1f} s" if r.end_t else "never"
        return (f"{sum(ev.restart)} events (in flight at the kill or sent until caught up, "
                f"{caught} after it): event->candidate p50 {_ms(percentile(cand, 0.5))} "
                f"p99 {_ms(percentile(cand, 0.99))} max {_ms(cand[-1] if cand else math.nan)} ms; "
                f"outcome lag max {_ms(lag[-1] if lag else math.nan)} ms")  # fmt: skip

    # -- the summary ----------------------------------------------------------------------
    def _rss_growth(self) -> tuple[list[str], float | None]:
        """Per process life: RSS from WARM_UP_SECONDS after its start to its last sample."""
        lives: dict[int, list[tuple[float, float]]] = {}
        for t, pid, rss in self.samples:
            lives.setdefault(pid, []).append((t, rss))
        texts, worst = [], None
        starts = [0.0, (self.restart.kill_t - self.t0) if self.restart else 0.0]
        for n, (pid, samples) in enumerate(lives.items()):
            begin = starts[min(n, 1)] + WARM_UP_SECONDS
            after = [(t, rss) for t, rss in samples if t >= begin]
            if not after or after[-1][0] - after[0][0] < RSS_SPAN_SECONDS:
                texts.append(f"process {n + 1} (pid {pid}): too short to tell")
                continue
            (t1, r1), (t2, r2) = after[0], after[-1]
            growth = r2 / r1 - 1
            worst = growth if worst is None else max(worst, growth)
            texts.append(f"process {n + 1}: {r1:.0f} -> {r2:.0f} MB ({growth:+.1%}) "
                         f"from {_clock(t1)} to {_clock(t2)}")  # fmt: skip
        return texts, worst

    def summary(self, ledger: Reckoning, code, runs: int, drained: bool, funnel: list[str]) -> int:
        print(f"\nsummary ({self.source}, {self.args.minutes:g} min at {self.args.rate} ev/s)")
        print(f"  sent {ledger.sent:,} events (warm-up included); outcomes: "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(ledger.outcomes.items())))  # fmt: skip
        if funnel:
            print("  the last process's own funnel (run.py's output on SIGINT):")
        for line in funnel:
            print(f"  | {line}")
        if len(self.marks) >= 3:
            a, b = self.marks[1].rss, self.marks[-1].rss
            over = " (across the restart)" if self.restart else ""
            print(f"  RSS minute 2 -> last: {a:.0f} -> {b:.0f} MB ({b / a - 1:+.1%}){over}")
        lives, worst_rss = self._rss_growth()
        for text in lives:
            print(f"  RSS after warm-up, {text}")
        worst = max(self.p99s, key=lambda x: x[1], default=(0, math.nan))
        print(f"  worst p99 of a minute: {_ms(worst[1])} ms (minute {worst[0]})")
        if self.restart:
            print(f"  restart window, apart: {self._restart_figures()}")
        print(f"  lost {ledger.lost_count}, duplicated {ledger.duplicated_count}"
              + (f" {dict(ledger.duplicated)}" if ledger.duplicated else ""))  # fmt: skip
        if ledger.lost:
            print(f"  first lost events: {ledger.lost[:10]}")
        return self._goals(ledger, code, runs, drained, worst_rss, worst[1])

    def _goals(self, ledger, code, runs, drained, worst_rss, worst_p99) -> int:
        def verdict(ok: bool | None) -> str:
            return "n/a " if ok is None else ("PASS" if ok else "FAIL")

        rss_ok = None if worst_rss is None else worst_rss <= RSS_GOAL
        p99_ok = None if math.isnan(worst_p99) else worst_p99 < P99_GOAL_MS
        checks = [
            (ledger.lost_count == 0, f"0 lost ({ledger.lost_count})"),
            (ledger.duplicated_count == 0, f"0 duplicated ({ledger.duplicated_count})"),
            (ledger.mismatches == 0,
             f"candidates = the events passing the filter, one outbox row each, no dead letters "
             f"(wrong outcome {ledger.wrong_outcome}, missing {ledger.missing_candidates}, "
             f"unexpected {ledger.unexpected_candidates}, outbox off {ledger.outbox_mismatch}, "
             f"dead letters {ledger.dead_letters})"),
            (code == 0 and runs >= 1 and drained,
             f"clean stop on SIGINT (exit {code}, runs rows {runs}, drained {drained})"),
        ]  # fmt: skip
        print("  goals (correctness: sets the exit status):")
        for ok, text in checks:
            print(f"    {verdict(ok)}  {text}")
        print("  goals (resources and timing: reported only):")
        growth = "-" if worst_rss is None else f"{worst_rss:+.1%}"
        print(f"    {verdict(rss_ok)}  RSS flat after warm-up, <= {RSS_GOAL:.0%} growth ({growth})")
        print(f"    {verdict(p99_ok)}  p99 event->candidate < {P99_GOAL_MS:.0f} ms every minute, "
              f"restart window apart (worst {_ms(worst_p99)} ms)", flush=True)  # fmt: skip
        return 0 if all(ok for ok, _ in checks) else 1
