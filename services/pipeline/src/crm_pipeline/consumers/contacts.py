"""crm.contacts.v1 -> activity follows its contacts' merges."""

from __future__ import annotations

from uuid import UUID

from crm.contacts.v1 import events_pb2
from crm_pipeline.domain.events import CONTACT_MERGED
from crm_pipeline.domain.model import ContactMerge
from crm_pipeline.service import PipelineService
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def contact_merge(envelope: Envelope, merged: events_pb2.ContactMerged) -> ContactMerge:
    try:
        merge = ContactMerge(loser_id=UUID(merged.loser_id), survivor_id=UUID(merged.survivor_id))
    except ValueError as exc:
        raise PermanentError("a merge without valid contact ids") from exc
    if merge.loser_id == merge.survivor_id:
        raise PermanentError("a contact merged into itself")
    return merge


def contacts_handlers(service: PipelineService) -> Handlers:
    return consume(CONTACT_MERGED, events_pb2.ContactMerged, contact_merge, service.merge_contacts,
                   workspace_of=lambda merged: merged.workspace_id)
