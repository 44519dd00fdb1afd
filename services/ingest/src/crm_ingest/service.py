"""Ingest's use cases: accept raw inbound messages, turn them into interactions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import grpc

from crm_ingest.contacts_client import ContactsClient, Sender
from crm_ingest.domain.email import MalformedEmail, ParsedEmail, parse_email, sender_of
from crm_ingest.domain.interaction import Interaction, email_interaction
from crm_ingest.store.interactions import InteractionsStore, get_interaction
from crm_ingest.wire import interaction_recorded, raw_received
from crmkit.kafka import Delivered, PermanentError, Producer
from crmkit.mongo import MongoDatabase

RAW_CONSUMER = "ingest.raw"


@dataclass(frozen=True)
class RawEmail:
    """One accepted raw email, as the worker receives it from the internal topic."""

    raw: bytes
    received_at: datetime
    # The trace the message arrived in; its interaction event continues it.
    trace: Mapping[str, str] = field(default_factory=dict)


class IngestService:
    def __init__(self, db: MongoDatabase, producer: Producer, contacts: ContactsClient) -> None:
        self.db = db
        self.producer = producer
        self.contacts = contacts

    async def accept_email(self, workspace_id: str, raw: bytes, source: str) -> str:
        """Append the raw message to the internal topic and return once the broker has it:
        from then on nothing is lost, whatever is down behind it."""
        event = raw_received(workspace_id, "email", source, "message/rfc822", raw, sender_of(raw))
        await self.producer.publish([event])
        return event.envelope.id

    async def process_emails(self, emails: Sequence[Delivered[RawEmail]]) -> list[Interaction]:
        """Turn accepted emails into interactions: senders resolved with one contacts call per
        workspace, everything stored with its events in one transaction. Returns the new
        interactions; a raw record or provider message seen before changes nothing. A
        malformed email fails the whole call (PermanentError), so that a batch can be retried
        one email at a time and only the bad one dead-lettered."""
        parsed: list[tuple[Delivered[RawEmail], ParsedEmail]] = []
        for inbound in emails:
            try:
                parsed.append((inbound, parse_email(inbound.item.raw)))
            except MalformedEmail as exc:
                raise PermanentError(str(exc)) from exc
        contacts = await self._resolve_senders(parsed)
        candidates = [
            (inbound, email_interaction(inbound.workspace_id,
                                        contacts[inbound.workspace_id, email.sender_address],
                                        email, inbound.item.received_at))
            for inbound, email in parsed
        ]
        stored: list[Interaction] = []
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(RAW_CONSUMER, [inbound.event_id for inbound, _ in candidates])
            store = InteractionsStore(uow)
            known = await store.existing([item.id for _, item in candidates])
            for inbound, item in candidates:
                if inbound.event_id not in fresh or item.id in known:
                    continue  # this record, or the same provider message, was processed before
                known.add(item.id)
                stored.append(item)
                uow.add(interaction_recorded(item, trace=inbound.item.trace))
            await store.insert_many(stored)
        return stored

    async def _resolve_senders(
        self, parsed: Sequence[tuple[Delivered[RawEmail], ParsedEmail]]
    ) -> dict[tuple[str, str], str]:
        senders: dict[str, dict[str, str]] = {}
        for inbound, email in parsed:
            senders.setdefault(inbound.workspace_id, {})[email.sender_address] = email.sender_name
        contacts: dict[tuple[str, str], str] = {}
        for workspace_id, names in senders.items():
            try:
                ids = await self.contacts.resolve(
                    workspace_id, [Sender("email", address, name) for address, name in names.items()])
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise PermanentError(f"contacts refused a sender: {exc.details()}") from exc
                raise
            if not all(ids):
                raise PermanentError("contacts returned no contact for a sender")
            contacts.update({(workspace_id, address): cid for address, cid in zip(names, ids, strict=True)})
        return contacts

    async def get_interaction(self, workspace_id: str, interaction_id: str) -> Interaction | None:
        return await get_interaction(self.db, workspace_id, interaction_id)
