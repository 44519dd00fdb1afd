"""Proto <-> domain mapping for contacts: the wire forms of identities, contacts and events."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from uuid import UUID

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2, events_pb2
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2
from crm_contacts.domain import events
from crm_contacts.domain.model import (
    Company,
    Contact,
    ContactTimelineEntry,
    Identity,
    IdentityKind,
    TimelineEntry,
    summarise,
)
from crm_contacts.store.privacy import ConsentRecord
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


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def contact_to_proto(contact: Contact) -> contacts_pb2.Contact:
    message = contacts_pb2.Contact(
        id=str(contact.id),
        workspace_id=contact.workspace_id,
        display_name=contact.display_name,
        identities=[identity_to_proto(i) for i in contact.identities],
        first_name=contact.first_name,
        last_name=contact.last_name,
        lifecycle_stage=contact.lifecycle_stage.value,
        owner_id=contact.owner_id or "",
        tags=list(contact.tags),
        custom_fields=_struct(contact.custom),
        version=contact.version,
        companies=[contacts_pb2.CompanyLink(company_id=str(c.company_id), name=c.name, role=c.role)
                   for c in contact.companies],
    )
    message.created_at.FromDatetime(contact.created_at)
    if contact.updated_at is not None:
        message.updated_at.FromDatetime(contact.updated_at)
    if contact.last_seen_at is not None:
        message.last_seen_at.FromDatetime(contact.last_seen_at)
    return message


def _contact_event(type_: str, contact_id: UUID, workspace_id: str, payload: Message) -> Event:
    return make_event(topic=CONTACTS, type=type_, source=events.SOURCE, workspace=workspace_id,
                      subject=str(contact_id), payload=payload)


def contact_created(contact: Contact) -> Event:
    payload = events_pb2.ContactCreated(contact=contact_to_proto(contact))
    return _contact_event(events.CONTACT_CREATED, contact.id, contact.workspace_id, payload)


def contact_updated(contact: Contact, changed: list[str]) -> Event:
    payload = events_pb2.ContactUpdated(contact=contact_to_proto(contact), changed=changed)
    return _contact_event(events.CONTACT_UPDATED, contact.id, contact.workspace_id, payload)


def contact_merged(workspace_id: str, survivor_id: UUID, loser_id: UUID) -> Event:
    payload = events_pb2.ContactMerged(workspace_id=workspace_id, survivor_id=str(survivor_id),
                                       loser_id=str(loser_id))
    return _contact_event(events.CONTACT_MERGED, loser_id, workspace_id, payload)


def contact_erased(workspace_id: str, contact_id: UUID) -> Event:
    payload = events_pb2.ContactErased(workspace_id=workspace_id, contact_id=str(contact_id))
    return _contact_event(events.CONTACT_ERASED, contact_id, workspace_id, payload)


def consent_changed(workspace_id: str, contact_id: UUID, record: ConsentRecord) -> Event:
    payload = events_pb2.ConsentChanged(workspace_id=workspace_id, contact_id=str(contact_id),
                                        consent=consent_to_proto(record))
    return _contact_event(events.CONSENT_CHANGED, contact_id, workspace_id, payload)


def consent_to_proto(record: ConsentRecord) -> contacts_pb2.Consent:
    consent = contacts_pb2.Consent(channel=record.channel, purpose=record.purpose, status=record.status,
                                   source=record.source)
    consent.at.FromDatetime(record.at)
    return consent


def company_to_proto(company: Company) -> contacts_pb2.Company:
    return contacts_pb2.Company(id=str(company.id), workspace_id=company.workspace_id, name=company.name,
                                domains=list(company.domains), industry=company.industry or "",
                                size=company.size or 0, custom_fields=_struct(company.custom),
                                version=company.version)


def company_changed(type_: str, company: Company) -> Event:
    payload = events_pb2.CompanyChanged(company=company_to_proto(company))
    return make_event(topic=CONTACTS, type=type_, source=events.SOURCE, workspace=company.workspace_id,
                      subject=str(company.id), payload=payload)



def money_text(amount_minor: int, currency: str) -> str:
    """An amount in minor units as a person reads it: 4990 EUR -> "49.90 EUR" (JPY has no
    minor unit, BHD three; the currencies of ISO 4217 with other than two)."""
    digits = _MINOR_DIGITS.get(currency.upper(), 2)
    sign = "-" if amount_minor < 0 else ""
    whole, part = divmod(abs(amount_minor), 10 ** digits)
    return f"{sign}{whole}.{part:0{digits}d} {currency}" if digits else f"{sign}{whole} {currency}"


_MINOR_DIGITS = {code: 0 for code in ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
                                      "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF")} | {
    code: 3 for code in ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")}


def timeline_entry_of(recorded: ingest_events.InteractionRecorded) -> ContactTimelineEntry:
    """The contact an interaction belongs to, and its line on that contact's timeline."""
    item = recorded.interaction
    channel = common_pb2.Channel.Name(item.channel).removeprefix("CHANNEL_").lower()
    direction = interaction_pb2.Direction.Name(item.direction).removeprefix("DIRECTION_").lower()
    kind = interaction_pb2.InteractionKind.Name(item.kind).removeprefix("INTERACTION_KIND_").lower()
    if item.HasField("order"):
        total = item.order.total
        summary = summarise(f"{kind.capitalize()} {item.order.order_id}: "
                            f"{money_text(total.amount_minor, total.currency)}", "")
    else:
        summary = summarise(item.subject, item.text)
    entry = TimelineEntry(
        entry_id=f"interaction:{item.id}",
        # "interaction" for a message (and events from before interactions had a kind);
        # "auto_reply", "bounce", "complaint", "order", "refund" for the rest.
        kind="interaction" if kind in ("message", "unspecified") else kind,
        channel=channel,
        direction=direction,
        summary=summary,
        occurred_at=item.occurred_at.ToDatetime(tzinfo=UTC),
    )
    return ContactTimelineEntry(UUID(item.contact_id), entry)
