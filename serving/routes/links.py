"""The links inside messages (DESIGN §8), reached by customers' mail clients with no API key:
the signed token is the credential.

    POST /u/{token}       one-click unsubscribe (RFC 8058; body List-Unsubscribe=One-Click)
    GET  /u/{token}       a confirmation page that changes nothing (mail scanners follow links)
    GET  /c/{token}       records the click, 302 to exactly the URL the token was signed for
    GET  /o/{token}.gif   records the open, answers a 1x1 transparent GIF

A token that is not ours, altered, or of another purpose answers 400; an expired one 410;
neither says more. Clicks and opens are written behind the answer, within milliseconds (a
crash can lose the last few: serving/feedback_writer.py); an unsubscribe is stored before
it is confirmed.
"""

from __future__ import annotations

import base64
import html
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from ceap.tokens import MAX_TOKEN_CHARS, Purpose, TokenError, TokenExpired, verify
from serving.feedback import Feedback
from serving.state import State

router = APIRouter(include_in_schema=True, tags=["links"])
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
Token = Annotated[str, Path(min_length=1, max_length=MAX_TOKEN_CHARS)]
TOKEN_PARAMETER = [{"name": "token", "in": "path", "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_CHARS}}]  # fmt: skip
"""The hot routes (a click, a pixel) read their token by hand, as the candidates route does
its parameters: FastAPI's per-parameter machinery costs more than the rest of the route;
``verify`` refuses an over-long token (400) unread."""


class LinkRefused(Exception):
    """A link whose token does not verify: answered by ``refused`` (app.py registers it)."""

    def __init__(self, status: int) -> None:
        self.status = status


async def refused(request: Request, exc: LinkRefused) -> PlainTextResponse:
    text = "this link has expired" if exc.status == 410 else "this link is not valid"
    return PlainTextResponse(text, status_code=exc.status, headers=NO_STORE)


def _verified(purpose: Purpose, token: str) -> tuple[str, str | None]:
    try:
        return verify(purpose, token)
    except TokenExpired:
        raise LinkRefused(410) from None
    except TokenError:
        raise LinkRefused(400) from None


@router.post("/u/{token}", summary="One-click unsubscribe (RFC 8058)")
async def unsubscribe(token: Token, state: State) -> Response:
    key, _ = _verified(Purpose.UNSUBSCRIBE, token)
    await state.feedback.apply([Feedback("unsubscribed", key=key)])  # stored before we say so
    return PlainTextResponse("You are unsubscribed.", headers=NO_STORE)


@router.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe confirmation page")
async def unsubscribe_page(token: Token) -> Response:
    _verified(Purpose.UNSUBSCRIBE, token)
    action = html.escape(f"/u/{token}")
    page = (
        '<!DOCTYPE html><html><body style="font-family:sans-serif"><p>Stop these emails?</p>'
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form></body></html>'
    )
    return HTMLResponse(page, headers=NO_STORE)


@router.get("/c/{token}", summary="A click: recorded, then redirected to the signed URL",
            openapi_extra={"parameters": TOKEN_PARAMETER})  # fmt: skip
async def click(request: Request) -> Response:
    key, url = _verified(Purpose.CLICK, request.path_params["token"])
    if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise LinkRefused(400)  # signed by us, yet no web URL: never redirect
    # Written behind: the redirect depends on the token alone (serving/feedback_writer.py).
    feedback = request.app.state.feedback
    await feedback.post([Feedback("clicked", key=key, event_id=url, detail={"url": url})])
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.get("/o/{token}.gif", summary="An open: recorded, answered with a 1x1 GIF",
            openapi_extra={"parameters": TOKEN_PARAMETER})  # fmt: skip
async def opened(request: Request) -> Response:
    key, _ = _verified(Purpose.OPEN, request.path_params["token"])
    await request.app.state.feedback.post([Feedback("opened", key=key)])
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
