"""The chat widget's files (the script and a demo page) and CORS for the pages that embed it."""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_ingest.chat.config import ChatConfig
from crm_ingest.chat.service import ChatService
from crm_ingest.domain.chat import RESERVED_WIDGET_KEYS, origin_allowed
from crmkit.problems import PROBLEM_JSON, TYPE_BASE, NotFound
from crmkit.web import state

widget_router = APIRouter(prefix="/chat", tags=["chat"])

Chat = Annotated[ChatService, Depends(state("chat", ChatService))]
_PLACEHOLDER = re.compile(r"\{\{(widget|transport|email|email_signature)\}\}")


# --- the widget's files ---

@dataclass(frozen=True)
class _Static:
    body: bytes
    etag: str


@cache
def _static(name: str) -> _Static:
    body = files("crm_ingest").joinpath("static", name).read_bytes()
    return _Static(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@widget_router.get("/widget.js", summary="The embeddable chat widget (one script, no dependencies)",
                   response_class=Response)
async def widget_script(request: Request) -> Response:
    script = _static("chat-widget.js")
    headers = {"ETag": script.etag, "Cache-Control": "public, max-age=300",
               "X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "cross-origin"}
    if script.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(script.body, media_type="text/javascript; charset=utf-8", headers=headers)


@widget_router.get("/demo", summary="A page with the chat widget, to try a widget key",
                   response_class=Response)
async def widget_demo(
    chat: Chat, widget: Annotated[str | None, Query(max_length=64)] = None,
    transport: Annotated[str, Query(pattern="^(ws|poll)$", description="poll: the REST fallback")] = "ws",
    email: Annotated[str, Query(max_length=320, description="A logged-in person's email")] = "",
    email_signature: Annotated[str, Query(max_length=128, description="Its signature, made with the "
                                          "widget's identity secret (never by this page)")] = "",
) -> Response:
    key = widget or next(iter(chat.config.widgets), None)
    if key is None or key not in chat.config.widgets:
        raise NotFound("chat widget")
    values = {"widget": key, "transport": transport, "email": email, "email_signature": email_signature}
    # One pass, so that a value is never read as a placeholder.
    page = _PLACEHOLDER.sub(lambda found: html.escape(values[found[1]], quote=True),
                            _static("chat-demo.html").body.decode())
    return Response(page, media_type="text/html; charset=utf-8", headers={
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                                   "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                   "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"})


# --- CORS for the widgets' pages ---

class ChatCors:
    """CORS on ``/v1/chat/<widget>/...`` for the widget's allowed origins (and loopback pages
    outside production): preflights answered here, the headers added to every answer (errors
    too, so that the widget can read a 429). A request from another site's page is refused
    with 403 before it reaches a route: a simple POST must not act on the server either."""

    def __init__(self, app: ASGIApp, config: ChatConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        widget = _widget_of(scope) if scope["type"] == "http" else None
        found = self.config.widgets.get(widget) if widget else None
        origin = Headers(scope=scope).get("origin") if found else None
        if found is None or origin is None:
            await self.app(scope, receive, send)
            return
        if not origin_allowed(origin, frozenset(found.allowed_origins),
                              allow_loopback=self.config.allow_loopback_origins):
            body = {"type": TYPE_BASE + "forbidden-origin", "title": "Forbidden", "status": 403,
                    "detail": "this widget is not allowed on this site"}
            await JSONResponse(body, 403, media_type=PROBLEM_JSON)(scope, receive, send)
            return
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        headers = Headers(scope=scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await Response(status_code=204, headers={
                **cors, "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Chat-Token",
                "Access-Control-Max-Age": "600"})(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer = MutableHeaders(scope=message)
                answer["Access-Control-Allow-Origin"] = origin
                answer.add_vary_header("Origin")
                answer["Access-Control-Expose-Headers"] = "Retry-After"
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _widget_of(scope: Scope) -> str | None:
    parts = str(scope.get("path", "")).split("/")
    # ["", "v1", "chat", "<widget>", ...]
    if len(parts) >= 5 and parts[1] == "v1" and parts[2] == "chat" and parts[3] not in RESERVED_WIDGET_KEYS:
        return parts[3]
    return None
