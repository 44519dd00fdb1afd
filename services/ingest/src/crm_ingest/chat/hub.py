"""The in-process fan-out to a session's open sockets and long polls.

The hub carries no messages: the transcript in MongoDB is the only record of them. It rings a
session's readers when this process stored a message for it (they then read the transcript
after the last seq they sent), and it carries the short-lived events nobody stores as such
(typing, read). Readers also poll the session every few moments for what another replica
wrote, so a visitor never depends on being connected to the replica that took a reply.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from crm_ingest.domain.chat import Frame

# Events kept for a reader that has not taken them yet; older ones are dropped (they are
# typing and read notices, which the next one replaces).
_MAX_PENDING = 32


class Subscription:
    """One reader of a session: a socket or a long poll."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._changed = False
        self._events: deque[Frame] = deque(maxlen=_MAX_PENDING)

    async def wait(self, timeout: float) -> bool:
        """Until something is there for this reader, or ``timeout``: False when nothing came."""
        if not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return False
        return True

    def take(self) -> tuple[bool, list[Frame]]:
        """Whether new messages were stored since the last call, and the events that came."""
        changed, events = self._changed, list(self._events)
        self._changed = False
        self._events.clear()
        self._wake.clear()
        return changed, events

    def _ring(self, event: Frame | None) -> None:
        if event is None:
            self._changed = True
        else:
            self._events.append(event)
        self._wake.set()


class ChatHub:
    def __init__(self) -> None:
        self._readers: dict[str, set[Subscription]] = {}

    @contextmanager
    def subscribe(self, session_id: str) -> Iterator[Subscription]:
        subscription = Subscription()
        self._readers.setdefault(session_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            readers = self._readers.get(session_id)
            if readers is not None:
                readers.discard(subscription)
                if not readers:
                    del self._readers[session_id]

    def stored(self, session_id: str) -> None:
        """A message of the session is in the transcript."""
        for reader in self._readers.get(session_id, ()):
            reader._ring(None)

    def publish(self, session_id: str, event: Frame, *, exclude: Subscription | None = None) -> None:
        """A typing or read event, to the session's readers but ``exclude`` (its sender)."""
        for reader in self._readers.get(session_id, ()):
            if reader is not exclude:
                reader._ring(event)

    def readers(self, session_id: str) -> int:
        return len(self._readers.get(session_id, ()))
