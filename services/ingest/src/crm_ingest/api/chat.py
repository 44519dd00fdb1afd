"""The web chat's HTTP API: a visitor's session and the REST fallback of the socket (public,
with a visitor token; the socket is in chat_socket, the widget's files and CORS in
chat_widget), and the agents' side (bearer auth): a session's state, typing and read notices.

Routes translate requests into ChatService calls; the transcript, the raw topic and the
limits are the service's."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from opentelemetry import metrics
from pydantic import BaseModel, Field

from crm_ingest.api.chat_socket import STORE_ERRORS, socket_router
from crm_ingest.api.deps import read_limited
from crm_ingest.chat.reader import reading
from crm_ingest.chat.service import ChatService, Limit, NoSuchSession, UnknownWidget
from crm_ingest.domain.chat import (
    ChatSession,
    FrameError,
    InvalidIdentitySignature,
    InvalidVisitorToken,
    SendMessage,
    TooLarge,
    frame_limit,
    outgoing_message,
    parse_frame,
    still_typing,
    visitor_email,
    visitor_name,
)
from crmkit.auth import Principal, require
from crmkit.problems import NotFound, Problem, Unauthorized
from crmkit.ratelimit import TooManyRequests
from crmkit.web import state

router = APIRouter(prefix="/v1/chat", tags=["chat"])
router.include_router(socket_router)

Chat = Annotated[ChatService, Depends(state("chat", ChatService))]
AgentWriter = Annotated[Principal, Depends(require("interactions:write"))]
AgentReader = Annotated[Principal, Depends(require("interactions:read"))]
WidgetKey = Annotated[str, Path(min_length=1, max_length=64)]

_meter = metrics.get_meter("crm_ingest")
_identity_refused = _meter.create_counter(
    "crm.ingest.chat.identity.refused", unit="{request}",
    description="Chat sessions refused for their email_signature, by widget and reason: mismatch "
                "(not the email's signature with the widget's identity secret), no_secret (the "
                "widget has none), no_email (a signature without an email), bad_email")

MAX_WAIT_SECONDS = 25.0  # a long poll answers before the usual 30 s proxy timeout
_SMALL_BODY = 4096


# --- schemas ---

class SessionOut(BaseModel):
    visitor_id: str
    session_id: str
    token: str = Field(description="The visitor token: Authorization: Bearer on REST, ?token= on the socket")
    expires_at: datetime
    resumed: bool = Field(description="The visitor's earlier session, from the token sent")
    email_verified: bool = Field(description="The email is the website's signed one: the visitor's "
                                             "messages join the contact that owns it")
    max_message_bytes: int


class AckOut(BaseModel):
    type: str = "ack"
    client_id: str
    seq: int


class MessagesOut(BaseModel):
    messages: list[dict[str, Any]] = Field(description="Message frames after `after`, in seq order")
    events: list[dict[str, Any]] = Field(description="Typing and read frames from the agents")


class ReadIn(BaseModel):
    seq: int = Field(ge=0)


class SessionStateOut(BaseModel):
    session_id: str
    visitor_id: str
    widget: str
    name: str
    email: str = Field(description="As the visitor typed it (or the website gave it)")
    verified_email: str = Field(description="The email the website signed for the person, lower-cased; "
                                            "empty for an anonymous visitor")
    created_at: datetime
    last_seq: int
    visitor_read_seq: int
    agent_read_seq: int
    visitor_typing: bool
    visitor_typing_at: datetime | None


# --- public: a visitor's session and messages ---

def _client_ip(connection: Request) -> str:
    return connection.client.host if connection.client else "unknown"


def _limit(chat: ChatService, limit: Limit, key: str, detail: str) -> None:
    wait = chat.wait_time(limit, key)
    if wait > 0:
        raise TooManyRequests(wait, detail)


async def public(request: Request, widget: WidgetKey, chat: Chat) -> str:
    """A public chat request: the widget exists, the client IP is within its rate."""
    try:
        chat.widget(widget)
    except UnknownWidget as exc:
        raise NotFound("chat widget") from exc
    _limit(chat, "request", _client_ip(request), "too many chat requests from this address")
    return widget


Widget = Annotated[str, Depends(public)]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-chat-token")


async def visitor_session(request: Request, widget: Widget, chat: Chat) -> ChatSession:
    token = _bearer(request)
    if not token:
        raise Unauthorized("send the visitor token as Authorization: Bearer <token>")
    try:
        return await chat.authenticate(widget, token)
    except InvalidVisitorToken as exc:
        raise Unauthorized(str(exc)) from exc


Session = Annotated[ChatSession, Depends(visitor_session)]


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    body = await read_limited(request, limit)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Problem(422, "invalid-json", "Invalid JSON", "the body is not JSON") from exc
    if not isinstance(data, dict):
        raise Problem(422, "invalid-json", "Invalid JSON", "the body is not a JSON object")
    return data


def _invalid(exc: FrameError) -> Problem:
    if isinstance(exc, TooLarge):
        return Problem(413, "too-large", "Payload too large", exc.detail)
    return Problem(422, "invalid-chat-message", "Invalid chat message", exc.detail)


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/{widget}/sessions", response_model=SessionOut, status_code=201,
    summary="A visitor session: a new visitor, or the one of a still-valid token (200, resumed)",
    description="With `email_signature` (identity verification, see the README's \"Web chat\"), "
                "the email is verified: the visitor joins the contact that owns it. A token resumes "
                "only a session of the same verified email (or of none, without a signature); "
                "otherwise the answer is a new visitor's session.",
    responses={401: {"description": "A wrong email_signature, or one for a widget without an "
                                    "identity secret (invalid-identity-signature)"}},
    openapi_extra=_json_schema({"type": "object", "properties": {
        "token": {"type": "string"}, "name": {"type": "string"}, "email": {"type": "string"},
        "email_signature": {"type": "string", "description": "Hex HMAC-SHA256 of the trimmed, "
                            "lower-cased email, keyed with the widget's identity secret"}}}),
)
async def open_session(request: Request, response: Response, widget: Widget, chat: Chat) -> SessionOut:
    data = await _json_body(request, _SMALL_BODY)
    try:
        name, email = visitor_name(data.get("name")), visitor_email(data.get("email"))
        signature = _signature(data.get("email_signature"))
    except FrameError as exc:
        raise _invalid(exc) from exc
    verified = _verified(chat, widget, email, signature) if signature else ""
    token = data.get("token") if isinstance(data.get("token"), str) else _bearer(request)
    opened = await chat.resume(widget, token, name, email, verified) if token else None
    if opened is None:
        # Only a new visitor counts against the address's session rate.
        _limit(chat, "session", _client_ip(request), "too many new chat sessions from this address")
        opened = await chat.start(widget, name, email, verified)
    else:
        response.status_code = 200
    return SessionOut(visitor_id=opened.session.visitor_id, session_id=opened.session.id,
                      token=opened.token, expires_at=opened.expires_at, resumed=opened.resumed,
                      email_verified=bool(opened.session.verified_email),
                      max_message_bytes=chat.config.max_message_bytes)


def _signature(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 256:
        raise FrameError("invalid", "email_signature must be a hex string")
    return value.strip()


def _verified(chat: ChatService, widget: str, email: str, signature: str) -> str:
    """The email the website signed; a 401, counted, for a signature that does not prove it."""
    try:
        return chat.verify_email(widget, email, signature)
    except InvalidIdentitySignature as exc:
        _identity_refused.add(1, {"widget": widget, "reason": exc.reason})
        raise Problem(401, "invalid-identity-signature", "Invalid identity signature", exc.detail) from exc


@router.post(
    "/{widget}/messages", response_model=AckOut,
    summary="Send a visitor's message (REST fallback); the same client_id again stores nothing new",
    responses={503: {"description": "Stored, but not yet taken by the event stream: send it again"}},
    openapi_extra=_json_schema({"type": "object", "required": ["client_id", "text"], "properties": {
        "client_id": {"type": "string"}, "text": {"type": "string"}}}),
)
async def send_message(request: Request, session: Session, chat: Chat) -> AckOut:
    limit = chat.config.max_message_bytes
    data = await _json_body(request, frame_limit(limit))
    try:
        message = outgoing_message(data.get("client_id"), data.get("text"), limit)
    except FrameError as exc:
        raise _invalid(exc) from exc
    _limit(chat, "message", session.visitor_id, "too many messages: wait a moment")
    try:
        stored = await chat.send(session, message)
    except STORE_ERRORS as exc:
        raise Problem(503, "chat-unavailable", "Try again", "the message could not be taken now; "
                      "send it again with the same client_id", headers={"Retry-After": "2"}) from exc
    return AckOut(client_id=stored.client_id, seq=stored.seq)


@router.get("/{widget}/messages", response_model=MessagesOut,
            summary="The messages after a seq (both directions); with wait, a long poll")
async def poll_messages(
    request: Request, session: Session, chat: Chat,
    after: Annotated[int, Query(ge=0, lt=2**53)] = 0,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0,
) -> MessagesOut:
    with reading(chat, session, after) as reader:
        waiting = asyncio.create_task(reader.next(wait))
        left = asyncio.create_task(_disconnected(request))
        await asyncio.wait({waiting, left}, return_when=asyncio.FIRST_COMPLETED)
        left.cancel()
        if not waiting.done():  # the visitor went away: stop waiting for them
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            return MessagesOut(messages=[], events=[])
        try:
            frames = waiting.result()
        except NoSuchSession as exc:
            raise Unauthorized("the session is gone") from exc
    return MessagesOut(messages=[f for f in frames if f["type"] == "message"],
                       events=[f for f in frames if f["type"] != "message"])


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/{widget}/events", status_code=204,
    summary="A visitor's typing or read notice (REST fallback)",
    openapi_extra=_json_schema({"type": "object", "required": ["type"], "properties": {
        "type": {"enum": ["typing", "read"]}, "seq": {"type": "integer"}}}),
)
async def visitor_event(request: Request, session: Session, chat: Chat) -> Response:
    data = await _json_body(request, _SMALL_BODY)
    try:
        frame = parse_frame(json.dumps(data), chat.config.max_message_bytes)
    except FrameError as exc:
        raise _invalid(exc) from exc
    if isinstance(frame, SendMessage):
        raise Problem(422, "invalid-chat-message", "Invalid chat event", "send messages to /messages")
    if chat.wait_time("event", session.visitor_id) == 0:  # over the rate: dropped, not refused
        await chat.notice(session, frame)
    return Response(status_code=204)


# --- the agents' side ---

@router.get("/sessions/{session_id}", response_model=SessionStateOut,
            summary="A chat session's state: the visitor, read positions, whether they are typing")
async def session_state(session_id: Annotated[str, Path(max_length=64)], caller: AgentReader,
                        chat: Chat) -> SessionStateOut:
    try:
        session, found = await chat.session_state(caller.workspace_id, session_id)
    except NoSuchSession as exc:
        raise NotFound("chat session") from exc
    typing_at = found.visitor_typing_at
    return SessionStateOut(
        session_id=session.id, visitor_id=session.visitor_id, widget=session.widget, name=session.name,
        email=session.email, verified_email=session.verified_email, created_at=session.created_at,
        last_seq=found.last_seq,
        visitor_read_seq=found.visitor_read_seq, agent_read_seq=found.agent_read_seq,
        visitor_typing=still_typing(typing_at, chat.clock()),
        visitor_typing_at=typing_at)


@router.post("/sessions/{session_id}/typing", status_code=204,
             summary="An agent is typing: the visitor's widget shows it for a few seconds")
async def agent_typing(session_id: Annotated[str, Path(max_length=64)], caller: AgentWriter,
                       chat: Chat) -> Response:
    try:
        await chat.agent_typing(caller.workspace_id, session_id)
    except NoSuchSession as exc:
        raise NotFound("chat session") from exc
    return Response(status_code=204)


@router.post("/sessions/{session_id}/read", status_code=204,
             summary="The agents read the visitor's messages up to seq")
async def agent_read(session_id: Annotated[str, Path(max_length=64)], body: ReadIn, caller: AgentWriter,
                     chat: Chat) -> Response:
    try:
        await chat.agent_read(caller.workspace_id, session_id, body.seq)
    except NoSuchSession as exc:
        raise NotFound("chat session") from exc
    return Response(status_code=204)

