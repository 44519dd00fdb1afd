"""The web chat's WebSocket: one visitor session's frames both ways.

Visitor -> server: ``message`` (client_id, text), ``typing``, ``read`` (seq). Server ->
visitor: ``message`` (seq, direction, text, at, client_id for the visitor's own), ``ack``
(client_id, seq), the agents' ``typing`` and ``read``, and ``error`` (code, detail; client_id
and retry_after where they apply). On connect the server first sends every message after
``?after=``, then live ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pymongo.errors import PyMongoError
from starlette.types import Message

from crm_ingest.chat.reader import Reader, reading
from crm_ingest.chat.service import ChatService, ChatUnavailable, NoSuchSession, UnknownWidget
from crm_ingest.domain.chat import (
    ChatSession,
    Frame,
    FrameError,
    InvalidVisitorToken,
    SendMessage,
    TooLarge,
    ack_frame,
    error_frame,
    parse_frame,
    read_seq,
)
from crm_ingest.store.chat import TranscriptContention

socket_router = APIRouter(tags=["chat"])

# Close codes: the widget starts a new session on 4401 and 4404, and waits on 4429.
CLOSE_BAD_TOKEN, CLOSE_GONE, CLOSE_RATE_LIMITED, CLOSE_TOO_BIG = 4401, 4404, 4429, 1009
STORE_ERRORS = (ChatUnavailable, PyMongoError, TranscriptContention)
# With nothing to send, the pump still wakes this often (it polls more often than this anyway).
_IDLE_SECONDS = 30.0


@dataclass
class _Socket:
    """Frames out of one socket, one at a time, and its close."""

    websocket: WebSocket
    lock: asyncio.Lock
    closed: bool = False

    async def send(self, frame: Frame) -> None:
        async with self.lock:
            if self.closed:
                return
            try:
                await self.websocket.send_text(json.dumps(frame, ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True  # the visitor left

    async def close(self, code: int, reason: str = "") -> None:
        async with self.lock:
            if not self.closed:
                self.closed = True
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await self.websocket.close(code, reason)


@socket_router.websocket("/{widget}/ws")
async def chat_socket(websocket: WebSocket, widget: str) -> None:
    """Frames both ways (see the README's "Web chat"). The handshake is refused for an unknown
    widget or another site's page; a bad token closes with 4401, a rate with 4429, a message
    over the size limit with 1009."""
    chat = websocket.app.state.chat
    assert isinstance(chat, ChatService)
    try:
        config = chat.widget(widget)
    except UnknownWidget:
        await websocket.close(1008)
        return
    if not chat.origin_allowed(config, websocket.headers.get("origin")):
        await websocket.close(1008)
        return
    socket = _Socket(websocket, asyncio.Lock())
    await websocket.accept()
    wait = chat.wait_time("request", websocket.client.host if websocket.client else "unknown")
    if wait > 0:
        await _refuse(socket, CLOSE_RATE_LIMITED, error_frame(
            "rate_limited", "too many connections from this address", retry_after=math.ceil(wait)))
        return
    try:
        session = await chat.authenticate(widget, websocket.query_params.get("token", ""))
        after = read_seq(int(websocket.query_params.get("after", "0") or 0))
    except InvalidVisitorToken as exc:
        await _refuse(socket, CLOSE_BAD_TOKEN, error_frame("bad_token", str(exc)))
        return
    except (ValueError, FrameError):
        await _refuse(socket, 1008, error_frame("invalid", "after must be a non-negative integer"))
        return
    with reading(chat, session, after) as reader:
        pump = asyncio.create_task(_pump(socket, reader))
        try:
            await _receive(socket, chat, session)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await socket.close(1000)


async def _refuse(socket: _Socket, code: int, frame: Frame) -> None:
    await socket.send(frame)
    await socket.close(code, frame["code"])


async def _pump(socket: _Socket, reader: Reader) -> None:
    """The backlog after the resume point, then every new message and agent notice."""
    try:
        while not socket.closed:
            for frame in await reader.next(_IDLE_SECONDS):
                await socket.send(frame)
    except NoSuchSession:
        await _refuse(socket, CLOSE_GONE, error_frame("gone", "the session is gone"))
    except PyMongoError:
        await socket.close(1011, "try again")


async def _receive(socket: _Socket, chat: ChatService, session: ChatSession) -> None:
    limit = chat.config.max_message_bytes
    while not socket.closed:
        message: Message = await socket.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text") or message.get("bytes") or b""
        try:
            frame = parse_frame(raw, limit)
        except TooLarge as exc:
            await _refuse(socket, CLOSE_TOO_BIG, error_frame(exc.code, exc.detail))
            return
        except FrameError as exc:
            await socket.send(error_frame(exc.code, exc.detail))
            continue
        if not isinstance(frame, SendMessage):
            if chat.wait_time("event", session.visitor_id) == 0:  # over the rate: dropped
                with contextlib.suppress(PyMongoError):
                    await chat.notice(session, frame)
            continue
        wait = chat.wait_time("message", session.visitor_id)
        if wait > 0:
            await _refuse(socket, CLOSE_RATE_LIMITED, error_frame(
                "rate_limited", "too many messages: wait a moment", client_id=frame.client_id,
                retry_after=math.ceil(wait)))
            return
        try:
            stored = await chat.send(session, frame)
        except STORE_ERRORS:
            await socket.send(error_frame("unavailable", "not taken now: send it again",
                                          client_id=frame.client_id, retry_after=2))
            continue
        await socket.send(ack_frame(stored))
