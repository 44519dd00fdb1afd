"""The outbound worker: delivers each OutboundMessage from crm.outbound.v1 on its channel,
records it, and reports the outcome.

For each request, in the topic's order:

1. A request id already sent or failed in the workspace is not sent again.
2. The attempt is counted; the channel's Delivery sends it (no Delivery for the channel is a
   permanent failure).
3. Sent: one transaction stores the outbound interaction, marks the request sent, and writes
   InteractionRecorded and DeliveryUpdated(sent) to the outbox.
4. Refused for good: one transaction marks it failed and writes DeliveryUpdated(failed); then
   PermanentError, and the consumer dead-letters the record to crm.outbound.v1.dlq.
5. A transient failure (no connection, a timeout, a provider's 429/5xx, an SMTP 4xx): noted,
   then TransientError, and the consumer retries with backoff, for at most ``give_up_after``
   since the first attempt; then it fails for good as in 4.

Delivery is at-least-once: a crash (or a timeout) after the provider took a message and
before step 3 committed sends it again when the record comes back. An email keeps its
Message-ID (derived from the request id), so the person's mail client shows it once and it
is stored as the same interaction; the HTTP providers have no idempotency key, so the person
may get such a message twice (it is still stored once, under the request id).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from opentelemetry import metrics

from crm_ingest.domain.email_html import sanitise_html
from crm_ingest.domain.interaction import outbound_interaction
from crm_ingest.outbound.base import Delivery, DeliveryFailed, OutboundRequest, Sent
from crm_ingest.outbound.email import EmailDelivery, SmtpRelay
from crm_ingest.outbound.providers import MetaSendDelivery, SmsDelivery, TelegramDelivery, WhatsAppDelivery
from crm_ingest.settings import Settings
from crm_ingest.store.interactions import InteractionsStore
from crm_ingest.store.outbound import FAILED, SENT, OutboundStore
from crm_ingest.wire import delivery_updated, interaction_recorded
from crmkit.kafka import Delivered, PermanentError, TransientError
from crmkit.mongo import MongoDatabase

log = logging.getLogger(__name__)
_meter = metrics.get_meter("crm_ingest")
_outcomes = _meter.create_counter(
    "crm.ingest.outbound", unit="{attempt}",
    description="Outbound delivery attempts by channel and outcome (sent, failed, retried, duplicate)")


@dataclass(frozen=True)
class Requested:
    """One OutboundMessage as the worker takes it, with the trace it was requested in."""

    request: OutboundRequest
    trace: Mapping[str, str] = field(default_factory=dict)

    @property
    def trace_context(self) -> Mapping[str, str] | None:
        """The trace its events continue: the requester's, else the current one."""
        return self.trace or None


