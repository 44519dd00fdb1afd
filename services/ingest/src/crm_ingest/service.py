"""Ingest's use cases: accept raw inbound messages, turn them into interactions."""

from __future__ import annotations

from datetime import datetime

import grpc

from crm_ingest.contacts_client import ContactsClient, Sender
from crm_ingest.domain.email import MalformedEmail, parse_email, sender_of
from crm_ingest.domain.interaction import Interaction, email_interaction
from crm_ingest.store.interactions import InteractionsStore, get_interaction
from crm_ingest.wire import interaction_recorded, raw_received
from crmkit.kafka import PermanentError, Producer
from crmkit.mongo import MongoDatabase

RAW_CONSUMER = "ingest.raw"


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

    async def process_email(self, workspace_id: str, raw_id: str, raw: bytes,
                            received_at: datetime) -> Interaction | None:
        """Parse, resolve the sender, store the interaction and its event. Returns None when
        this raw record or this provider message was already processed."""
        try:
            email = parse_email(raw)
        except MalformedEmail as exc:
            raise PermanentError(str(exc)) from exc
        try:
            [contact_id] = await self.contacts.resolve(
                workspace_id, [Sender("email", email.sender_address, email.sender_name)]
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise PermanentError(f"contacts refused the sender: {exc.details()}") from exc
            raise
        if not contact_id:
            raise PermanentError("contacts returned no contact for the sender")
        item = email_interaction(workspace_id, contact_id, email, received_at)
        async with self.db.unit_of_work() as uow:
            if not await uow.claim(RAW_CONSUMER, raw_id):
                return None
            store = InteractionsStore(uow)
            if await store.exists(workspace_id, item.id):
                return None  # the same provider message again: nothing changes
            await store.insert(item)
            uow.add(interaction_recorded(item))
        return item

    async def get_interaction(self, workspace_id: str, interaction_id: str) -> Interaction | None:
        return await get_interaction(self.db, workspace_id, interaction_id)
