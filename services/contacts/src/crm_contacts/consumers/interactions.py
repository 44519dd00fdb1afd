"""crm.interactions.v1 -> the contact's timeline and last-seen time."""

from __future__ import annotations

from crm.ingest.v1 import events_pb2
from crm_contacts.domain.events import INTERACTION_RECORDED
from crm_contacts.service import ContactsService
from crm_contacts.wire import timeline_entry_of
from crmkit.kafka import Envelope, Handler, PermanentError, on_event


def interactions_handler(service: ContactsService) -> Handler:
    async def apply(envelope: Envelope, recorded: events_pb2.InteractionRecorded) -> None:
        if recorded.interaction.workspace_id != envelope.workspace:
            raise PermanentError("payload workspace differs from the envelope's")
        try:
            contact_id, entry = timeline_entry_of(recorded)
        except ValueError as exc:
            raise PermanentError(f"interaction without a valid contact id: {exc}") from exc
        await service.record_timeline_entry(envelope.workspace, envelope.id, contact_id, entry)

    return on_event(INTERACTION_RECORDED, events_pb2.InteractionRecorded, apply)
