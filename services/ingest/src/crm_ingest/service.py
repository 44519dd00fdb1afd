"""Ingest's use cases: accept raw inbound messages, turn them into interactions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import grpc
from opentelemetry import metrics

from crm_ingest.channels import PARSERS, Parsed
from crm_ingest.contacts_client import ContactsClient, Sender
from crm_ingest.domain.email import sender_of
from crm_ingest.domain.interaction import Interaction, inbound_interaction, interaction_id
from crm_ingest.domain.message import DeliveryStatus, InboundMessage, MalformedMessage, Reaction
from crm_ingest.domain.whatsapp import WebhookItem
from crm_ingest.store.interactions import InteractionsStore, get_interaction, interactions_of
from crm_ingest.wire import interaction_recorded, raw_received
from crmkit.kafka import Delivered, Event, PermanentError, Producer
from crmkit.mongo import MongoDatabase
from crmkit.personal_data import MAX_ITEMS, MAX_PART_BYTES

log = logging.getLogger(__name__)
_meter = metrics.get_meter("crm_ingest")
_unrouted = _meter.create_counter(
    "crm.ingest.whatsapp.unrouted", unit="{record}",
    description="WhatsApp messages and statuses to a phone number id no workspace is mapped to "
                "(dead-lettered at the endpoint)")
_statuses = _meter.create_counter(
    "crm.ingest.delivery_statuses", unit="{status}",
    description="Delivery statuses by outcome: recorded on their interaction, or unmatched")

RAW_CONSUMER = "ingest.raw"
WHATSAPP_SOURCE = "whatsapp-webhook"



@dataclass(frozen=True)
class RawMessage:
    """One accepted raw message, as the worker receives it from the internal topic."""

    channel: str
    payload: bytes
    received_at: datetime
    # The trace the message arrived in; its interaction event continues it.
    trace: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WhatsAppAccepted:
    accepted: int  # on the raw topic
    dead_lettered: int  # for a phone number id no workspace is mapped to


class IngestService:
    def __init__(self, db: MongoDatabase, producer: Producer, contacts: ContactsClient,
                 whatsapp_workspaces: Mapping[str, str] | None = None) -> None:
        self.db = db
        self.producer = producer
        self.contacts = contacts
        # phone_number_id -> workspace id
        self.whatsapp_workspaces = dict(whatsapp_workspaces or {})

    async def accept(self, workspace_id: str, channel: str, source: str, content_type: str,
                     payload: bytes, sender: str | None) -> str:
        """Append one raw message to the internal topic and return its raw id once the broker
        has it: from then on nothing is lost, whatever is down behind it. ``sender`` (the
        provider's id of the person, when the adapter knows it) keys the record, so that one
        person's messages keep their order."""
        event = raw_received(workspace_id, channel, source, content_type, payload, sender)
        await self.producer.publish([event])
        return event.envelope.id

    async def accept_email(self, workspace_id: str, raw: bytes, source: str) -> str:
        return await self.accept(workspace_id, "email", source, "message/rfc822", raw, sender_of(raw))

    async def accept_whatsapp(self, items: Sequence[WebhookItem]) -> WhatsAppAccepted:
        """Append each message and status to the internal topic, in the workspace its business
        phone number is mapped to, and return once the broker has them all. One for a number
        no workspace is mapped to goes to the raw topic's dead-letter topic with the reason
        instead: kept, never dropped, and not refused, as Meta's retries could not fix it."""
        routed: list[tuple[str, Event]] = []
        unrouted: list[tuple[str, Event]] = []
        for item in items:
            workspace_id = self.whatsapp_workspaces.get(item.phone_number_id, "")
            event = raw_received(workspace_id, "whatsapp", WHATSAPP_SOURCE, "application/json",
                                 item.payload, item.wa_id or None)
            (routed if workspace_id else unrouted).append((item.phone_number_id, event))
        await self.producer.publish([event for _, event in routed])
        await asyncio.gather(*(
            self.producer.dead_letter(event, f"no workspace for WhatsApp phone_number_id {number}",
                                      source=WHATSAPP_SOURCE)
            for number, event in unrouted))
        if unrouted:
            _unrouted.add(len(unrouted))
            log.warning("WhatsApp records for unmapped phone number ids dead-lettered",
                        extra={"phone_number_ids": sorted({number for number, _ in unrouted}),
                               "records": len(unrouted)})
        return WhatsAppAccepted(len(routed), len(unrouted))

    async def process_raw(self, records: Sequence[Delivered[RawMessage]]) -> list[Interaction]:
        """Turn accepted raw messages into interactions: senders resolved with one contacts
        call per workspace, everything stored with its events in one transaction. A delivery
        status is recorded on the interaction it is about, and never becomes one. Returns the
        new interactions; a raw record or provider message seen before changes nothing. A
        malformed message fails the whole call (PermanentError), so that a batch can be retried
        one record at a time and only the bad one dead-lettered."""
        messages: list[tuple[Delivered[RawMessage], InboundMessage]] = []
        statuses: list[tuple[Delivered[RawMessage], DeliveryStatus]] = []
        reactions: list[tuple[Delivered[RawMessage], Reaction]] = []
        for record in records:
            parsed = _parse(record.item)
            if isinstance(parsed, DeliveryStatus):
                statuses.append((record, parsed))
            elif isinstance(parsed, Reaction):
                reactions.append((record, parsed))
            else:
                messages.append((record, parsed))
        contacts = await self._resolve_senders(messages)
        candidates = [
            (record, inbound_interaction(
                record.workspace_id, contacts[record.workspace_id, message.sender_kind, message.sender],
                message, record.item.received_at))
            for record, message in messages
        ]
        stored: list[Interaction] = []
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(RAW_CONSUMER, [record.event_id for record in records])
            store = InteractionsStore(uow)
            known = await store.existing([item.id for _, item in candidates])
            for record, item in candidates:
                if record.event_id not in fresh or item.id in known:
                    continue  # this record, or the same provider message, was processed before
                known.add(item.id)
                stored.append(item)
                uow.add(interaction_recorded(item, trace=record.item.trace))
            await store.insert_many(stored)
            updates = [
                (record.workspace_id, interaction_id(record.workspace_id, status.channel, status.message_id),
                 replace(status, at=status.at or record.item.received_at))
                for record, status in statuses if record.event_id in fresh
            ]
            recorded = await store.record_statuses(updates)
        if updates:
            # Until outbound messages are stored, a status has no interaction to land on.
            _statuses.add(recorded, {"outcome": "recorded"})
            _statuses.add(len(updates) - recorded, {"outcome": "unmatched"})
            if recorded < len(updates):
                log.info("delivery statuses for messages not stored here",
                         extra={"statuses": len(updates) - recorded})
        return stored

    async def _resolve_senders(
        self, messages: Sequence[tuple[Delivered[RawMessage], InboundMessage]]
    ) -> dict[tuple[str, str, str], str]:
        """Contact ids by (workspace, identity kind, identity value)."""
        senders: dict[str, dict[tuple[str, str], str]] = {}
        for record, message in messages:
            names = senders.setdefault(record.workspace_id, {})
            key = (message.sender_kind, message.sender)
            names[key] = message.sender_name or names.get(key, "")
        contacts: dict[tuple[str, str, str], str] = {}
        for workspace_id, names in senders.items():
            try:
                ids = await self.contacts.resolve(
                    workspace_id, [Sender(kind, value, name) for (kind, value), name in names.items()])
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise PermanentError(f"contacts refused a sender: {exc.details()}") from exc
                raise
            if not all(ids):
                raise PermanentError("contacts returned no contact for a sender")
            contacts.update({(workspace_id, kind, value): cid
                             for (kind, value), cid in zip(names, ids, strict=True)})
        return contacts

    async def get_interaction(self, workspace_id: str, interaction_id: str) -> Interaction | None:
        return await get_interaction(self.db, workspace_id, interaction_id)

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]
                            ) -> dict[str, list[dict[str, Any]]]:
        """Everything ingest holds about a person (the contact and the ids merged into it: an
        interaction keeps the contact it was resolved to), for their data export: their
        interactions with every stored field. Past either limit of a part, so that a cut shows."""
        ids = [str(i) for i in contact_ids]
        return {"interactions": await interactions_of(self.db, workspace_id, ids, MAX_ITEMS + 1,
                                                      MAX_PART_BYTES)}


def _parse(raw: RawMessage) -> Parsed:
    parser = PARSERS.get(raw.channel)
    if parser is None:
        raise PermanentError(f"no adapter for channel {raw.channel}")
    try:
        return parser(raw.payload)
    except MalformedMessage as exc:
        raise PermanentError(str(exc)) from exc
