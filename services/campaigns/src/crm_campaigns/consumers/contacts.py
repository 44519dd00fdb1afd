"""crm.contacts.v1 -> engagement, sends and journey runs follow their contacts' merges; an
erased contact's campaign data goes."""

from __future__ import annotations

from uuid import UUID

from crm.contacts.v1 import events_pb2
from crm_campaigns.domain.events import CONTACT_MERGED
from crm_campaigns.domain.model import ContactMerge
from crm_campaigns.service import CampaignsService
from crm_campaigns.service.privacy import PrivacyService
from crmkit.kafka import Envelope, Handlers, PermanentError, combine, consume

CONTACT_ERASED = "crm.contacts.contact.erased.v1"


def contact_merge(envelope: Envelope, merged: events_pb2.ContactMerged) -> ContactMerge:
    try:
        merge = ContactMerge(loser_id=str(UUID(merged.loser_id)), survivor_id=str(UUID(merged.survivor_id)))
    except ValueError as exc:
        raise PermanentError("a merge without valid contact ids") from exc
    if merge.loser_id == merge.survivor_id:
        raise PermanentError("a contact merged into itself")
    return merge


def contact_erased(envelope: Envelope, erased: events_pb2.ContactErased) -> str:
    try:
        return str(UUID(erased.contact_id))
    except ValueError as exc:
        raise PermanentError("an erasure without a valid contact id") from exc


def contacts_handlers(service: CampaignsService, privacy: PrivacyService) -> Handlers:
    return combine(
        consume(CONTACT_MERGED, events_pb2.ContactMerged, contact_merge, service.merge_contacts,
                workspace_of=lambda merged: merged.workspace_id),
        consume(CONTACT_ERASED, events_pb2.ContactErased, contact_erased, privacy.erase_contacts,
                workspace_of=lambda erased: erased.workspace_id),
    )
