"""Soak: a streaming run fed at a fixed rate for a given time, killed with SIGKILL and
restarted in the middle, then stopped with Ctrl-C (SIGINT) and reckoned against the ledger.

    python bench/soak.py [--source event_log|kinesis] [--minutes 30] [--rate 200]
                         [--kill-at 0.5] [--shards 2] [--keep]

``run.py --mode streaming`` runs as a subprocess on a temporary CEAP_HOME with its own
program (bench/soak_feeds.py: no warehouse, a filter that keeps 8 events in 10). Events go
to the embedded event log, or to Kinesis on a moto server this bench starts. Every event
has its own (customer, subject) key and the time of its sending as event time.

Per minute (by the time each event was sent) it prints: events sent; candidates seen;
event -> candidate latency p50/p99/max (from the moment the event was durably in the
source to the moment its candidate row was visible in the store, which is polled every
2 ms by rowid); outcome lag p99/max (send -> its ``event_outcomes`` row, filtered events
included); the streaming process's RSS at the minute's end and its CPU over the minute;
events still unaccounted 30 s after their minute ("lost" so far) and duplicates seen.

The restart: at ``--kill-at`` of the duration the process gets SIGKILL and the same
command starts again at once; feeding never pauses. The events the crash left without an
outcome, and those sent until the new process has caught up (every event sent before its
first outcome is accounted for), are the restart window: their latency is printed on a
line of its own and kept out of the per-minute figures (that minute is labelled).

At the end the ledger decides (bench/soak_ledger.py): lost = an event with no outcome;
duplicated = an outcome at a position never sent, a second outcome or candidate or outbox
row for one event, or a ``duplicate`` outcome; candidates must be exactly the events that
pass the filter, with one outbox row each; the stop must exit 0 and record a ``runs`` row.
The exit status is non-zero when one of these correctness goals fails; the resource and
timing goals (RSS within 10 % after warm-up, p99 < 50 ms every minute) are only printed.
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.soak_feeds import (  # noqa: E402
    PROGRAM,
    EventLogFeed,
    KinesisFeed,
    cpu_seconds,
    index_of,
    make_events,
    rss_mb,
    write_program,
)
from bench.soak_ledger import Poller, reckon, runs_recorded  # noqa: E402
from bench.soak_report import Mark, Report  # noqa: E402
from bench.streaming import start_stream  # noqa: E402

TICK = 0.002
DRAIN_SECONDS = 120.0
START_SECONDS = 180.0
RSS_EVERY = 5.0
NAN = float("nan")


class Stream:
    """The ``run.py --mode streaming`` process: start, SIGKILL, restart, SIGINT; its
    output goes to files in the work directory (a pipe would fill up in 30 minutes)."""

    def __init__(self, work: Path, configs: Path, home: Path, env: dict[str, str]) -> None:
        self.work, self.configs, self.home, self.env = work, configs, home, env
        self.proc = None
        self.starts = 0
        self.cpu_done = 0.0
        """CPU seconds of the processes already killed."""

    def start(self) -> None:
        self.starts += 1
        name = self.work / f"stream-{self.starts}"
        with open(f"{name}.out", "w") as out, open(f"{name}.err", "w") as err:
            self.proc = start_stream(PROGRAM, self.configs, self.home, out, err, self.env)

    def kill(self) -> None:
        self.cpu_done += cpu_seconds(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGINT (Ctrl-C: drain and stop); the exit code, None when it did not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 - a stop that hangs is reported, then killed
            self.proc.kill()
            self.proc.wait()
            return None

    def output(self, kind: str = "err") -> str:
        return (self.work / f"stream-{self.starts}.{kind}").read_text()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return self.cpu_done + (cpu_seconds(self.proc.pid) if self.alive() else 0.0)

    def rss(self) -> float:
        return rss_mb(self.proc.pid) if self.alive() else 0.0


@dataclass
class Restart:
    """The kill -9 and what followed (perf_counter times)."""

    kill_t: float
    ready_t: float | None = None
    """The restarted process's first outcome."""
    ready_n: int = 0
    """Events sent before ``ready_t``: the window ends once all of them are accounted."""
    end_t: float | None = None


