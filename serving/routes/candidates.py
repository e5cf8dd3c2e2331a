"""``GET /v1/customers/{customer_id}/candidates``: the hot route. Its parameters are
validated by hand (``schemas.candidate_params``) and the shared state read straight from
``app.state``: FastAPI's per-parameter machinery and dependencies cost more than the read."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from serving.eligibility import ELIGIBLE, INELIGIBLE
from serving.schemas import (
    CANDIDATE_PARAMETERS,
    CandidatesOut,
    candidate_params,
    public_candidate,
    require_known,
)
from stores.base import iso

FETCH = 100  # rows read per customer: the page size cap; the filters run on these

router = APIRouter()


@router.get("/v1/customers/{customer_id}/candidates", response_model=CandidatesOut,
            summary="A customer's live, eligible candidates, best first",
            openapi_extra={"parameters": CANDIDATE_PARAMETERS})  # fmt: skip
async def candidates(request: Request) -> Response:
    state = request.app.state
    customer_id, program, channel, limit = candidate_params(request.scope)
    require_known(program, state.known, ("query", "program"))
    now_dt = state.clock()
    now = iso(now_dt)
    rows = await state.stores.read(lambda s: s.customer_candidates(customer_id, program, FETCH))
    rows = [
        r for r in rows
        if r["status"] == "live" and r["expires_at"] > now and r["deliver_after"] <= now
        and (channel is None or _has_channel(state.programs.get(r["program"]), channel))
    ]  # fmt: skip
    for name in {r["program"] for r in rows}:
        if await state.stores.read(lambda s, p=name: s.is_opted_out(customer_id, p, channel)):
            rows = [r for r in rows if r["program"] != name]
    served = await _recheck(state, rows, limit, now_dt)
    body = {"customer_id": customer_id, "candidates": [public_candidate(r) for r in served]}
    return Response(json.dumps(body), media_type="application/json")


async def _recheck(state: Any, rows: list[dict], limit: int, now_dt: datetime) -> list[dict]:
    """The first ``limit`` rows that pass; stale ones are re-checked, a slice at a time."""
    served: list[dict] = []
    eligibility, stores = state.eligibility, state.stores
    cutoffs = {  # created before this: stale, re-checked (iso text compares as time)
        name: iso(now_dt - p.staleness) for name, p in state.programs.items() if p.staleness
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


def _has_channel(program: Any, channel: str) -> bool:
    return program is not None and any(c.type == channel for c in program.channels)
