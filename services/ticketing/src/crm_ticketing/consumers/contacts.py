"""crm.contacts.v1 -> tickets follow their contacts' merges; an erased person's tickets are
anonymised."""

from __future__ import annotations

from uuid import UUID

from crm.contacts.v1 import events_pb2
from crm_ticketing.domain.events import CONTACT_ERASED, CONTACT_MERGED
from crm_ticketing.domain.model import ContactMerge
from crm_ticketing.service import TicketingService
from crm_ticketing.service.privacy import Erasure
from crm_ticketing.wire import contact_merge_of
from crmkit.kafka import Envelope, Handlers, PermanentError, combine, consume


def contact_merge(envelope: Envelope, merged: events_pb2.ContactMerged) -> ContactMerge:
    try:
        return contact_merge_of(merged)
    except ValueError as exc:
        raise PermanentError(f"not a valid merge: {exc}") from exc


def contact_erased(envelope: Envelope, erased: events_pb2.ContactErased) -> UUID:
    try:
        return UUID(erased.contact_id)
    except ValueError as exc:
        raise PermanentError("an erasure without a valid contact id") from exc


def contacts_handlers(service: TicketingService, erasure: Erasure) -> Handlers:
    return combine(
        consume(CONTACT_MERGED, events_pb2.ContactMerged, contact_merge, service.merge_contacts,
                workspace_of=lambda merged: merged.workspace_id),
        consume(CONTACT_ERASED, events_pb2.ContactErased, contact_erased, erasure.erase_contacts,
                workspace_of=lambda erased: erased.workspace_id),
    )