@dataclass
class Events:
    """Per event index: when it was sent, its ledger position, when its candidate and its
    outcome became visible, and whether it falls in the restart window."""

    sent_at: list[float] = field(default_factory=list)
    position: list[int] = field(default_factory=list)
    cand_at: list[float] = field(default_factory=list)
    out_at: list[float] = field(default_factory=list)
    restart: list[bool] = field(default_factory=list)
    first_open: int = 0
    """The first event without an outcome (all before it are accounted)."""
    duplicated: int = 0

    def add(self, stamp: float, positions: list[int], in_restart: bool) -> None:
        n = len(positions)
        self.sent_at += [stamp] * n
        self.position += positions
        self.cand_at += [NAN] * n
        self.out_at += [NAN] * n
        self.restart += [in_restart] * n

    def record(self, now: float, cands: list[str], outs: list[tuple[int, str, str]]) -> None:
        for s in cands:
            i = index_of(s)
            if i is None or i >= len(self.sent_at) or not math.isnan(self.cand_at[i]):
                self.duplicated += 1
            else:
                self.cand_at[i] = now
        for position, outcome, s in outs:
            i = index_of(s)
            fresh = i is not None and i < len(self.sent_at) and math.isnan(self.out_at[i])
            if not fresh or outcome == "duplicate" or self.position[i] != position:
                self.duplicated += 1
            if fresh:
                self.out_at[i] = now
        while self.first_open < len(self.out_at) and not math.isnan(self.out_at[self.first_open]):
            self.first_open += 1

    def flag_open(self) -> None:
        """Marks every event still without an outcome as part of the restart window."""
        for i in range(self.first_open, len(self.out_at)):
            if math.isnan(self.out_at[i]):
                self.restart[i] = True

    def latencies(self, first: int, end: int, restart: bool) -> tuple[list[float], list[float]]:
        """(event -> candidate ms, send -> outcome ms), ascending, for events in [first,
        end) in (``restart`` True) or out of the restart window."""
        cand, lag = [], []
        for i in range(first, end):
            if self.restart[i] != restart:
                continue
            if not math.isnan(self.out_at[i]):
                lag.append((self.out_at[i] - self.sent_at[i]) * 1000)
            if not math.isnan(self.cand_at[i]):
                cand.append((self.cand_at[i] - self.sent_at[i]) * 1000)
        return sorted(cand), sorted(lag)