class OutboundService:
    def __init__(self, db: MongoDatabase, deliveries: Mapping[str, Delivery], *,
                 give_up_after: timedelta = timedelta(hours=6)) -> None:
        self.db = db
        self.deliveries = dict(deliveries)  # channel -> Delivery
        self.give_up_after = give_up_after
        self.store = OutboundStore(db)

    async def deliver_all(self, records: Sequence[Delivered[Requested]]) -> None:
        """One at a time, in order: the first failure stops the rest (they come again)."""
        for record in records:
            await self.deliver(record.item)

    async def deliver(self, item: Requested) -> str:
        """Deliver one request; returns "sent" or "duplicate", or raises PermanentError or
        TransientError for the consumer."""
        request = item.request
        known = await self.store.get(request.workspace_id, request.id)
        if known is not None and known.state == SENT:
            _outcomes.add(1, {"channel": request.channel, "outcome": "duplicate"})
            return "duplicate"
        if known is not None and known.state == FAILED:
            # Reported already; the record comes back after a crash before its dead-lettering,
            # or the requester sent the same id again: dead-letter it, report nothing new.
            raise PermanentError(known.last_error)
        state = await self.store.begin_attempt(request.workspace_id, request.id, request.channel,
                                               datetime.now(UTC), request.contact_id)
        delivery = self.deliveries.get(request.channel)
        try:
            if delivery is None:
                raise DeliveryFailed(f"no delivery configured for channel {request.channel}", permanent=True)
            sent = await delivery.send(request)
        except DeliveryFailed as exc:
            if exc.permanent:
                await self._fail(item, exc.reason)
                raise PermanentError(exc.reason) from exc
            reason = exc.reason
        except (ConnectionError, TimeoutError, httpx.TransportError) as exc:
            reason = f"{request.channel} unreachable: {type(exc).__name__}"
        except Exception as exc:  # a provider client's error we do not know: retried, then failed
            log.warning("outbound delivery raised an unexpected error", exc_info=True,
                        extra={"channel": request.channel})
            reason = f"{request.channel} delivery failed: {type(exc).__name__}"
        else:
            await self._record_sent(item, sent)
            return "sent"
        if datetime.now(UTC) - state.first_attempt_at >= self.give_up_after:
            reason = f"gave up after {state.attempts} attempts: {reason}"
            await self._fail(item, reason)
            raise PermanentError(reason)
        await self.store.note_error(request.workspace_id, request.id, reason)
        _outcomes.add(1, {"channel": request.channel, "outcome": "retried"})
        log.warning("outbound delivery failed; retrying",
                    extra={"channel": request.channel, "attempt": state.attempts})
        raise TransientError(reason)

    async def _record_sent(self, item: Requested, sent: Sent) -> None:
        request = item.request
        interaction = outbound_interaction(request, sent)
        async with self.db.unit_of_work() as uow:
            if not await OutboundStore.mark_sent(uow, request.workspace_id, request.id, interaction.id,
                                                 sent.provider_message_id, sent.at):
                return  # another worker recorded it first
            store = InteractionsStore(uow)
            if not await store.existing([interaction.id]):
                # The HTML sent is kept for display like an inbound email's: sanitised.
                safe_html = sanitise_html(request.html)[0] if request.html else ""
                await store.insert_many([interaction], {interaction.id: safe_html} if safe_html else None)
                uow.add(interaction_recorded(interaction, trace=item.trace_context))
            uow.add(delivery_updated(
                request.workspace_id, request.contact_id, interaction.id, request.channel, "sent", sent.at,
                outbound_id=request.id, origin=request.origin, reference=request.reference,
                trace=item.trace_context))
        _outcomes.add(1, {"channel": request.channel, "outcome": "sent"})

    async def _fail(self, item: Requested, reason: str) -> None:
        """Committed before the PermanentError that dead-letters the record."""
        request = item.request
        now = datetime.now(UTC)
        async with self.db.unit_of_work() as uow:
            if await OutboundStore.mark_failed(uow, request.workspace_id, request.id, reason, now):
                uow.add(delivery_updated(
                    request.workspace_id, request.contact_id, "", request.channel, "failed", now,
                    error=reason, outbound_id=request.id, origin=request.origin,
                    reference=request.reference, trace=item.trace_context))
        _outcomes.add(1, {"channel": request.channel, "outcome": "failed"})
        log.warning("outbound delivery failed for good", extra={"channel": request.channel})


def deliveries_from(settings: Settings, http: httpx.AsyncClient) -> dict[str, Delivery]:
    """The channels the settings configure, each with its Delivery (``http`` is the
    process's client for the HTTP providers)."""
    deliveries: dict[str, Delivery] = {}
    if settings.smtp_relay_host:
        relay = SmtpRelay(
            host=settings.smtp_relay_host, port=settings.smtp_relay_port, tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout_seconds)
        deliveries["email"] = EmailDelivery(relay, settings.email_from, settings.email_from_default)
    graph = settings.graph_api_url, settings.graph_api_version
    if settings.whatsapp_send:
        deliveries["whatsapp"] = WhatsAppDelivery(http, *graph, settings.whatsapp_send)
    if settings.messenger_send:
        deliveries["messenger"] = MetaSendDelivery("messenger", http, *graph, settings.messenger_send)
    if settings.instagram_send:
        deliveries["instagram"] = MetaSendDelivery("instagram", http, *graph, settings.instagram_send)
    if settings.telegram_send:
        deliveries["telegram"] = TelegramDelivery(http, settings.telegram_api_url, settings.telegram_send)
    if settings.sms_send:
        deliveries["sms"] = SmsDelivery(http, settings.twilio_api_url, settings.sms_send,
                                        settings.sms_public_url)
    return deliveries
