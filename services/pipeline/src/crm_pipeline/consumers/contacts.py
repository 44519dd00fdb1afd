"""crm.contacts.v1 -> activity, deals and activities follow their contacts' merges; an erased
person's data goes (service/privacy.py)."""

from __future__ import annotations

from uuid import UUID

from crm.contacts.v1 import events_pb2
from crm_pipeline.domain.events import CONTACT_ERASED, CONTACT_MERGED
from crm_pipeline.domain.model import ContactMerge
from crm_pipeline.service import PipelineService
from crm_pipeline.service.activities import Activities
from crm_pipeline.service.privacy import Erasure
from crmkit.kafka import Delivered, Envelope, Handlers, PermanentError, combine, consume


def contact_merge(envelope: Envelope, merged: events_pb2.ContactMerged) -> ContactMerge:
    try:
        merge = ContactMerge(loser_id=UUID(merged.loser_id), survivor_id=UUID(merged.survivor_id))
    except ValueError as exc:
        raise PermanentError("a merge without valid contact ids") from exc
    if merge.loser_id == merge.survivor_id:
        raise PermanentError("a contact merged into itself")
    return merge


def contact_erased(envelope: Envelope, erased: events_pb2.ContactErased) -> UUID:
    try:
        return UUID(erased.contact_id)
    except ValueError as exc:
        raise PermanentError("an erasure without a valid contact id") from exc


def contacts_handlers(service: PipelineService, activities: Activities, erasure: Erasure) -> Handlers:
    async def merge(items: list[Delivered[ContactMerge]]) -> None:
        # The redirect first (with the interaction counts), then what names the loser moves:
        # each step claims its own event ids.
        await service.merge_contacts(items)
        await activities.follow_merges(items)

    return combine(
        consume(CONTACT_MERGED, events_pb2.ContactMerged, contact_merge, merge,
                workspace_of=lambda merged: merged.workspace_id),
        consume(CONTACT_ERASED, events_pb2.ContactErased, contact_erased, erasure.erase_contacts,
                workspace_of=lambda erased: erased.workspace_id),
    )
