"""crm.contacts.v1 -> tickets follow their contacts' merges."""

from __future__ import annotations

from crm.contacts.v1 import events_pb2
from crm_ticketing.domain.events import CONTACT_MERGED
from crm_ticketing.domain.model import ContactMerge
from crm_ticketing.service import TicketingService
from crm_ticketing.wire import contact_merge_of
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def contact_merge(envelope: Envelope, merged: events_pb2.ContactMerged) -> ContactMerge:
    try:
        return contact_merge_of(merged)
    except ValueError as exc:
        raise PermanentError(f"not a valid merge: {exc}") from exc


def contacts_handlers(service: TicketingService) -> Handlers:
    return consume(CONTACT_MERGED, events_pb2.ContactMerged, contact_merge, service.merge_contacts,
                   workspace_of=lambda merged: merged.workspace_id)
