"""The pull API's use case: a workspace's public events after a cursor, waiting for new ones.

A cursor is the opaque form of the last ``seq`` a caller has: seq order is commit order within
a workspace (the feed lock), so reading ``seq > cursor`` never skips an event committed late.
A long poll is woken at once by the projection of this process (``notify``) and otherwise
looks again every ``poll_seconds``, for events another replica stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from crm_partners.domain.model import PublicEvent
from crm_partners.store.events import EventsStore
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase

_CURSOR_KIND = "feed"
MAX_LIMIT = 500
MAX_WAIT_SECONDS = 30.0


def encode(seq: int) -> str:
    return encode_cursor(_CURSOR_KIND, [seq])


def decode(cursor: str | None) -> int:
    """The seq a cursor names (0, the start of the feed, for none); InvalidCursor when forged."""
    if cursor is None:
        return 0
    (seq,) = decode_cursor(_CURSOR_KIND, cursor, 1)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise InvalidCursor()
    return seq


@dataclass(frozen=True)
class Page:
    events: list[PublicEvent]
    next_cursor: str


class Feed:
    def __init__(self, db: PgDatabase, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """New events were committed in this process: wake the long polls."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def visible_types(self, workspace_id: str, partner_id: str | None, types: Sequence[str] | None
                            ) -> list[str] | None:
        """What a caller may read: a workspace user every type (or the ones asked for); a
        partner the types of its enabled subscriptions, narrowed by the ones asked for."""
        if partner_id is None:
            return list(types) if types else None
        allowed = await EventsStore(self.db.pool).partner_types(workspace_id, partner_id)
        return [t for t in allowed if not types or t in types]

    async def page(self, workspace_id: str, partner_id: str | None, after: int, types: Sequence[str] | None,
                   limit: int, wait: float = 0.0) -> Page:
        """Up to ``limit`` events after the cursor; with none yet, wait up to ``wait`` seconds
        for one. ``next_cursor`` is where to go on from (the same cursor when nothing came)."""
        visible = await self.visible_types(workspace_id, partner_id, types)
        store = EventsStore(self.db.pool)
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_SECONDS)
        while True:
            changed = self._changed
            events = [] if visible == [] else await store.page(workspace_id, after, visible,
                                                              min(limit, MAX_LIMIT))
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return Page(events, encode(events[-1].seq if events and events[-1].seq else after))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, self.poll_seconds))
