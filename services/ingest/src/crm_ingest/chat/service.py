"""The web chat's use cases: visitor sessions, a visitor's messages (the transcript, then the
raw topic), agents' replies, typing and read events, and the rate limits of the public side."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from crm_ingest.chat.config import ChatConfig, ChatWidget
from crm_ingest.chat.hub import ChatHub
from crm_ingest.domain.chat import (
    CHANNEL,
    CONTENT_TYPE,
    SOURCE,
    ChatMessage,
    ChatSession,
    InvalidVisitorToken,
    Read,
    SendMessage,
    SessionState,
    Typing,
    Visitor,
    issue_visitor_token,
    origin_allowed,
    raw_payload,
    read_frame,
    read_visitor_token,
    typing_frame,
    verified_visitor_email,
)
from crm_ingest.service import IngestService
from crm_ingest.store.chat import ChatStore
from crmkit.ids import uuid7
from crmkit.ratelimit import RateLimiter

log = logging.getLogger(__name__)

Limit = Literal["session", "message", "request", "event"]
# A visitor's message the raw topic did not take (and nobody retried) is sent again after this.
RESEND_AFTER = timedelta(seconds=30)
_SWEEP_SECONDS = 15.0


class UnknownWidget(Exception):
    """No widget has this key."""


class NoSuchSession(Exception):
    """No chat session with this id (and visitor) in the workspace."""


class ChatUnavailable(Exception):
    """The message is in the transcript but the raw topic did not take it: the visitor sends
    it again with the same client id, which stores nothing twice."""


@dataclass(frozen=True)
class OpenedSession:
    session: ChatSession
    token: str
    expires_at: datetime
    resumed: bool  # the visitor's earlier session, from a still-valid token


def _now() -> datetime:
    now = datetime.now(UTC)  # MongoDB keeps milliseconds: so does every time the chat shows
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class ChatService:
    def __init__(self, store: ChatStore, hub: ChatHub, ingest: IngestService, config: ChatConfig,
                 clock: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.hub = hub
        self.ingest = ingest
        self.config = config
        self.clock = clock
        limits = config.limits
        self.limiters: dict[Limit, RateLimiter] = {
            "session": RateLimiter(limits.sessions_per_ip / 60, limits.sessions_per_ip),
            "message": RateLimiter(limits.messages_per_visitor / 60, limits.messages_per_visitor),
            "request": RateLimiter(limits.requests_per_ip / 60, limits.requests_per_ip),
            # Typing and read notices: the widget sends one every few seconds at most.
            "event": RateLimiter(1.0, 10),
        }

    # --- the public side: widgets, origins, rates ---

    def widget(self, key: str) -> ChatWidget:
        widget = self.config.widgets.get(key)
        if widget is None or not self.config.secret:
            raise UnknownWidget(key)
        return widget

    def origin_allowed(self, widget: ChatWidget, origin: str | None) -> bool:
        return origin_allowed(origin, frozenset(widget.allowed_origins),
                              allow_loopback=self.config.allow_loopback_origins)

    def verify_email(self, widget_key: str, email: str, signature: str) -> str:
        """The email a widget's website signed for a logged-in person, as it is stored;
        InvalidIdentitySignature for a wrong signature, or a widget without an identity secret."""
        return verified_visitor_email(self.widget(widget_key).identity_key(), email, signature)

    def wait_time(self, limit: Limit, key: str) -> float:
        """Take one of ``limit``'s tokens for ``key`` (a client IP or a visitor id): 0.0 when
        there was one, else the seconds to wait."""
        return self.limiters[limit].wait_time(f"{limit}:{key}")

    # --- sessions ---

    async def start(self, widget_key: str, name: str = "", email: str = "",
                    verified_email: str = "") -> OpenedSession:
        """A new visitor in a new session, and their token. With a verified email (see
        verify_email), the visitor's messages join the contact that owns that email."""
        widget = self.widget(widget_key)
        session = ChatSession(id=str(uuid7()), workspace_id=widget.workspace_id, widget=widget_key,
                              visitor_id=str(uuid7()), name=name, email=email, created_at=self.clock(),
                              verified_email=verified_email)
        await self.store.create_session(session)
        return self._opened(session, resumed=False)

    async def resume(self, widget_key: str, token: str, name: str = "", email: str = "",
                     verified_email: str = "") -> OpenedSession | None:
        """The session of a still-valid token with a fresh token (a visitor coming back resumes
        their conversation); None for a token that is not, or no longer, valid, and for one of
        a session of another identity: a verified session resumes only with the same verified
        email, an anonymous one only without any. Someone else (or nobody) is logged in on that
        browser now, and a session never moves from one person to another: the caller starts a
        new visitor, whose contact is found afresh."""
        try:
            session = await self.authenticate(widget_key, token)
        except InvalidVisitorToken:
            return None
        if session.verified_email != verified_email:
            return None
        if name or email:
            await self.store.update_visitor(session.workspace_id, session.id, name, email)
            session = replace(session, name=name or session.name, email=email or session.email)
        return self._opened(session, resumed=True)

    def _opened(self, session: ChatSession, *, resumed: bool) -> OpenedSession:
        visitor = Visitor(session.workspace_id, session.widget, session.visitor_id, session.id)
        signed, expires_at = issue_visitor_token(self.config.secret, visitor, self.clock(),
                                                 timedelta(seconds=self.config.token_ttl_seconds))
        return OpenedSession(session, signed, expires_at, resumed)

    async def authenticate(self, widget_key: str, token: str) -> ChatSession:
        """The session a visitor token of this widget is for; InvalidVisitorToken when there is
        none (a bad or expired token, a widget moved to another workspace, a deleted session)."""
        widget = self.widget(widget_key)
        visitor = read_visitor_token(self.config.secret, token, widget_key)
        if visitor.workspace_id != widget.workspace_id:
            raise InvalidVisitorToken("the widget's workspace changed")
        session = await self.store.session(visitor.workspace_id, visitor.session_id)
        if session is None or session.visitor_id != visitor.visitor_id:
            raise InvalidVisitorToken("no such session")
        return session

    # --- the visitor's side ---

    async def send(self, session: ChatSession, message: SendMessage) -> ChatMessage:
        """Store a visitor's message in the transcript, then append it to the raw topic (the
        worker makes it an interaction), and only then answer. The same client id sent again
        finds the stored message and appends it again only if the raw topic never took it."""
        stored, new = await self.store.append(session, "inbound", message.text, self.clock(),
                                              client_id=message.client_id)
        self.hub.stored(session.id)
        if new or not await self.store.is_accepted(session, stored.seq):
            await self._accept(session, stored)
        return stored

    async def _accept(self, session: ChatSession, message: ChatMessage) -> None:
        try:
            await self.ingest.accept(session.workspace_id, CHANNEL, SOURCE, CONTENT_TYPE,
                                     raw_payload(session, message), sender=session.visitor_id)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("a chat message waits for the event stream", extra={"error": type(exc).__name__})
            raise ChatUnavailable(str(exc)) from exc
        await self.store.mark_accepted(session, message.seq)

    async def messages_after(self, session: ChatSession, after: int, limit: int) -> list[ChatMessage]:
        return await self.store.messages_after(session.workspace_id, session.id, after, limit)

    async def visitor_typing(self, session: ChatSession) -> None:
        """Kept on the session for the agents' side (no event on Kafka: far too chatty)."""
        await self.store.mark_typing(session.workspace_id, session.id, "visitor", self.clock())
        self.hub.publish(session.id, typing_frame("visitor"))

    async def visitor_read(self, session: ChatSession, seq: int) -> None:
        await self.store.mark_read(session.workspace_id, session.id, "visitor", seq)
        self.hub.publish(session.id, read_frame("visitor", seq))

    async def notice(self, session: ChatSession, frame: Typing | Read) -> None:
        """A visitor's typing or read notice."""
        if isinstance(frame, Typing):
            await self.visitor_typing(session)
        else:
            await self.visitor_read(session, frame.seq)

    # --- the agents' side ---

    async def session_state(self, workspace_id: str, session_id: str) -> tuple[ChatSession, SessionState]:
        session = await self.store.session(workspace_id, session_id)
        found = await self.store.state(workspace_id, session_id) if session else None
        if session is None or found is None:
            raise NoSuchSession(session_id)
        return session, found

    async def reply(self, workspace_id: str, visitor_id: str, session_id: str, text: str,
                    outbound_id: str) -> ChatMessage:
        """An agent's reply into the visitor's transcript (their latest session when no session
        is named), once per outbound id; the visitor's open sockets get it at once on this
        replica, within a poll interval on the others, and on their next visit otherwise."""
        session = (await self.store.session(workspace_id, session_id) if session_id
                   else await self.store.latest_session_of(workspace_id, visitor_id))
        if session is None or session.visitor_id != visitor_id:
            raise NoSuchSession(session_id)
        stored, _ = await self.store.append(session, "outbound", text, self.clock(), outbound_id=outbound_id)
        self.hub.stored(session.id)
        return stored

    async def agent_typing(self, workspace_id: str, session_id: str) -> None:
        if not await self.store.mark_typing(workspace_id, session_id, "agent", self.clock()):
            raise NoSuchSession(session_id)
        self.hub.publish(session_id, typing_frame("agent"))

    async def agent_read(self, workspace_id: str, session_id: str, seq: int) -> None:
        if not await self.store.mark_read(workspace_id, session_id, "agent", seq):
            raise NoSuchSession(session_id)
        self.hub.publish(session_id, read_frame("agent", seq))

    # --- the safety net ---

    async def resend_unaccepted(self) -> int:
        """Append to the raw topic the visitor messages stored a while ago that it never took
        (the broker was down and the visitor left before retrying). Several replicas may send
        the same one: the worker stores one interaction per message id."""
        sent = 0
        for message, session in await self.store.unaccepted(self.clock() - RESEND_AFTER, limit=100):
            await self._accept(session, message)
            sent += 1
        return sent

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ChatService]:
        """Keeps resend_unaccepted going in the background while the service runs."""
        task = asyncio.create_task(self._sweep(), name="chat resend")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            try:
                sent = await self.resend_unaccepted()
            except (ChatUnavailable, PyMongoError) as exc:
                log.warning("chat messages not resent yet", extra={"error": type(exc).__name__})
                continue
            except Exception:  # never let the sweep die: the next round tries again
                log.exception("the chat resend sweep failed; trying again next round")
                continue
            if sent:
                log.info("chat messages resent to the event stream", extra={"messages": sent})
