"""crm.contacts.v1 -> interactions follow their contacts' merges and erasures."""

from __future__ import annotations

from uuid import UUID

from crm.contacts.v1 import events_pb2
from crm_ingest.domain.events import CONTACT_ERASED, CONTACT_MERGED
from crm_ingest.domain.interaction import ContactMerge
from crm_ingest.service import IngestService
from crmkit.kafka import Envelope, Handlers, PermanentError, combine, consume


def _uuid(value: str, what: str) -> str:
    try:
        return str(UUID(value))
    except ValueError as exc:
        raise PermanentError(f"{what} is not a UUID") from exc


def contact_merge(envelope: Envelope, merged: events_pb2.ContactMerged) -> ContactMerge:
    merge = ContactMerge(_uuid(merged.loser_id, "loser_id"), _uuid(merged.survivor_id, "survivor_id"))
    if merge.loser_id == merge.survivor_id:
        raise PermanentError("a contact merged into itself")
    return merge


def contact_erased(envelope: Envelope, erased: events_pb2.ContactErased) -> str:
    return _uuid(erased.contact_id, "contact_id")


def contacts_handlers(service: IngestService) -> Handlers:
    return combine(
        consume(CONTACT_MERGED, events_pb2.ContactMerged, contact_merge, service.merge_contacts,
                workspace_of=lambda merged: merged.workspace_id),
        consume(CONTACT_ERASED, events_pb2.ContactErased, contact_erased, service.erase_contacts,
                workspace_of=lambda erased: erased.workspace_id),
    )
