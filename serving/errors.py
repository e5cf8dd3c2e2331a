"""How the Serving API answers what it cannot serve: 422 for invalid input, echoing only
what JSON can carry, and a bare 500 for anything unexpected (details go to the log)."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422 echoes the input as it parsed it, and fails (a 500) on what JSON
    cannot carry: NaN, 1e999, a lone surrogate. Echo those as their repr."""
    errors = [
        {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": _echo(e.get("msg")),
         "input": _echo(e.get("input"))}
        for e in exc.errors()
    ]  # fmt: skip
    return JSONResponse({"detail": errors}, status_code=422)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def _echo(value: Any) -> Any:
    """``value`` when it is plain JSON text can carry, else a short repr of it."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        return value
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        return repr(value)[:200]
