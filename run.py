"""The one CLI of CEAP (docs/architecture.md, "CLI").

    python run.py --program reviews --mode batch [--config-dir configs] [beam options...]
    python run.py --program all --mode batch
    python run.py generate --rows 20000 [--output data/warehouse]

Any flag CEAP does not know is passed to Beam as a pipeline option.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import logging
import os
import sys
import threading
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn

from ceap.errors import EXIT_DEGRADED, EXIT_FAILED, EXIT_OK, EXIT_USAGE

SAMPLE_ROOT = Path("data/warehouse")
SAMPLE_ROWS = 20_000
# Every subcommand with its one line for `run.py --help`; the batch/streaming run is the
# default (no subcommand, `--program P --mode batch|streaming`).
SUBCOMMANDS = {
    "serve": "the Serving API (FastAPI): live candidates, responses, opt-outs",
    "dispatch": "drains the channel outbox through the channel adapters",
    "export": "writes candidates, outbox and responses as Hive-partitioned Parquet",
    "report": "an HTML report of a program: funnel, arms, channels, responses",
    "train": "fits and versions a program's model in the model registry",
    "emit": "appends events to a program's embedded event log (streaming input)",
    "generate": "(re)generates the seeded sample warehouse",
}
STREAMING_EXAMPLE = (
    'python run.py emit --program video_ratings --event \'{"customer_id": "C00000001", ...}\''
)


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore")
    if os.environ.get("CEAP_LOG_FORMAT", "text") == "json":
        from ceap.logs import use_json

        use_json()


def _parse_now(text: str | None, flag: str = "--now") -> datetime:
    from ceap.context import RunContext, parse_now

    return parse_now(text, flag) or RunContext.utcnow()


def _reason(exc: BaseException) -> str:
    """What the user reads after "failed:": the root cause's message, or its type when it
    has none (``NotImplementedError()`` printed an empty reason)."""
    from ceap.errors import root_cause

    cause = root_cause(exc)
    return str(cause) or type(cause).__name__


def _uses_sample(program) -> bool:
    paths = [getattr(c.options, "path", "") or "" for c in [*program.source, *program.enrich]]
    return any(str(p).startswith(str(SAMPLE_ROOT)) for p in paths)


def _ensure_sample(programs: list) -> None:
    """A fresh clone has no warehouse: generate the seeded sample the seed configs read."""
    if SAMPLE_ROOT.exists() or not any(_uses_sample(p) for p in programs):
        return
    from sample import generate_warehouse

    print(f"ceap: no sample warehouse yet; generating {SAMPLE_ROWS:,} rows per table at {SAMPLE_ROOT}/ "
          "(python run.py generate --rows N to resize)", file=sys.stderr)  # fmt: skip
    generate_warehouse(SAMPLE_ROOT, rows=SAMPLE_ROWS)


def _load_programs(args: argparse.Namespace, config_dir: Path) -> tuple[list, list[str]] | None:
    """The programs to run (``--program NAME`` or ``all``) and the names of those that cannot
    load, each reported: a config that breaks the loader fails only its own program. None
    when ``all`` finds no config at all."""
    from ceap.errors import CeapError
    from configs.programs import load_by_name
    from configs.schema import load_program, program_paths

    if args.program == "all":
        paths = program_paths(config_dir)
        if not paths:
            print(f"ceap: no program configs in {config_dir}", file=sys.stderr)
            return None
        loaders = [(p.stem, lambda p=p: load_program(p)) for p in paths]
    else:
        loaders = [(args.program, lambda: load_by_name(args.program, config_dir))]
    programs, failures = [], []
    for name, load in loaders:
        try:
            program = load()
        except Exception as exc:  # noqa: BLE001 - isolation (RecursionError, MemoryError ...)
            failures.append(name)
            said = str(exc) if isinstance(exc, CeapError) else f"{type(exc).__name__}: {exc}"
            print(f"ceap: program {name} cannot run: {said}", file=sys.stderr)
            continue
        if any(p.program == program.program for p in programs):
            print(f"ceap: program {program.program!r} is declared twice; skipped", file=sys.stderr)
            failures.append(program.program)
            continue
        programs.append(program)
    return programs, failures


def driver_store(spec: str) -> str:
    """The store as workers must find it: a SQLite file named absolutely, resolved here on
    the driver (a worker elsewhere has its own working directory and CEAP_HOME)."""
    from stores.spec import StoreSpec

    return str(StoreSpec.parse(spec).absolute())


def run_batch(args: argparse.Namespace, beam_args: list[str], now: datetime) -> int:
    from ceap.context import RunContext
    from ceap.progress import Progress
    from configs.programs import default_config_dir
    from pipelines.batch import run_program

    config_dir = Path(args.config_dir or default_config_dir())
    loaded = _load_programs(args, config_dir)
    if loaded is None:
        return EXIT_FAILED
    programs, failures = loaded
    try:
        _ensure_sample(programs)
    except Exception as exc:  # noqa: BLE001 - reported, then each program fails on its own
        print(f"ceap: could not generate the sample warehouse: {exc}", file=sys.stderr)
    degraded: list[str] = []
    for program in programs:
        ctx = RunContext(
            program=program.program, now=now, store=args.store, config_dir=str(config_dir.resolve()),
            deliver_delay=program.events.delay if program.events else timedelta(0),
        )  # fmt: skip
        try:
            with Progress(program.program):
                funnel = run_program(program, ctx, beam_args)
        except Exception as exc:  # noqa: BLE001 - isolation: one program fails alone
            failures.append(program.program)
            print(f"ceap: program {program.program} failed: {_reason(exc)}", file=sys.stderr)
            continue
        print(funnel.render())
        print(
            f"  took {funnel.seconds:.1f}s ({funnel.read / max(funnel.seconds, 1e-9):,.0f} rows/s)"
        )
        if funnel.degraded():
            degraded.append(program.program)
    if degraded:
        print(f"ceap: {len(degraded)} program(s) ran degraded (see DEGRADED above): "
              f"{', '.join(degraded)}", file=sys.stderr)  # fmt: skip
    if failures:
        print(f"ceap: {len(failures)} program(s) failed: {', '.join(failures)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_DEGRADED if degraded else EXIT_OK


def run_streaming_mode(args: argparse.Namespace, beam_args: list[str], now: datetime) -> int:
    from apache_beam.options.pipeline_options import PipelineOptions, TestOptions

    from ceap import stopping
    from ceap.context import RunContext
    from ceap.errors import CeapError
    from ceap.mode import STREAMING
    from configs.programs import default_config_dir, load_by_name
    from pipelines.streaming import run_streaming

    if args.program == "all":
        print("ceap: streaming runs one program per process (--program NAME)", file=sys.stderr)
        return EXIT_USAGE
    config_dir = Path(args.config_dir or default_config_dir())
    try:
        program = load_by_name(args.program, config_dir)
    except CeapError as exc:
        print(f"ceap: program {args.program} cannot run: {exc}", file=sys.stderr)
        return EXIT_FAILED
    ctx = RunContext(
        program=program.program, now=now, store=args.store,
        config_dir=str(config_dir.resolve()),
        deliver_delay=program.events.delay if program.events else timedelta(0), mode=STREAMING,
        live_clock=args.now is None,  # each micro-batch at its own time; --now pins one
    )  # fmt: skip
    stopping.install()
    source = program.events.type if program.events else "?"
    if PipelineOptions(beam_args).view_as(TestOptions).dry_run:
        print(f"ceap: dry run: building the streaming job of {program.program} from {source}",
              file=sys.stderr, flush=True)  # fmt: skip
    else:
        print(f"ceap: streaming {program.program} from {source}; Ctrl-C drains and stops",
              file=sys.stderr, flush=True)  # fmt: skip
    try:
        funnel = run_streaming(program, ctx, beam_args)
    except Exception as exc:  # noqa: BLE001 - reported with its root cause
        print(f"ceap: program {program.program} failed: {_reason(exc)}", file=sys.stderr)
        return EXIT_FAILED
    print(funnel.render())
    return EXIT_DEGRADED if funnel.degraded() else EXIT_OK


def run_emit(argv: list[str]) -> int:
    """Appends events to a program's embedded event log (demos, tests, local producers)."""
    import json

    from ceap.errors import CeapError
    from ceap.plugins import connectors
    from configs.programs import default_config_dir, load_by_name

    parser = argparse.ArgumentParser(prog="run.py emit", description=run_emit.__doc__)
    parser.add_argument("--program", required=True)
    parser.add_argument("--event", help="one JSON object")
    parser.add_argument("--file", help="a file of JSON lines (or one JSON array); '-' for stdin")
    parser.add_argument("--config-dir", "--config_dir", dest="config_dir", default=None)
    args = parser.parse_args(argv)
    try:
        program = load_by_name(args.program, Path(args.config_dir or default_config_dir()))
    except CeapError as exc:
        print(f"ceap: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if program.events is None or program.events.type != "event_log":
        kind = program.events.type if program.events else "no events: block"
        print(
            f"ceap: emit writes to the embedded event_log; program {program.program} reads {kind}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.event is not None:
        text = args.event
    elif args.file and args.file != "-":
        text = Path(args.file).read_text()
    else:
        text = sys.stdin.read()
    try:
        stripped = text.strip()
        if stripped.startswith("["):
            events = json.loads(stripped)
        else:
            events = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        if not all(isinstance(e, dict) for e in events):
            raise ValueError("every event must be a JSON object")
    except ValueError as exc:
        print(
            f"ceap: not valid events ({exc}); expected a JSON object per line, e.g. {STREAMING_EXAMPLE}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    positions = connectors.get("event_log")(program.events.options).log().append(events)
    print(f"emitted {len(positions)} event(s) to {program.events.options.path}")
    return EXIT_OK


def run_generate(argv: list[str]) -> int:
    from sample import generate_warehouse

    parser = argparse.ArgumentParser(
        prog="run.py generate", description="Writes the seeded sample warehouse."
    )
    parser.add_argument("--rows", type=int, default=SAMPLE_ROWS)
    parser.add_argument("--output", default=str(SAMPLE_ROOT))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--as-of", default=None, help="ISO date the data is relative to (default today)"
    )
    args = parser.parse_args(argv)
    from ceap.errors import ConfigError

    try:
        as_of = _parse_now(args.as_of, "--as-of") if args.as_of else None
    except ConfigError as exc:
        print(f"ceap: {exc}", file=sys.stderr)
        return EXIT_USAGE
    counts = generate_warehouse(args.output, rows=args.rows, seed=args.seed, as_of=as_of,
                                progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    for table, n in counts.items():
        print(f"{table:24s} {n:>12,}")
    return EXIT_OK


_MODULES = {
    "serve": "serving.cli", "dispatch": "channels.cli", "export": "pipelines.export",
    "report": "reports.html", "train": "scorers.cli",
}  # fmt: skip
"""Where each subcommand's ``main(argv) -> exit code`` lives (imported only when run)."""


def _run_subcommand(command: str, rest: list[str]) -> int:
    if command == "generate":
        return run_generate(rest)
    if command == "emit":
        return run_emit(rest)
    return importlib.import_module(_MODULES[command]).main(rest)


def _unknown_command(word: str) -> int:
    """`run.py dispach`: name the nearest command instead of asking for --program."""
    import difflib

    near = difflib.get_close_matches(word, list(SUBCOMMANDS), n=1)
    hint = f"; did you mean `run.py {near[0]}`?" if near else ""
    print(f"ceap: unknown command {word!r}{hint} (commands: {', '.join(SUBCOMMANDS)}; "
          "`run.py --help` says what each does)", file=sys.stderr)  # fmt: skip
    return EXIT_USAGE


def _commands_help() -> str:
    width = max(map(len, SUBCOMMANDS)) + 2
    lines = ["commands (python run.py COMMAND --help for each one's flags):"]
    lines.append(f"  {'(none)':<{width}}runs --program P (or all) --mode batch|streaming")
    lines += [f"  {name:<{width}}{text}" for name, text in SUBCOMMANDS.items()]
    lines.append("exit codes: 0 ok, 1 failed, 2 wrong usage, 3 ran but degraded")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_logs()
    if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
        return _unknown_command(argv[0])
    if argv and argv[0] in SUBCOMMANDS:
        return _run_subcommand(argv[0], argv[1:])
    parser = argparse.ArgumentParser(
        prog="run.py", description=__doc__, epilog=_commands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    from pipelines.options import CeapOptions

    CeapOptions._add_argparse_args(parser)
    args, beam_args = parser.parse_known_args(argv)
    if not args.program:
        parser.error("--program is required (a program name, or 'all')")
    from ceap.errors import ConfigError

    try:
        now = _parse_now(args.now)
        args.store = driver_store(args.store)
    except ConfigError as exc:
        print(f"ceap: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.mode == "streaming":
        return run_streaming_mode(args, beam_args, now)
    return run_batch(args, beam_args, now)


def exit_now(code: int | None) -> NoReturn:
    """Ends the process once a command is done, skipping only the interpreter's teardown of
    every module Beam and its cloud clients imported (~0.5 s of each command's wall time,
    a quarter of a batch run's fixed start). What a normal exit does that matters still
    happens first: threads are joined as at exit, atexit handlers run (logging's flush
    among them), output is flushed. Under a profiler or tracer (``python -m cProfile -o``,
    coverage) the normal exit runs, so their own work at exit is not cut short."""
    if not isinstance(code, int) or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    shutdown = getattr(threading, "_shutdown", None)  # joins threads as a normal exit does
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed stream
            stream.flush()
    os._exit(code)


def cli() -> NoReturn:
    """The ``ceap`` console script: ``python run.py``'s entry."""
    exit_now(main())


if __name__ == "__main__":
    cli()
