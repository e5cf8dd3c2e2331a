"""What the Serving API's routes share, built once by ``create_app`` and kept on
``app.state``: the store handles, the programs (staleness bounds, channels, the names the API
accepts), the eligibility re-checks and the clock."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from stores.spec import StoreSpec, open_store

log = logging.getLogger(__name__)


async def serving_state(request: Request) -> Any:
    """The state ``create_app`` built (stores, eligibility, programs, known names, clock).
    ``async``: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop
    (~0.1 ms of CPU) on every request for one attribute read."""
    return request.app.state


State = Annotated[Any, Depends(serving_state)]


class Stores:
    """Per-worker store handles. SQLite: one writer connection (writes serialised by a lock)
    and a read-only connection per thread, read inline on the event loop (an indexed read
    takes tens of microseconds, less than a thread hop). Other backends: one client, called
    on the thread pool (network round trips must not block the loop). Opened on first use,
    so a closed app (lifespan shutdown) that gets a request again reopens them."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.local = StoreSpec.parse(spec).local
        self._writer: Any = None
        self._lock = threading.Lock()
        self._readers: dict[int, Any] = {}  # thread id -> read-only SqliteStore
        self.writer  # noqa: B018 - open now: creates the SQLite file and its tables

    @property
    def writer(self) -> Any:
        if self._writer is None:
            self._writer = open_store(self.spec)
        return self._writer

    def reader(self) -> Any:
        if not self.local:
            return self.writer
        store = self._readers.get(threading.get_ident())
        if store is None:
            from stores.sqlite import SqliteStore

            path = str(self.writer.path.resolve())  # `sqlite:////abs` leaves a `//abs` path,
            path = "/" + path.lstrip("/")  # which the read-only file: URI takes for a host
            store = self._readers[threading.get_ident()] = SqliteStore(path, read_only=True)
        return store

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        if self.local:
            return fn(self.reader())
        return await run_in_threadpool(fn, self.writer)

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        return await run_in_threadpool(self.write_here, fn)

    def write_here(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(writer)`` on the calling thread (not the event loop's: it blocks)."""
        with self._lock:
            return fn(self.writer)

    def close(self) -> None:
        opened = [*self._readers.values(), self._writer]
        self._readers, self._writer = {}, None
        for store in filter(None, opened):
            try:
                store.close()
            except Exception:  # noqa: BLE001 - closing at shutdown; the thread may be gone
                log.debug("closing a store failed", exc_info=True)


def load_programs(config_dir: str | os.PathLike | None) -> dict[str, Any]:
    """name -> ProgramConfig of every valid config; an invalid one is logged and skipped
    (its candidates are still served, with no staleness re-check and no channel)."""
    from ceap.errors import CeapError
    from configs.programs import default_config_dir
    from configs.schema import load_program, program_paths

    programs = {}
    for path in program_paths(FilePath(config_dir or default_config_dir())):
        try:
            program = load_program(path)
        except (CeapError, RecursionError, MemoryError) as exc:  # one bad file, not the API
            log.warning("serving without program config %s: %s", path, exc)
            continue
        programs[program.program] = program
    return programs


def known_programs(config_dir: str | os.PathLike | None, programs: dict[str, Any]) -> frozenset:
    """The programs the API accepts by name: those the config dir declares, loaded or not (a
    config that fails to load still has candidates in the store and customers who opt out)."""
    from configs.programs import declared_names, default_config_dir

    return frozenset(programs) | frozenset(declared_names(config_dir or default_config_dir()))
