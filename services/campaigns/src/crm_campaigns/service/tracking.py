"""Opens, clicks, unsubscribes and conversions: the use cases behind the public tracking
endpoints and the conversion consumers. Each hit is one unit of work: the send's counters,
the raw engagement and the event, together."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pymongo.errors import PyMongoError

from crm.campaigns.v1 import events_pb2
from crm_campaigns.domain import events
from crm_campaigns.domain.reports import Conversion, attribution_window
from crm_campaigns.domain.tracking import Kind, Token, bot_reason, verify
from crm_campaigns.store import sends as send_store
from crm_campaigns.store import tracking as store
from crmkit.kafka import Delivered, Event, make_event
from crmkit.mongo import MongoDatabase, MongoUnitOfWork
from crmkit.topics import CAMPAIGNS

_CONSUMER = "campaigns.conversions"
_ATTEMPTS = 5
T = TypeVar("T")


async def _retrying(work: Callable[[], Awaitable[T]]) -> T:
    """Run one unit of work again when it lost a write conflict (two hits on one send at once)."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return await work()
        except PyMongoError as exc:
            if attempt == _ATTEMPTS or not exc.has_error_label("TransientTransactionError"):
                raise
            await asyncio.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 (jitter, not security)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class TrackingConfig:
    secret: str
    bot_open_seconds: float = 2.0
    conversion_window_days: int = 7


def _event(type_: str, workspace_id: str, contact_id: str, payload: Any) -> Event:
    return make_event(topic=CAMPAIGNS, type=type_, source=events.TRACKING_SOURCE, workspace=workspace_id,
                      subject=contact_id, payload=payload)


def _stamp(message: Any, at: datetime) -> Any:
    message.at.FromDatetime(at)
    return message


async def unsubscribe_send(uow: MongoUnitOfWork, send: store.Document, method: str, reason: str,
                           at: datetime) -> bool:
    """The send's recipient unsubscribed, by ``method`` (one_click, unsubscribe_link, or
    complaint: they reported the message as spam): the send is marked, the address suppressed
    for ``reason``, and RecipientUnsubscribed published, so that contacts withdraws their
    marketing consent. Once per send: False when it was unsubscribed before."""
    if not await store.mark_unsubscribed(uow, send, at, method):
        return False
    workspace_id, contact_id = send["workspace_id"], send.get("contact_id", "")
    if send.get("address"):
        await send_store.suppress(uow, workspace_id, send["address"], reason, at)
    uow.add(_event(events.RECIPIENT_UNSUBSCRIBED, workspace_id, contact_id, _stamp(
        events_pb2.RecipientUnsubscribed(workspace_id=workspace_id, contact_id=contact_id, channel="email",
                                         purpose="marketing", campaign_id=send.get("campaign_id", ""),
                                         method=method),
        at)))
    return True


class TrackingService:
    def __init__(self, database: MongoDatabase, config: TrackingConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.database = database
        self.config = config
        self.clock = clock

    def token(self, value: str, kind: Kind) -> Token | None:
        return verify(value, secret=self.config.secret, kind=kind)

    async def opened(self, value: str, *, user_agent: str, method: str = "GET") -> bool:
        """Record an open when the token is ours; False (nothing recorded) otherwise."""
        token = self.token(value, "o")
        if token is None:
            return False
        await self._hit(token, "open", user_agent=user_agent, method=method)
        return True

    async def clicked(self, value: str, *, user_agent: str, method: str = "GET") -> str | None:
        """The target to redirect to, or None for a token that is not ours (no redirect)."""
        token = self.token(value, "c")
        if token is None or not token.target.startswith(("http://", "https://")):
            return None
        await self._hit(token, "click", user_agent=user_agent, method=method)
        return token.target

    async def _hit(self, token: Token, kind: str, *, user_agent: str, method: str) -> None:
        now = self.clock()
        await _retrying(lambda: self._record_hit(token, kind, user_agent=user_agent, method=method, now=now))

    async def _record_hit(self, token: Token, kind: str, *, user_agent: str, method: str,
                          now: datetime) -> None:
        async with self.database.unit_of_work() as uow:
            send = await store.find_send(uow, token.workspace_id, token.send_id)
            if send is None:
                return  # a send erased since, or never ours to count
            sent_at = send.get("sent_at") or send.get("created_at")
            bot = bot_reason(user_agent=user_agent, method=method, sent_at=sent_at, now=now,
                             min_seconds=self.config.bot_open_seconds)
            await store.record_hit(uow, send, kind, now, bot, token.target)
            if bot:
                return
            contact_id = send.get("contact_id", "")
            if kind == "open":
                uow.add(_event(events.MESSAGE_OPENED, token.workspace_id, contact_id, _stamp(
                    events_pb2.MessageOpened(workspace_id=token.workspace_id, contact_id=contact_id,
                                             campaign_id=send.get("campaign_id", ""),
                                             message_id=token.send_id), now)))
            else:
                uow.add(_event(events.MESSAGE_CLICKED, token.workspace_id, contact_id, _stamp(
                    events_pb2.MessageClicked(workspace_id=token.workspace_id, contact_id=contact_id,
                                              campaign_id=send.get("campaign_id", ""),
                                              message_id=token.send_id, url=token.target), now)))

    async def unsubscribe(self, value: str, method: str) -> bool:
        """Unsubscribe the send's recipient (``method`` one_click or unsubscribe_link): the
        send is marked, the address suppressed and RecipientUnsubscribed published, once.
        False for a token that is not ours."""
        token = self.token(value, "u")
        if token is None:
            return False
        now = self.clock()
        await _retrying(lambda: self._unsubscribe(token, method, now))
        return True

    async def _unsubscribe(self, token: Token, method: str, now: datetime) -> None:
        async with self.database.unit_of_work() as uow:
            send = await store.find_send(uow, token.workspace_id, token.send_id)
            if send is None:
                return  # signed by us but gone (erased): nothing left to unsubscribe
            await unsubscribe_send(uow, send, method, "unsubscribed", now)

    async def attribute(self, items: list[Delivered[Conversion | None]]) -> None:
        """Attribute deals won and orders to the contact's last human click within the window."""
        found = [d for d in items if d.item is not None]
        if not found:
            return
        async with self.database.unit_of_work() as uow:
            fresh = await uow.claim_many(_CONSUMER, [d.event_id for d in found])
            for delivered in found:
                conversion = delivered.item
                if delivered.event_id not in fresh or conversion is None or not conversion.contact_id:
                    continue
                since, until = attribution_window(conversion.at, self.config.conversion_window_days)
                click = await store.last_click(uow, delivered.workspace_id, conversion.contact_id,
                                               until, since)
                if click is None:
                    continue
                await store.add_conversion(uow, {
                    "_id": f"{delivered.workspace_id}:{conversion.source}:{conversion.reference}",
                    "workspace_id": delivered.workspace_id, "campaign_id": click["campaign_id"],
                    "variant": click.get("variant", ""), "send_id": click["send_id"],
                    "contact_id": conversion.contact_id, "source": conversion.source,
                    "reference": conversion.reference, "amount_minor": conversion.amount_minor,
                    "currency": conversion.currency, "at": conversion.at, "clicked_at": click["at"],
                    "lag_seconds": int((conversion.at - click["at"]) / timedelta(seconds=1)),
                })
