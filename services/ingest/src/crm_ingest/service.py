"""Ingest's use cases: accept raw inbound messages, turn them into interactions."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

import grpc
from opentelemetry import metrics

from crm_ingest.channels import PARSERS, Parsed
from crm_ingest.domain.email import sender_of
from crm_ingest.domain.interaction import ContactMerge, Interaction, inbound_interaction, interaction_id
from crm_ingest.domain.message import DeliveryStatus, InboundMessage, MalformedMessage, Reaction
from crm_ingest.store.interactions import (
    InteractionsReader,
    InteractionsStore,
    RawPayload,
    StatusTarget,
    StoredInteraction,
)
from crm_ingest.wire import delivery_updated, interaction_recorded, raw_received, reaction_recorded
from crmkit.contacts import ContactsClient, Sender
from crmkit.erasure import MongoErasureConfirmations
from crmkit.kafka import Delivered, PermanentError, Producer
from crmkit.mongo import MongoDatabase, MongoUnitOfWork
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.personal_data import MAX_ITEMS, MAX_PART_BYTES

log = logging.getLogger(__name__)
_meter = metrics.get_meter("crm_ingest")
_statuses = _meter.create_counter(
    "crm.ingest.delivery_statuses", unit="{status}",
    description="Delivery statuses by outcome: recorded on their interaction, or unmatched")

RAW_CONSUMER = "ingest.raw"
MERGES_CONSUMER = "ingest.merges"
# What else holds a person's data (chat transcripts, outbound records): called in the erasure's
# transaction with the workspace, the contact ids and the chat visitor ids they wrote from.
Eraser = Callable[[MongoUnitOfWork, str, list[str], list[str]], Awaitable[None]]



@dataclass(frozen=True)
class RawMessage:
    """One accepted raw message, as the worker receives it from the internal topic."""

    channel: str
    payload: bytes
    received_at: datetime
    # The trace the message arrived in; its interaction event continues it.
    trace: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # the adapter that accepted it ("smtp", "whatsapp-webhook", ...)
    content_type: str = ""


class IngestService:
    def __init__(self, db: MongoDatabase, producer: Producer, contacts: ContactsClient,
                 *,
                 max_attachment_bytes: int = 10 * 1024 * 1024, service_name: str = "ingest") -> None:
        self.db = db
        self.reader = InteractionsReader(db)
        self.max_attachment_bytes = max_attachment_bytes
        self.service_name = service_name
        self.erasers: list[Eraser] = []
        self.producer = producer
        self.contacts = contacts
        # Erasures done here, told to contacts by ``confirmations.run()`` (a background task).
        self.confirmations = MongoErasureConfirmations(
            db, partial(contacts.confirm_erasure, service=service_name))

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

    async def process_raw(self, records: Sequence[Delivered[RawMessage]]) -> list[Interaction]:
        """Turn accepted raw messages into interactions: senders resolved with one contacts
        call per workspace, everything stored with its events in one transaction (the
        interaction, its HTML body and attachments, the raw payload in the archive). A delivery
        status or a reaction is recorded on the interaction it is about and never becomes one;
        so is a bounce or an abuse complaint on the message of ours it reports. Returns the new
        interactions; a raw record or provider message seen before changes nothing. A
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
                bounced = parsed.metadata.get("bounced_message_id") if parsed.kind == "bounce" else None
                if bounced:
                    statuses.append((record, DeliveryStatus(
                        parsed.channel, bounced, "bounced", parsed.sent_at,
                        parsed.metadata.get("bounce_status", ""))))
                complained = parsed.metadata.get("complained_message_id", "")
                if complained and parsed.kind == "complaint":
                    statuses.append((record, DeliveryStatus(parsed.channel, complained, "complained",
                                                            parsed.sent_at)))
        # A record processed before (a redelivery) is not resolved again: contacts would
        # otherwise see the sender once more, and bring back a person erased since.
        seen = await self.db.processed(RAW_CONSUMER, [record.event_id for record, _ in messages])
        messages = [(record, message) for record, message in messages if record.event_id not in seen]
        contacts = await self._resolve_senders(messages)
        stored: list[Interaction] = []
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(RAW_CONSUMER, [record.event_id for record in records])
            store = InteractionsStore(uow)
            survivors = await self._survivors(store, contacts)
            candidates = [
                (record, message, inbound_interaction(
                    record.workspace_id,
                    survivors.get((record.workspace_id, cid), cid),
                    message, record.item.received_at, self.max_attachment_bytes))
                for record, message in messages
                for cid in (contacts[record.workspace_id, message.sender_kind, message.sender],)
            ]
            known = await store.existing([item.id for _, _, item in candidates])
            html: dict[str, str] = {}
            archive: list[RawPayload] = []
            for record, message, item in candidates:
                if record.event_id not in fresh or item.id in known:
                    continue  # this record, or the same provider message, was processed before
                known.add(item.id)
                stored.append(item)
                if message.html:
                    html[item.id] = message.html
                raw = record.item
                archive.append(RawPayload(
                    record.event_id, item.workspace_id, item.contact_id, raw.channel, raw.source,
                    raw.content_type, raw.payload, raw.received_at, item.id))
                uow.add(interaction_recorded(item, trace=record.item.trace))
            await store.insert_many(stored, html)
            by_id = {item.id: message for _, message, item in candidates}
            for item in stored:
                await store.insert_attachments(item, by_id[item.id].attachments)
            await store.archive_raw(archive)
            await self._record_statuses(uow, store, [(r, s) for r, s in statuses if r.event_id in fresh])
            await self._record_reactions(uow, store, [(r, x) for r, x in reactions if r.event_id in fresh])
        return stored

    @staticmethod
    async def _survivors(store: InteractionsStore, contacts: Mapping[tuple[str, str, str], str]
                         ) -> dict[tuple[str, str], str]:
        """Where contacts merged away since contacts resolved them live now."""
        by_workspace: dict[str, set[str]] = {}
        for (workspace_id, _, _), contact_id in contacts.items():
            by_workspace.setdefault(workspace_id, set()).add(contact_id)
        found: dict[tuple[str, str], str] = {}
        for workspace_id, ids in by_workspace.items():
            for loser, survivor in (await store.survivors(workspace_id, sorted(ids))).items():
                found[workspace_id, loser] = survivor
        return found

    async def _record_statuses(self, uow: MongoUnitOfWork, store: InteractionsStore,
                               statuses: Sequence[tuple[Delivered[RawMessage], DeliveryStatus]]) -> None:
        """Each status on the interaction of the message it is about, published as
        DeliveryUpdated (with the requester's outbound id and reference, for ours)."""
        if not statuses:
            return
        matched, unmatched = await _landing(store, statuses)
        await store.record_statuses([(r.workspace_id, t.interaction_id, s) for r, t, s in matched])
        for record, target, status in matched:
            assert status.at is not None
            uow.add(delivery_updated(
                record.workspace_id, target.contact_id, target.interaction_id, target.channel, status.status,
                status.at, error=status.error_code, outbound_id=target.outbound_id,
                origin=target.metadata.get("origin", ""), reference=target.metadata.get("reference", ""),
                trace=record.item.trace))
        _statuses.add(len(matched), {"outcome": "recorded"})
        if unmatched:
            # A status for a message not stored here (sent by another tool, or erased).
            _statuses.add(unmatched, {"outcome": "unmatched"})
            log.info("delivery statuses for messages not stored here", extra={"statuses": unmatched})

    async def _record_reactions(self, uow: MongoUnitOfWork, store: InteractionsStore,
                                reactions: Sequence[tuple[Delivered[RawMessage], Reaction]]) -> None:
        if not reactions:
            return
        matched, unmatched = await _landing(store, reactions)
        await store.record_reactions([(rec.workspace_id, t.interaction_id, r) for rec, t, r in matched])
        for record, target, reaction in matched:
            assert reaction.at is not None
            uow.add(reaction_recorded(record.workspace_id, target.contact_id, target.interaction_id,
                                      target.channel, reaction.emoji, reaction.at, trace=record.item.trace))
        if unmatched:
            log.info("reactions to messages not stored here", extra={"reactions": unmatched})

    async def _resolve_senders(
        self, messages: Sequence[tuple[Delivered[RawMessage], InboundMessage]]
    ) -> dict[tuple[str, str, str], str]:
        """Contact ids by (workspace, identity kind, identity value)."""
        senders: dict[str, dict[tuple[str, str], Sender]] = {}
        for record, message in messages:
            known = senders.setdefault(record.workspace_id, {})
            key = (message.sender_kind, message.sender)
            before = known.get(key)
            known[key] = Sender(message.sender_kind, message.sender,
                                message.sender_name or (before.display_name if before else ""),
                                message.verified_email or (before.verified_email if before else ""))
        contacts: dict[tuple[str, str, str], str] = {}
        for workspace_id, names in senders.items():
            try:
                ids = await self.contacts.resolve(workspace_id, list(names.values()))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise PermanentError(f"contacts refused a sender: {exc.details()}") from exc
                raise
            if not all(ids):
                raise PermanentError("contacts returned no contact for a sender")
            contacts.update({(workspace_id, kind, value): cid
                             for (kind, value), cid in zip(names, ids, strict=True)})
        return contacts

    # -- reads -----------------------------------------------------------------------------

    async def get_interaction(self, workspace_id: str, interaction_id: str) -> StoredInteraction | None:
        return await self.reader.get(workspace_id, interaction_id)

    async def timeline(self, workspace_id: str, contact_id: str, cursor: str | None, limit: int,
                       channel: str | None = None) -> tuple[list[StoredInteraction], str | None]:
        """A contact's interactions, newest first, a page at a time (InvalidCursor for a bad
        cursor). A contact merged into another answers with the survivor's timeline."""
        after = None
        if cursor:
            at, last_id = decode_cursor("timeline", cursor, 2)
            try:
                after = (datetime.fromisoformat(str(at)), str(last_id))
            except ValueError as exc:
                raise InvalidCursor() from exc
        contact_id = await self.reader.survivor(workspace_id, contact_id)
        items = await self.reader.of_contact(workspace_id, contact_id, after, limit + 1, channel)
        if len(items) <= limit:
            return items, None
        last = items[limit - 1].interaction
        return items[:limit], encode_cursor("timeline", [last.occurred_at.isoformat(), last.id])

    async def thread(self, workspace_id: str, interaction_id: str,
                     limit: int) -> list[StoredInteraction] | None:
        found = await self.reader.get(workspace_id, interaction_id)
        if found is None:
            return None
        return await self.reader.thread(workspace_id, found.interaction, limit)

    async def html(self, workspace_id: str, interaction_id: str) -> str | None:
        return await self.reader.html(workspace_id, interaction_id)

    async def attachment(self, workspace_id: str, interaction_id: str,
                         index: int) -> tuple[str, str, bytes] | None:
        return await self.reader.attachment(workspace_id, interaction_id, index)

    async def raw(self, workspace_id: str, interaction_id: str) -> RawPayload | None:
        return await self.reader.raw(workspace_id, interaction_id)

    # -- following contacts ------------------------------------------------------------------

    async def merge_contacts(self, items: Sequence[Delivered[ContactMerge]]) -> int:
        """Move each loser's interactions (and attachments, raw payloads) to its survivor,
        each merge once and in one transaction. Returns the interactions moved."""
        moved = 0
        for delivered in items:
            async with self.db.unit_of_work() as uow:
                if not await uow.claim(MERGES_CONSUMER, delivered.event_id):
                    continue
                merge = delivered.item
                moved += await InteractionsStore(uow).merge_contact(
                    delivered.workspace_id, merge.loser_id, merge.survivor_id)
        return moved

    async def erase_contacts(self, items: Sequence[Delivered[str]]) -> int:
        """Delete what ingest holds of each erased person (and the contacts merged into
        them): interactions with their bodies, attachments, raw payloads and chat transcripts;
        and queue the confirmation to contacts in the same transaction (crmkit.erasure sends
        it, so contacts being down never holds up this consumer). Erasing twice changes
        nothing. Returns the interactions deleted."""
        deleted = 0
        for delivered in items:
            workspace_id, contact_id = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                store = InteractionsStore(uow)
                ids = [contact_id, *await store.merged_into(workspace_id, contact_id)]
                count, visitors = await store.erase_contact(workspace_id, ids)
                for eraser in self.erasers:
                    await eraser(uow, workspace_id, ids, visitors)
                await self.confirmations.queue(uow, workspace_id, contact_id)
            deleted += count
            log.info("erased a contact's interactions", extra={"interactions": count})
        self.confirmations.queued()
        return deleted

    async def personal_data(self, workspace_id: str, contact_ids: list[UUID]
                            ) -> dict[str, list[dict[str, Any]]]:
        """Everything ingest holds about a person (the contact and the ids merged into it), for
        their data export: their interactions with every stored field. Past either limit of a
        part, so that a cut shows."""
        ids = [str(i) for i in contact_ids]
        return {"interactions": await self.reader.personal_data(workspace_id, ids, MAX_ITEMS + 1,
                                                                MAX_PART_BYTES)}


News = TypeVar("News", DeliveryStatus, Reaction)


async def _landing(store: InteractionsStore, news: Sequence[tuple[Delivered[RawMessage], News]]
                   ) -> tuple[list[tuple[Delivered[RawMessage], StatusTarget, News]], int]:
    """Each status or reaction with the stored interaction of the message it is about (its
    time, when the provider gave none, the record's arrival); and how many are about a message
    not stored here."""
    wanted = [(record, interaction_id(record.workspace_id, item.channel, item.message_id),
               replace(item, at=item.at or record.item.received_at)) for record, item in news]
    targets: dict[str, StatusTarget] = {}
    for workspace_id in {record.workspace_id for record, _, _ in wanted}:
        targets |= await store.targets(
            workspace_id, [iid for record, iid, _ in wanted if record.workspace_id == workspace_id])
    matched = [(record, targets[iid], item) for record, iid, item in wanted if iid in targets]
    return matched, len(wanted) - len(matched)


def _parse(raw: RawMessage) -> Parsed:
    parser = PARSERS.get(raw.channel)
    if parser is None:
        raise PermanentError(f"no adapter for channel {raw.channel}")
    try:
        return parser(raw.payload)
    except MalformedMessage as exc:
        raise PermanentError(str(exc)) from exc
