"""The Serving API (docs/architecture.md, "Serving API"): a customer's live candidates in milliseconds.

    GET    /v1/customers/{customer_id}/candidates?program=&channel=&limit=
    POST   /v1/responses        {"program", "customer_id", "subject_id", "response"?}
    POST   /v1/opt-outs         {"customer_id", "program"?, "channel"?}
    DELETE /v1/opt-outs/{customer_id}
    POST   /v1/deliveries       provider feedback (serving/routes/deliveries.py)
    POST   /u/{token}, GET /u/{token}, /c/{token}, /o/{token}.gif   links in messages
    POST   /v1/webhooks/ses, /v1/webhooks/whatsapp   provider feedback, signed (no API key)
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

import logging
import os
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from ceap.context import RunContext
from serving.eligibility import Eligibility, EligibilityCheck, Policy, default_checks
from serving.errors import invalid, unexpected
from serving.feedback_writer import FeedbackWriter
from serving.middleware import Observe, configured_keys
from serving.routes import actions, candidates, deliveries, health, links, webhooks
from serving.schemas import document_security
from serving.state import Stores, known_programs, load_programs

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024


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
    stores = Stores(store_spec)
    programs = load_programs(config_dir)
    checks = (
        eligibility_checks
        if eligibility_checks is not None
        else default_checks(stores.reader, stores.local)
    )
    eligibility = Eligibility(checks, policies)
    feedback = FeedbackWriter(stores.write_here, clock, forget=eligibility.forget)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        feedback.close()  # what was written behind reaches the store before it closes
        eligibility.close()
        stores.close()

    app = FastAPI(
        title="CEAP Serving API",
        version="1",
        description=(__doc__ or "").split("\n\n", 2)[2],
        lifespan=lifespan,
    )
    app.state.stores, app.state.eligibility, app.state.programs = stores, eligibility, programs
    app.state.feedback = feedback
    app.state.known, app.state.clock = known_programs(config_dir, programs), clock
    app.add_middleware(Observe, max_body=max_body, keys=keys)
    document_security(app)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(links.LinkRefused, links.refused)
    app.add_exception_handler(Exception, unexpected)
    for routes in (candidates, actions, deliveries, links, webhooks, health):
        app.include_router(routes.router)
    return app
