"""The Serving API (docs/architecture.md, "Serving API"): a customer's live candidates in milliseconds.

    GET    /v1/customers/{customer_id}/candidates?program=&channel=&limit=
    POST   /v1/responses        {"program", "customer_id", "subject_id", "response"?}
    POST   /v1/opt-outs         {"customer_id", "program"?, "channel"?}
    DELETE /v1/opt-outs/{customer_id}
    GET    /healthz, /metrics (Prometheus), /docs (OpenAPI)

Served candidates are live, unexpired by the clock (whatever the backend's TTL sweep did),
deliverable (deliver_after <= now), not opted out (checked on every call, so an opt-out is
honoured at once), best score first. Candidates older than their program's ``staleness`` are
re-checked by the eligibility checks (serving/eligibility.py) first; an ineligible one is
marked expired in the store and omitted.

Data routes need an API key (``X-API-Key: K`` or ``Authorization: Bearer K``; keys from
``CEAP_API_KEYS``, comma-separated, or ``api_keys``): with no keys configured every data
request is refused. Every parameter is validated (422), bodies are capped (413), and an
unexpected error answers a bare 500 (details go to the log, never to the client).

A response for a subject with no live candidate is still recorded (it feeds dedup and
frequency caps): ``POST /v1/responses`` answers 200 with ``"consumed": false``, not 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path as FilePath
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)

from ceap.context import RunContext
from serving.eligibility import (
    ELIGIBLE,
    INELIGIBLE,
    Eligibility,
    EligibilityCheck,
    Policy,
    default_checks,
)
from serving.middleware import Observe, configured_keys
from serving.schemas import (
    CANDIDATE_PARAMETERS,
    CandidatesOut,
    CustomerId,
    OptOutIn,
    OptOutOut,
    OptOutsRemoved,
    ResponseIn,
    ResponseOut,
    candidate_params,
    document_security,
    public_candidate,
)
from stores.base import iso
from stores.spec import open_store

log = logging.getLogger(__name__)


FETCH = 100  # rows read per customer: the page size cap; the filters run on these


MAX_BODY = 16 * 1024


class _Stores:
    """Per-worker store handles. SQLite: one writer connection (writes serialised by a lock)
    and a read-only connection per thread, read inline on the event loop (an indexed read
    takes tens of microseconds, less than a thread hop). Other backends: one client, called
    on the thread pool (network round trips must not block the loop). Opened on first use,
    so a closed app (lifespan shutdown) that gets a request again reopens them."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.local = spec == "sqlite" or spec.startswith("sqlite:")
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
        def locked() -> Any:
            with self._lock:
                return fn(self.writer)

        return await run_in_threadpool(locked)

    def close(self) -> None:
        opened = [*self._readers.values(), self._writer]
        self._readers, self._writer = {}, None
        for store in filter(None, opened):
            try:
                store.close()
            except Exception:  # noqa: BLE001 - closing at shutdown; the thread may be gone
                log.debug("closing a store failed", exc_info=True)


def _load_programs(config_dir: str | os.PathLike | None) -> dict[str, Any]:
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


def _known_programs(config_dir: str | os.PathLike | None, programs: dict[str, Any]) -> frozenset:
    """The programs the API accepts by name: those the config dir declares, loaded or not (a
    config that fails to load still has candidates in the store and customers who opt out)."""
    from configs.programs import declared_names, default_config_dir

    return frozenset(programs) | frozenset(declared_names(config_dir or default_config_dir()))


def _require_known(program: str | None, known: frozenset, loc: tuple[str, str]) -> None:
    """A program no config declares is a typo (``course_fedback``): recording it would
    suppress nothing and grow an export partition, so it is refused with 422."""
    if program is not None and program not in known:
        names = ", ".join(sorted(known)) or "none"
        raise RequestValidationError([{"type": "value_error", "loc": loc, "input": program,
                                       "msg": f"unknown program {program!r}; known: {names}"}])  # fmt: skip


