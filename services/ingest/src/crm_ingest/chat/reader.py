"""What one socket or long poll sends a visitor: every message after the seq it resumes from,
once and in order, then each new one, and the agents' typing and read notices.

Every message frame comes from the transcript, read after the last seq sent (the hub only
says when to look). Besides the hub's signal, the reader polls its session's state each
poll interval: a reply stored by another replica shows there as a higher ``last_seq``, and an
agent's typing or read notice as a newer time or seq.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from crm_ingest.chat.hub import Subscription
from crm_ingest.chat.service import ChatService, NoSuchSession
from crm_ingest.domain.chat import (
    ChatSession,
    Frame,
    message_frame,
    read_frame,
    still_typing,
    typing_frame,
)

PAGE = 200


class Reader:
    def __init__(self, chat: ChatService, session: ChatSession, after: int,
                 subscription: Subscription) -> None:
        self.chat = chat
        self.session = session
        self.cursor = after  # the last seq sent
        self._subscription = subscription
        self._more = True  # read the transcript at once: the backlog after ``after``
        self._next_poll = 0.0
        self._typing_seen: datetime | None = None
        self._read_sent = 0

    async def next(self, timeout: float) -> list[Frame]:
        """The next frames to send, as soon as there are some; [] after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            frames = await self._collect()
            now = time.monotonic()
            if frames or now >= deadline:
                return frames
            if self._more:
                continue
            await self._subscription.wait(max(0.0, min(deadline, self._next_poll) - now))

    async def _collect(self) -> list[Frame]:
        changed, events = self._subscription.take()
        frames = [event for event in events if event.get("from") == "agent"]
        for event in frames:
            if event["type"] == "typing":
                self._typing_seen = self.chat.clock()
            else:
                self._read_sent = max(self._read_sent, event["seq"])
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.chat.config.poll_seconds
            state = await self.chat.store.state(self.session.workspace_id, self.session.id)
            if state is None:
                raise NoSuchSession(self.session.id)
            changed = changed or state.last_seq > self.cursor
            typed = state.agent_typing_at
            if typed is not None and (self._typing_seen is None or typed > self._typing_seen) \
                    and still_typing(typed, self.chat.clock()):
                self._typing_seen = typed
                frames.append(typing_frame("agent"))
            if state.agent_read_seq > self._read_sent:
                self._read_sent = state.agent_read_seq
                frames.append(read_frame("agent", state.agent_read_seq))
        if changed or self._more:
            messages = await self.chat.messages_after(self.session, self.cursor, PAGE)
            self._more = len(messages) == PAGE
            if messages:
                self.cursor = messages[-1].seq
            frames.extend(message_frame(m) for m in messages)
        return frames


@contextmanager
def reading(chat: ChatService, session: ChatSession, after: int) -> Iterator[Reader]:
    with chat.hub.subscribe(session.id) as subscription:
        yield Reader(chat, session, after, subscription)