class Soak:
    def __init__(self, args: argparse.Namespace, feed, stream: Stream, poller: Poller) -> None:
        self.args, self.feed, self.stream, self.poller = args, feed, stream, poller
        self.duration = args.minutes * 60
        self.per_minute = args.rate * 60
        self.total = round(args.rate * self.duration)
        self.events = Events()
        self.report = Report(args, self.events, self.duration)
        self.restart: Restart | None = None
        self.warm = 0
        self.t0 = 0.0
        self.next_sample = 0.0

    # -- phases ---------------------------------------------------------------------------
    def warm_up(self) -> None:
        """One event every half second until the stream has accounted for one."""
        deadline = time.perf_counter() + START_SECONDS
        while self.events.first_open == 0:
            if not self.stream.alive():
                raise SystemExit(f"the streaming process ended:\n{self.stream.output()[-3000:]}")
            if time.perf_counter() > deadline:
                raise SystemExit("the streaming process did not account for an event in time")
            self._send(len(self.events.sent_at), 1)
            until = time.perf_counter() + 0.5
            while time.perf_counter() < until and self.events.first_open == 0:
                self._poll()
                time.sleep(0.01)
        self._poll()
        self.warm = len(self.events.sent_at)
        self.report.warm_up_done(self.warm, self._mark(None))

    def run(self) -> None:
        self.t0 = time.perf_counter()
        self.report.t0 = self.t0
        kill_at = self.args.kill_at * self.duration if 0 < self.args.kill_at < 1 else math.inf
        drained_by = None
        while True:
            now = time.perf_counter()
            elapsed = now - self.t0
            self._feed(elapsed)
            self._poll()
            self._marks(elapsed)  # before a kill due at the same instant: the old process's
            if elapsed >= kill_at and self.restart is None:
                self._kill_and_restart()
            self._check_alive()
            self.report.minutes(elapsed, self.warm, final=False)
            if len(self.events.sent_at) - self.warm >= self.total:
                drained_by = drained_by or now + DRAIN_SECONDS
                if self.events.first_open >= len(self.events.sent_at) or now > drained_by:
                    break
            time.sleep(TICK)
        self._marks(math.inf)
        self.report.minutes(math.inf, self.warm, final=True)

    def finish(self) -> int:
        code = self.stream.stop()
        err = self.stream.output()
        if code != 0:
            print(f"the stop exited {code}:\n{err[-3000:]}")
        db = self.stream.home / "ceap.db"
        runs = runs_recorded(db)
        ledger = reckon(db, self.events.position)
        funnel = [line for line in self.stream.output("out").splitlines() if line.strip()]
        return self.report.summary(ledger, code, runs, "draining" in err, funnel)

    # -- steps of the loop ----------------------------------------------------------------
    def _feed(self, elapsed: float) -> None:
        due = min(self.total, int(elapsed * self.args.rate) + 1)
        sent = len(self.events.sent_at) - self.warm
        if sent < due:
            self._send(self.warm + sent, due - sent)

    def _send(self, first: int, count: int) -> None:
        positions = self.feed.send(make_events(first, count))
        in_window = self.restart is not None and self.restart.end_t is None
        self.events.add(time.perf_counter(), positions, in_window)

    def _poll(self) -> None:
        cands, outs = self.poller.poll()
        now = time.perf_counter()
        self.events.record(now, cands, outs)
        r = self.restart
        if r is None or r.end_t is not None:
            return
        if r.ready_t is None and outs:
            r.ready_t, r.ready_n = now, len(self.events.sent_at)
        if r.ready_t is not None and self.events.first_open >= r.ready_n:
            r.end_t = now
            self.report.restart_line(r, self.events)

    def _kill_and_restart(self) -> None:
        self.stream.kill()
        self._poll()  # rows the killed process committed before it died
        self.restart = Restart(kill_t=time.perf_counter())
        self.report.restart = self.restart
        self.events.flag_open()
        self.stream.start()

    def _check_alive(self) -> None:
        if not self.stream.alive():
            raise SystemExit(f"the streaming process ended:\n{self.stream.output()[-3000:]}")

    def _marks(self, elapsed: float) -> None:
        """RSS every few seconds (for the growth per process), and figures at minute ends."""
        now = time.perf_counter()
        if now >= self.next_sample and elapsed != math.inf:
            self.next_sample = now + RSS_EVERY
            self.report.samples.append((now - self.t0, self.stream.proc.pid, self.stream.rss()))
        minutes = math.ceil(self.duration / 60)
        while len(self.report.marks) < minutes:
            m = len(self.report.marks)
            end = min((m + 1) * 60, self.duration)
            if elapsed < end:
                break
            self.report.marks.append(self._mark(end))

    def _mark(self, end: float | None) -> Mark:
        return Mark(at=end, pid=self.stream.proc.pid, rss=self.stream.rss(),
                    cpu=self.stream.cpu(), server_cpu=cpu_seconds(self.feed.server_pid))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", choices=["event_log", "kinesis"], default="event_log")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=200, help="events per second")
    parser.add_argument("--kill-at", type=float, default=0.5,
                        help="fraction of the run at which to SIGKILL and restart (0: never)")  # fmt: skip
    parser.add_argument("--shards", type=int, default=2, help="Kinesis shards")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ceap-soak-"))
    feed = KinesisFeed(work, args.shards) if args.source == "kinesis" else EventLogFeed(work)
    home, configs = work / "home", work / "configs"
    write_program(configs, feed.events_block())
    stream = Stream(work, configs, home, feed.env())
    poller = Poller(home / "ceap.db")
    code = 2
    try:
        stream.start()
        soak = Soak(args, feed, stream, poller)
        soak.report.header(feed.name, work)
        soak.warm_up()
        soak.run()
        code = soak.finish()
    finally:
        if stream.alive():
            stream.stop(timeout=30)
        poller.close()
        feed.close()
        if code == 0 and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")
    return code


if __name__ == "__main__":
    sys.exit(main())
