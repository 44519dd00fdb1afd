"""Proto <-> domain mapping for contacts: the wire forms of identities, contacts and events."""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2, events_pb2
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2
from crm_contacts.domain import events
from crm_contacts.domain.model import (
    Contact,
    ContactTimelineEntry,
    Identity,
    IdentityKind,
    TimelineEntry,
    summarise,
)
from crmkit.kafka import Event, make_event
from crmkit.topics import CONTACTS


def kind_from_proto(value: int) -> IdentityKind | None:
    label = common_pb2.IdentityKind.Name(value) if value in common_pb2.IdentityKind.values() else ""
    try:
        return IdentityKind[label.removeprefix("IDENTITY_KIND_")]
    except KeyError:
        return None


def identity_to_proto(identity: Identity) -> common_pb2.Identity:
    return common_pb2.Identity(kind=f"IDENTITY_KIND_{identity.kind.name}", value=identity.value)


def contact_to_proto(contact: Contact) -> contacts_pb2.Contact:
    message = contacts_pb2.Contact(
        id=str(contact.id),
        workspace_id=contact.workspace_id,
        display_name=contact.display_name,
        identities=[identity_to_proto(i) for i in contact.identities],
    )
    message.created_at.FromDatetime(contact.created_at)
    if contact.last_seen_at is not None:
        message.last_seen_at.FromDatetime(contact.last_seen_at)
    return message


def contact_created(workspace_id: str, contact_id: UUID, display_name: str, identity: Identity) -> Event:
    contact = contacts_pb2.Contact(
        id=str(contact_id),
        workspace_id=workspace_id,
        display_name=display_name,
        identities=[identity_to_proto(identity)],
    )
    contact.created_at.GetCurrentTime()
    payload = events_pb2.ContactCreated(contact=contact)
    return make_event(topic=CONTACTS, type=events.CONTACT_CREATED, source=events.SOURCE,
                      workspace=workspace_id, subject=str(contact_id), payload=payload)



def timeline_entry_of(recorded: ingest_events.InteractionRecorded) -> ContactTimelineEntry:
    """The contact an interaction belongs to, and its line on that contact's timeline."""
    item = recorded.interaction
    channel = common_pb2.Channel.Name(item.channel).removeprefix("CHANNEL_").lower()
    direction = interaction_pb2.Direction.Name(item.direction).removeprefix("DIRECTION_").lower()
    entry = TimelineEntry(
        entry_id=f"interaction:{item.id}",
        kind="interaction",
        channel=channel,
        direction=direction,
        summary=summarise(item.subject, item.text),
        occurred_at=item.occurred_at.ToDatetime(tzinfo=UTC),
    )
    return ContactTimelineEntry(UUID(item.contact_id), entry)
