"""What every signed webhook adapter (Messenger, Instagram, Telegram, SMS, commerce) does with
an authentic request: take a token of its account's rate limit, append its records to the raw
topic in the workspace the account is mapped to, and dead-letter those for an account no
workspace is mapped to, at once, with the reason. And the counts of what was refused."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import metrics

from crm_ingest.channel_config import ChannelAccount
from crm_ingest.wire import raw_received
from crmkit.kafka import Event, Producer
from crmkit.problems import Problem
from crmkit.ratelimit import RateLimiter, TooManyRequests

log = logging.getLogger(__name__)
_meter = metrics.get_meter("crm_ingest")
_refused = _meter.create_counter(
    "crm.ingest.webhook.refused", unit="{request}",
    description="Webhook requests refused before anything was appended, by channel and reason: "
                "signature (missing or forged), stale (a signed time too far from now), "
                "unknown_account, throttled (over the account's rate)")
_unrouted = _meter.create_counter(
    "crm.ingest.webhook.unrouted", unit="{record}",
    description="Webhook records for an account no workspace is mapped to (dead-lettered at the "
                "endpoint), by channel")


@dataclass(frozen=True)
class RawItem:
    """One record of a request, before it is routed."""

    account: str  # the provider account it is for (Page, Instagram account, bot, number, store)
    sender: str  # the person it is from or about, for the partition key ("" when unknown)
    payload: bytes


@dataclass(frozen=True)
class Routed:
    ids: tuple[str, ...]  # the raw ids of the records appended to the raw topic
    dead_lettered: int  # for an account no workspace is mapped to

    @property
    def accepted(self) -> int:
        return len(self.ids)


class WebhookIntake:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        # One bucket per account, with the account's own rate; made when first needed.
        self._limiters: dict[tuple[str, str], RateLimiter] = {}

    def refused(self, channel: str, reason: str, detail: str) -> Problem:
        """The 401 for a request that is not authentic, counted by channel and reason."""
        _refused.add(1, {"channel": channel, "reason": reason})
        if reason == "stale":
            return Problem(401, "stale-signature", "Stale signature", detail)
        return Problem(401, "invalid-signature", "Invalid signature", detail)

    def unknown(self, channel: str, what: str) -> Problem:
        """The 404 for a request to an account that is not configured, counted."""
        _refused.add(1, {"channel": channel, "reason": "unknown_account"})
        return Problem(404, "not-found", "Not found", f"no such {what}")

    def throttle(self, channel: str, accounts: Mapping[str, ChannelAccount], keys: Iterable[str]) -> None:
        """Take one token from each mapped account's bucket; TooManyRequests (429 with
        Retry-After) when one is empty. Records for unmapped accounts are not limited: they
        are only dead-lettered."""
        for key in sorted(set(keys)):
            account = accounts.get(key)
            if account is None:
                continue
            limiter = self._limiters.get((channel, key))
            if limiter is None or (limiter.rate, limiter.burst) != (account.rate_per_second, account.burst):
                limiter = RateLimiter(account.rate_per_second, account.burst, max_keys=1)
                self._limiters[channel, key] = limiter
            wait = limiter.wait_time(key)
            if wait > 0:
                _refused.add(1, {"channel": channel, "reason": "throttled"})
                raise TooManyRequests(wait, f"more requests for this {channel} account than it may send")

    async def accept(self, channel: str, source: str, content_type: str,
                     accounts: Mapping[str, ChannelAccount], items: Sequence[RawItem],
                     what: str) -> Routed:
        """Append each record to the raw topic in the workspace its account is mapped to, and
        return once the broker has them all. One for an account no workspace is mapped to
        goes to the raw topic's dead-letter topic instead, with the reason ("no workspace for
        <what> <account>"): kept, never dropped, and not refused, as a retry could not fix it."""
        routed: list[Event] = []
        unrouted: list[tuple[str, Event]] = []
        for item in items:
            account = accounts.get(item.account)
            event = raw_received(account.workspace_id if account else "", channel, source, content_type,
                                 item.payload, item.sender or None)
            if account is None:
                unrouted.append((item.account, event))
            else:
                routed.append(event)
        await self.producer.publish(routed)
        await asyncio.gather(*(self.producer.dead_letter(event, f"no workspace for {what} {key}",
                                                         source=source)
                               for key, event in unrouted))
        if unrouted:
            _unrouted.add(len(unrouted), {"channel": channel})
            log.warning("webhook records for unmapped accounts dead-lettered",
                        extra={"channel": channel, "accounts": sorted({key for key, _ in unrouted}),
                               "records": len(unrouted)})
        return Routed(tuple(event.envelope.id for event in routed), len(unrouted))
