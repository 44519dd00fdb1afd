"""The public tracking endpoints (no credentials: the signed token is the credential), each
rate-limited per client IP. ``o`` is the open pixel, ``c`` a click redirect, ``u`` unsubscribe
(a confirmation page, and RFC 8058 one-click by POST)."""

from __future__ import annotations

import base64
import html
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pymongo.errors import PyMongoError

from crm_campaigns.service.tracking import TrackingService
from crmkit.problems import NotFound
from crmkit.ratelimit import RateLimiter
from crmkit.web import state

log = logging.getLogger(__name__)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}

Limiter = Annotated[RateLimiter, Depends(state("tracking_limiter", RateLimiter))]
Tracking = Annotated[TrackingService, Depends(state("tracking", TrackingService))]
Token = Annotated[str, Path(min_length=10, max_length=4096)]


def _within_rate(request: Request, limiter: Limiter) -> None:
    limiter.check(request.client.host if request.client else "unknown",
                  "too many tracking requests from this address")


router = APIRouter(prefix="/v1/t", tags=["tracking (public)"], dependencies=[Depends(_within_rate)])


def _agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:512]


# GET and HEAD as two routes: one route with both methods gives both operations one
# operationId in the OpenAPI document, which must be unique.
_PIXEL_ROUTE: dict[str, Any] = {
    "response_class": Response,
    "responses": {200: {"content": {"image/gif": {}}, "description": "A 1x1 GIF, always"}}}
_CLICK_ROUTE: dict[str, Any] = {
    "status_code": 302,
    "responses": {302: {"description": "To the link's target"},
                  404: {"description": "Not a link this service signed (no redirect)"}}}


@router.get("/o/{token}.gif", **_PIXEL_ROUTE)
@router.head("/o/{token}.gif", **_PIXEL_ROUTE)
async def open_pixel(token: Token, request: Request, tracking: Tracking) -> Response:
    """The open pixel: a transparent 1x1 GIF whatever the token; only a valid token counts an
    open (a HEAD request, a known scanner, Apple's privacy proxy or a fetch right after the
    send is recorded as a bot open, not a human one)."""
    try:
        await tracking.opened(token, user_agent=_agent(request), method=request.method)
    except PyMongoError as exc:  # an open lost is better than a broken image in someone's mail
        log.warning("open not recorded: %s", type(exc).__name__)
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@router.get("/c/{token}", **_CLICK_ROUTE)
@router.head("/c/{token}", **_CLICK_ROUTE)
async def click(token: Token, request: Request, tracking: Tracking) -> Response:
    """A tracked link: 302 to its signed target; 404 without a Location for anything else."""
    target = await tracking.clicked(token, user_agent=_agent(request), method=request.method)
    if target is None:
        raise NotFound("link")
    return RedirectResponse(target, status_code=302, headers=_NO_STORE)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width"></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>"""


@router.get("/u/{token}", response_class=HTMLResponse,
            responses={404: {"description": "Not a link this service signed"}})
async def unsubscribe_page(token: Token, tracking: Tracking) -> HTMLResponse:
    """A confirmation page with a button (a GET never unsubscribes: link scanners follow GETs)."""
    if tracking.token(token, "u") is None:
        raise NotFound("link")
    form = (f'<form method="post" action="{html.escape(token)}"><input type="hidden" name="via" value="page">'
            '<button type="submit">Unsubscribe</button></form>')
    return HTMLResponse(_PAGE.format(title="Unsubscribe", text="Stop receiving these emails?", form=form),
                        headers=_NO_STORE)


@router.post("/u/{token}", response_class=HTMLResponse,
             responses={404: {"description": "Not a link this service signed"}})
async def unsubscribe(token: Token, request: Request, tracking: Tracking) -> HTMLResponse:
    """Unsubscribe: RFC 8058 one-click (body ``List-Unsubscribe=One-Click``, from the mail
    client) or the confirmation page's button. Repeating it changes nothing."""
    body = (await request.body())[:1024].decode("utf-8", "replace")
    method = "one_click" if "List-Unsubscribe=One-Click" in body else "unsubscribe_link"
    if not await tracking.unsubscribe(token, method):
        raise NotFound("link")
    return HTMLResponse(_PAGE.format(title="Unsubscribed", text="You will not receive these emails again.",
                                     form=""), headers=_NO_STORE)
