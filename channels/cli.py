"""``python run.py dispatch``: sends the due outbox rows through the channel adapters.

    python run.py dispatch [--program P] [--channel C] [--now ISO8601] [--config-dir configs]
                           [--store sqlite] [--batch-size 500] [--loop [SECONDS]] [--status]
                           [--metrics-port PORT | --metrics-file PATH]

Without ``--loop`` it drains what is due and exits; with it, it keeps polling every SECONDS
(default 5) until SIGINT or SIGTERM (systemd's stop), which end it after the round in flight,
with exit status 0. ``--status`` prints delivery status counts and sends nothing.
"""

from __future__ import annotations

import argparse
import os
import sys

from ceap.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    from ceap import stopping
    from ceap.context import parse_now
    from ceap.errors import CeapError
    from ceap.progress import Progress
    from channels.dispatcher import LEASE_SECONDS, dispatch
    from stores.spec import require_store

    parser = argparse.ArgumentParser(prog="run.py dispatch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--program")
    parser.add_argument("--channel")
    parser.add_argument("--now", help="ISO-8601 reference time (replays, tests); default: now")
    parser.add_argument("--config-dir", "--config_dir", dest="config_dir", default=None)
    parser.add_argument("--store", default=os.environ.get("CEAP_STORE", "sqlite"))
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--lease-seconds", type=float, default=LEASE_SECONDS)
    parser.add_argument("--owner", help="lease owner id (default host:pid:random)")
    parser.add_argument("--loop", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS")
    parser.add_argument("--status", action="store_true", help="print delivery status and exit")
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics here while --loop runs"
    )
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument(
        "--metrics-file",
        help="write Prometheus metrics here after each pass (node_exporter textfile)",
    )
    args = parser.parse_args(argv)
    from ceap.plugins import channels

    try:
        now = parse_now(args.now)
    except CeapError as exc:
        print(f"ceap: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.channel is not None and args.channel not in channels.names():
        known = ", ".join(sorted(channels.names()))
        print(f"ceap: unknown channel {args.channel!r} (known channels: {known})", file=sys.stderr)
        return EXIT_USAGE
    try:
        require_store(args.store)
        if args.status:
            return _status(args)
        if args.loop is not None:
            stopping.install("ceap: stopping after the round in flight")
        if args.metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(args.metrics_port, addr=args.metrics_host)
        first = True
        while True:
            with Progress("dispatch", noun="outbox rows handled"):
                summary = dispatch(
                    args.store, args.config_dir, args.program, args.channel, now,
                    owner=args.owner, batch_size=args.batch_size, lease_seconds=args.lease_seconds,
                    reclaim=first,  # later passes: a dead peer's lease runs out (60 s)
                )  # fmt: skip
            first = False
            print(summary.render(), flush=True)
            if args.metrics_file:
                from prometheus_client import REGISTRY, write_to_textfile

                write_to_textfile(args.metrics_file, REGISTRY)  # atomic: temp file + rename
            if args.loop is None or stopping.wait(args.loop):
                return EXIT_OK
    except (CeapError, NotImplementedError) as exc:
        print(f"ceap: dispatch cannot run: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _status(args: argparse.Namespace) -> int:
    from stores.spec import open_store

    store = open_store(args.store)
    try:
        table = store.outbox_status(args.program, args.channel)
    finally:
        store.close()
    for row in table.to_pylist():
        print(f"{row['program']:20s} {row['channel']:10s} {row['status']:12s} {row['rows']:>10,}")
    return EXIT_OK
