"""Provider webhooks (DESIGN §8): what SES and WhatsApp say about sent messages, authenticated
by the provider's signature instead of an API key (serving/middleware.py lets them through
and takes bodies up to 256 KiB), mapped onto the same ``Feedback`` as ``POST /v1/deliveries``.

    POST /v1/webhooks/ses        SNS messages (serving/sns.py) carrying SES events (serving/ses.py)
    GET  /v1/webhooks/whatsapp   Meta's verification handshake ($CEAP_WHATSAPP_VERIFY_TOKEN)
    POST /v1/webhooks/whatsapp   status callbacks (serving/whatsapp.py), X-Hub-Signature-256
                                 keyed by $CEAP_WHATSAPP_APP_SECRET

Answers: 200 ``{"recorded", "replayed", "unmatched", "ignored"}`` (an event about no known
message is unmatched, not an error; one that means nothing here is ignored); 400 malformed,
401 not authenticated, 403 a topic or subscription URL not accepted, 503 when an SNS
signature cannot be checked right now (SNS retries 5xx only). Replays change nothing.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import Counter

from serving import ses, whatsapp
from serving.feedback import Feedback
from serving.sns import SnsRefused, SnsVerifier, parse
from serving.state import State

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
WEBHOOKS = Counter(
    "ceap_webhook_requests",
    "Provider webhook requests by provider and what became of them",
    ["provider", "outcome"],
)


def sns_verifier(state: Any) -> SnsVerifier:
    """The app's verifier (certificate cache): ``app.state.sns``, from the environment."""
    verifier = getattr(state, "sns", None)
    if verifier is None:
        verifier = state.sns = SnsVerifier.from_env()
    return verifier


_OUTCOMES = {400: "malformed", 401: "unauthenticated", 403: "forbidden"}


def _refused(provider: str, status: int, reason: str) -> JSONResponse:
    WEBHOOKS.labels(provider, _OUTCOMES.get(status, "unavailable")).inc()
    level = logging.WARNING if status >= 500 else logging.INFO  # forged posts: no log flood
    log.log(level, "%s webhook refused (%s): %s", provider, status, reason)
    return JSONResponse({"detail": reason}, status_code=status)


async def _apply(state: Any, provider: str, items: list[Feedback], ignored: int) -> JSONResponse:
    applied = await state.feedback.apply(items)  # stored before answered: SNS retries non-2xx
    WEBHOOKS.labels(provider, "applied").inc()
    return JSONResponse({**applied.as_dict(), "ignored": ignored})


_TEXT_BODY = {"requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}}  # fmt: skip
_JSON_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}  # fmt: skip


@router.post("/v1/webhooks/ses", openapi_extra=_TEXT_BODY,
             summary="SES events through an SNS HTTPS subscription (signature verified)")  # fmt: skip
async def ses_webhook(request: Request, state: State) -> Response:
    body = await request.body()
    verifier = sns_verifier(state)
    try:
        envelope = parse(body, request.headers.get("x-amz-sns-message-type"))
        await verifier.verify(envelope)
        if envelope.type == "Notification":
            items, ignored = ses.feedback(envelope.message, envelope.message_id)
        elif envelope.type == "SubscriptionConfirmation":
            await verifier.confirm(envelope)
    except SnsRefused as refused:
        return _refused("ses", refused.status, refused.reason)
    except ses.NotSes as exc:
        return _refused("ses", 400, str(exc))
    if envelope.type == "Notification":
        return await _apply(state, "ses", items, ignored)
    done = "confirmed" if envelope.type == "SubscriptionConfirmation" else "unsubscribed"
    # At warning: `serve` logs warnings and above, and a subscription change is worth seeing.
    log.warning("SNS subscription to %s %s (%s)", envelope.topic_arn, done, envelope.message_id)
    WEBHOOKS.labels("ses", f"subscription_{done}").inc()
    return JSONResponse({"subscription": done, "topic": envelope.topic_arn})


@router.get("/v1/webhooks/whatsapp", response_class=PlainTextResponse,
            summary="Meta's webhook verification: echoes hub.challenge to the right token")  # fmt: skip
async def whatsapp_verification(
    mode: Annotated[str, Query(alias="hub.mode", max_length=32)] = "",
    token: Annotated[str, Query(alias="hub.verify_token", max_length=512)] = "",
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=512)] = "",
) -> Response:
    expected = os.environ.get("CEAP_WHATSAPP_VERIFY_TOKEN", "")
    good = hmac.compare_digest(token.encode(), expected.encode())
    if not expected or mode != "subscribe" or not good:
        WEBHOOKS.labels("whatsapp", "forbidden").inc()
        return PlainTextResponse("forbidden", status_code=403)
    WEBHOOKS.labels("whatsapp", "verified").inc()
    return PlainTextResponse(challenge)


@router.post("/v1/webhooks/whatsapp", openapi_extra=_JSON_BODY,
             summary="WhatsApp Cloud API status callbacks (X-Hub-Signature-256 verified)")  # fmt: skip
async def whatsapp_webhook(request: Request, state: State) -> Response:
    body = await request.body()
    secret = os.environ.get("CEAP_WHATSAPP_APP_SECRET", "")
    if not secret:
        return _refused("whatsapp", 401, "CEAP_WHATSAPP_APP_SECRET is not set: nothing verifies")
    if not whatsapp.signed(body, request.headers.get("x-hub-signature-256"), secret):
        return _refused("whatsapp", 401, "missing or bad X-Hub-Signature-256")
    try:
        items, ignored = whatsapp.feedback(body)
    except whatsapp.NotWhatsapp as exc:
        return _refused("whatsapp", 400, str(exc))
    return await _apply(state, "whatsapp", items, ignored)
