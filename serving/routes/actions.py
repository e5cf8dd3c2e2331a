"""The customer's side of the API: a response (the customer acted) and opt-outs. Every
write goes through the store's writer and drops the customer's cached eligibility."""

from __future__ import annotations

from fastapi import APIRouter

from serving.schemas import (
    CustomerId,
    OptOutIn,
    OptOutOut,
    OptOutsRemoved,
    ResponseIn,
    ResponseOut,
    require_known,
)
from serving.state import State

router = APIRouter()


@router.post("/v1/responses", response_model=ResponseOut,
             summary="The customer acted: the candidate is consumed")  # fmt: skip
async def responses(body: ResponseIn, state: State) -> ResponseOut:
    require_known(body.program, state.known, ("body", "program"))
    consumed = await state.stores.write(
        lambda s: s.record_response(body.program, body.customer_id, body.subject_id,
                                    body.response, key=body.idempotency_key)
    )  # fmt: skip
    state.eligibility.forget(body.customer_id)
    return ResponseOut(recorded=True, consumed=bool(consumed))


@router.post("/v1/opt-outs", response_model=OptOutOut,
             summary="Opt a customer out of a program and/or channel (null = all)")  # fmt: skip
async def opt_out(body: OptOutIn, state: State) -> OptOutOut:
    require_known(body.program, state.known, ("body", "program"))
    await state.stores.write(lambda s: s.add_opt_out(body.customer_id, body.program, body.channel))
    state.eligibility.forget(body.customer_id)
    return OptOutOut(**body.model_dump())


@router.delete("/v1/opt-outs/{customer_id}", response_model=OptOutsRemoved,
               summary="Remove every opt-out of a customer")  # fmt: skip
async def remove_opt_outs(customer_id: CustomerId, state: State) -> OptOutsRemoved:
    removed = await state.stores.write(lambda s: s.remove_opt_outs(customer_id))
    state.eligibility.forget(customer_id)
    return OptOutsRemoved(customer_id=customer_id, removed=int(removed or 0))
