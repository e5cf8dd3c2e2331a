"""Provider feedback in one generic shape (DESIGN §8), for any provider without a webhook of
its own here: ``POST /v1/deliveries`` (API key) with one event or a list of them.

    {"idempotency_key" or "message_id", "event", "permanent"?: bool, "at"?: ISO-8601,
     "id"?: the provider's event id (a replay with the same id changes nothing),
     "address"?: the address it is about, "detail"?: any}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.feedback import MAX_DETAIL_CHARS, Feedback
from serving.state import State
from stores.base import ENGAGEMENT_EVENTS, iso

router = APIRouter(tags=["feedback"])
MAX_EVENTS = 500
Event = Literal[ENGAGEMENT_EVENTS]  # type: ignore[valid-type]


class DeliveryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    idempotency_key: str | None = Field(None, min_length=1, max_length=128)
    message_id: str | None = Field(None, min_length=1, max_length=256)
    event: Event
    permanent: bool | None = None
    at: datetime | None = None
    id: str | None = Field(None, min_length=1, max_length=256)
    address: str | None = Field(None, min_length=3, max_length=320)
    detail: Any = None

    @model_validator(mode="after")
    def _names_a_message(self) -> DeliveryIn:
        if self.idempotency_key is None and self.message_id is None:
            raise ValueError("give idempotency_key or message_id")
        return self

    @field_validator("detail")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if value is not None and len(json.dumps(value, default=str)) > MAX_DETAIL_CHARS:
            raise ValueError(f"detail: at most {MAX_DETAIL_CHARS} characters as JSON")
        return value

    def feedback(self) -> Feedback:
        at = iso(self.at if self.at.tzinfo else self.at.replace(tzinfo=UTC)) if self.at else None
        return Feedback(
            self.event, key=self.idempotency_key, message_id=self.message_id, at=at,
            permanent=self.permanent, address=self.address, event_id=self.id or at or "",
            detail=self.detail,
        )  # fmt: skip


class DeliveriesOut(BaseModel):
    recorded: int
    replayed: int
    unmatched: int


@router.post("/v1/deliveries", response_model=DeliveriesOut,
             summary="Provider feedback: delivered, bounced, complained, opened, clicked, ...")  # fmt: skip
async def deliveries(
    body: DeliveryIn | Annotated[list[DeliveryIn], Field(min_length=1, max_length=MAX_EVENTS)],
    state: State,
) -> DeliveriesOut:
    items = [e.feedback() for e in (body if isinstance(body, list) else [body])]
    applied = await state.feedback.apply(items)
    return DeliveriesOut(**applied.as_dict())
