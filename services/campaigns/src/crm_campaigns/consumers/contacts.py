"""crm.contacts.v1 -> engagement follows its contacts' merges."""

from __future__ import annotations

from uuid import UUID

from crm.contacts.v1 import events_pb2
from crm_campaigns.domain.events import CONTACT_MERGED
from crm_campaigns.domain.model import ContactMerge
from crm_campaigns.service import CampaignsService
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def contact_merge(envelope: Envelope, merged: events_pb2.ContactMerged) -> ContactMerge:
    try:
        merge = ContactMerge(loser_id=str(UUID(merged.loser_id)), survivor_id=str(UUID(merged.survivor_id)))
    except ValueError as exc:
        raise PermanentError("a merge without valid contact ids") from exc
    if merge.loser_id == merge.survivor_id:
        raise PermanentError("a contact merged into itself")
    return merge


def contacts_handlers(service: CampaignsService) -> Handlers:
    return consume(CONTACT_MERGED, events_pb2.ContactMerged, contact_merge, service.merge_contacts,
                   workspace_of=lambda merged: merged.workspace_id)
