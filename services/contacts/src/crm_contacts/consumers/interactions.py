"""crm.interactions.v1 -> the contact's timeline and last-seen time."""

from __future__ import annotations

from crm.ingest.v1 import events_pb2
from crm_contacts.domain.events import INTERACTION_RECORDED
from crm_contacts.domain.model import ContactTimelineEntry
from crm_contacts.service import ContactsService
from crm_contacts.wire import timeline_entry_of
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def timeline_entry(envelope: Envelope, recorded: events_pb2.InteractionRecorded) -> ContactTimelineEntry:
    try:
        return timeline_entry_of(recorded)
    except ValueError as exc:
        raise PermanentError(f"interaction without a valid contact id: {exc}") from exc


def interactions_handlers(service: ContactsService) -> Handlers:
    return consume(INTERACTION_RECORDED, events_pb2.InteractionRecorded, timeline_entry,
                   service.record_timeline_entries,
                   workspace_of=lambda recorded: recorded.interaction.workspace_id)
