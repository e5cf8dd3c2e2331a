"""``python run.py serve``: the Serving API on uvicorn.

    python run.py serve [--host 127.0.0.1] [--port 8080] [--workers N] [--store sqlite]
                        [--config-dir configs]

Workers are processes, each with its own store connections and caches; with more than one,
Prometheus metrics are summed across them through ``$PROMETHEUS_MULTIPROC_DIR`` (a temporary
directory when unset). API keys come from ``$CEAP_API_KEYS``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile

from fastapi import FastAPI


def app_factory() -> FastAPI:
    """What each uvicorn worker calls: the app for the store and configs the CLI chose."""
    from serving.app import create_app

    return create_app(
        store_spec=os.environ.get("CEAP_SERVE_STORE", "sqlite"),
        config_dir=os.environ.get("CEAP_CONFIG_DIR") or None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--store", default=os.environ.get("CEAP_STORE", "sqlite"),
                        help="sqlite (default, $CEAP_HOME/ceap.db), sqlite:///x.db, dynamodb://...")  # fmt: skip
    parser.add_argument("--config-dir", "--config_dir", dest="config_dir", default=None)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    import uvicorn

    from ceap.errors import ConfigError
    from ceap.tokens import require_signing_key
    from stores.ports import require_roles
    from stores.spec import open_store

    try:
        require_signing_key("serve")
    except ConfigError as exc:
        print(f"ceap: {exc}", file=sys.stderr)
        return 2
    try:  # a corrupt or unreachable store: say so before announcing an address
        store = open_store(args.store)
        try:
            require_roles(store, "serve", args.store)
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - reported, exit 1
        print(f"ceap: serve cannot start: store {args.store}: {exc}", file=sys.stderr)
        return 1
    os.environ["CEAP_SERVE_STORE"] = args.store
    if args.config_dir:
        os.environ["CEAP_CONFIG_DIR"] = args.config_dir
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ceap-metrics-")
    if not os.environ.get("CEAP_API_KEYS", "").strip(","):
        print("ceap: no API keys in CEAP_API_KEYS: every data request will be refused (401)",
              file=sys.stderr)  # fmt: skip
    print(f"ceap: serving {args.store} on http://{args.host}:{args.port} (docs at /docs)",
          file=sys.stderr, flush=True)  # fmt: skip
    config = uvicorn.Config(
        "serving.cli:app_factory", factory=True, host=args.host, port=args.port,
        workers=args.workers, log_level=args.log_level, access_log=args.access_log,
        backlog=4096, timeout_keep_alive=30,
    )  # fmt: skip
    if args.workers == 1:
        uvicorn.Server(config).run()
        return 0
    from uvicorn.supervisors import Multiprocess

    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[_listen(args.host, args.port)]).run()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The workers' shared listening socket. uvicorn's own (``Config.bind_socket``) is made
    with protocol 0, so asyncio does not set TCP_NODELAY on accepted connections: every
    response then waits out a delayed ACK (~40 ms; 180 req/s instead of thousands)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