def create_app(
    store_spec: str = "sqlite",
    config_dir: str | os.PathLike | None = None,
    api_keys: list[str] | None = None,
    eligibility_checks: list[EligibilityCheck] | None = None,
    policies: dict[str, Policy] | None = None,
    clock: Callable[[], datetime] = RunContext.utcnow,
    max_body: int = MAX_BODY,
) -> FastAPI:
    """Builds the API over one store.

    Args:
        store_spec: as ``open_store`` (``sqlite``, ``sqlite:///x.db``, ``dynamodb://...``).
        config_dir: program configs (staleness bounds, channels); default as the CLI's.
        api_keys: accepted keys; None reads ``CEAP_API_KEYS``.
        eligibility_checks: the re-checks of stale candidates; default opt_out and
            already_acted on this store (add a ``CatalogueCheck`` for the subject's side).
        policies: program -> ``serve`` | ``omit`` when a check cannot answer (default serve).
        clock: now, as an aware UTC datetime (tests move it).
    """
    keys = configured_keys(api_keys)
    if not keys:
        log.warning("no API keys configured (CEAP_API_KEYS): every data request is refused")
    stores = _Stores(store_spec)
    programs = _load_programs(config_dir)
    known = _known_programs(config_dir, programs)
    checks = (
        eligibility_checks
        if eligibility_checks is not None
        else default_checks(stores.reader, stores.local)
    )
    eligibility = Eligibility(checks, policies)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        eligibility.close()
        stores.close()

    app = FastAPI(
        title="CEAP Serving API",
        version="1",
        description=(__doc__ or "").split("\n\n", 2)[2],
        lifespan=lifespan,
    )
    app.state.stores, app.state.eligibility, app.state.programs = stores, eligibility, programs
    app.add_middleware(Observe, max_body=max_body, keys=keys)
    document_security(app)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own 422 echoes the input as it parsed it, and fails (a 500) on what
        JSON cannot carry: NaN, 1e999, a lone surrogate. Echo those as their repr."""
        errors = [
            {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": _echo(e.get("msg")),
             "input": _echo(e.get("input"))}
            for e in exc.errors()
        ]  # fmt: skip
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/v1/customers/{customer_id}/candidates", response_model=CandidatesOut,
             summary="A customer's live, eligible candidates, best first",
             openapi_extra={"parameters": CANDIDATE_PARAMETERS})  # fmt: skip
    async def candidates(request: Request) -> Response:
        customer_id, program, channel, limit = candidate_params(request.scope)
        _require_known(program, known, ("query", "program"))
        now_dt = clock()
        now = iso(now_dt)
        rows = await stores.read(lambda s: s.customer_candidates(customer_id, program, FETCH))
        rows = [
            r for r in rows
            if r["status"] == "live" and r["expires_at"] > now and r["deliver_after"] <= now
            and (channel is None or _has_channel(programs.get(r["program"]), channel))
        ]  # fmt: skip
        for name in {r["program"] for r in rows}:
            if await stores.read(lambda s, p=name: s.is_opted_out(customer_id, p, channel)):
                rows = [r for r in rows if r["program"] != name]
        served = await _recheck(rows, limit, now_dt)
        body = {"customer_id": customer_id, "candidates": [public_candidate(r) for r in served]}
        return Response(json.dumps(body), media_type="application/json")

    async def _recheck(rows: list[dict], limit: int, now_dt: datetime) -> list[dict]:
        """The first ``limit`` rows that pass; stale ones are re-checked, a slice at a time."""
        served: list[dict] = []
        cutoffs = {  # created before this: stale, re-checked (iso text compares as time)
            name: iso(now_dt - p.staleness) for name, p in programs.items() if p.staleness
        }
        while rows and len(served) < limit:
            batch, rows = rows[: limit - len(served)], rows[limit - len(served) :]
            stale = [r for r in batch if r["created_at"] < cutoffs.get(r["program"], "")]
            if eligibility.inline:  # no thread, no timer: plain awaits, no tasks to schedule
                answers = [await eligibility.verdict(r) for r in stale]
            else:
                answers = await asyncio.gather(*(eligibility.verdict(r) for r in stale))
            verdicts = {id(r): v for r, v in zip(stale, answers, strict=True)}
            for r in batch:
                verdict = verdicts.get(id(r))
                if verdict == INELIGIBLE:
                    await stores.write(
                        lambda s, r=r: s.expire_candidate(r["program"], r["customer_id"], r["subject_id"])
                    )  # fmt: skip
                if verdict in (None, ELIGIBLE):
                    served.append(r)
        return served

    @app.post("/v1/responses", response_model=ResponseOut,
              summary="The customer acted: the candidate is consumed")  # fmt: skip
    async def responses(body: ResponseIn) -> ResponseOut:
        _require_known(body.program, known, ("body", "program"))
        consumed = await stores.write(
            lambda s: s.record_response(body.program, body.customer_id, body.subject_id,
                                        body.response, key=body.idempotency_key)
        )  # fmt: skip
        eligibility.forget(body.customer_id)
        return ResponseOut(recorded=True, consumed=bool(consumed))

    @app.post("/v1/opt-outs", response_model=OptOutOut,
              summary="Opt a customer out of a program and/or channel (null = all)")  # fmt: skip
    async def opt_out(body: OptOutIn) -> OptOutOut:
        _require_known(body.program, known, ("body", "program"))
        await stores.write(lambda s: s.add_opt_out(body.customer_id, body.program, body.channel))
        eligibility.forget(body.customer_id)
        return OptOutOut(**body.model_dump())

    @app.delete("/v1/opt-outs/{customer_id}", response_model=OptOutsRemoved,
                summary="Remove every opt-out of a customer")  # fmt: skip
    async def remove_opt_outs(customer_id: CustomerId) -> OptOutsRemoved:
        removed = await stores.write(lambda s: s.remove_opt_outs(customer_id))
        eligibility.forget(customer_id)
        return OptOutsRemoved(customer_id=customer_id, removed=int(removed or 0))

    @app.get("/healthz", summary="Liveness (no key needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics (no key needed)")
    async def metrics() -> Response:
        registry = REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several workers: sum their files
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _echo(value: Any) -> Any:
    """``value`` when it is plain JSON text can carry, else a short repr of it."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        return value
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        return repr(value)[:200]


def _has_channel(program: Any, channel: str) -> bool:
    return program is not None and any(c.type == channel for c in program.channels)
