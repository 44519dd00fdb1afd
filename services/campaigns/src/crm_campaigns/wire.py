"""Proto <-> domain mapping for templates, campaigns and sends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from crm.campaigns.v1 import events_pb2
from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import outbound_pb2
from crm_campaigns.domain import events
from crm_campaigns.domain.model import Campaign
from crmkit.contacts import identity
from crmkit.kafka import Event, make_event
from crmkit.topics import CAMPAIGNS, OUTBOUND

# A contact's time zone, when contacts holds one: the first of these custom fields.
TIME_ZONE_FIELDS = ("time_zone", "timezone", "tz")


@dataclass(frozen=True)
class Recipient:
    """A member of a campaign's audience, as the sender needs it."""

    contact_id: str
    email: str
    marketing_consent: bool
    time_zone: str
    contact: dict[str, Any] = field(default_factory=dict)
    company: dict[str, Any] = field(default_factory=dict)


def _email(contact: contacts_pb2.Contact) -> str:
    for item in contact.identities:
        if item.kind == common_pb2.IDENTITY_KIND_EMAIL and item.value:
            return str(item.value)
    return ""


def email_consent(consents: Any, channel: str = "email", purpose: str = "marketing") -> bool:
    """Whether the latest consent for email marketing is granted (none at all: no consent)."""
    latest: tuple[datetime, str] | None = None
    for c in consents:
        if c.channel.lower() != channel or c.purpose.lower() != purpose:
            continue
        at = c.at.ToDatetime(tzinfo=UTC) if c.HasField("at") else datetime.min.replace(tzinfo=UTC)
        if latest is None or at >= latest[0]:
            latest = (at, c.status.lower())
    return latest is not None and latest[1] == "granted"


def contact_values(contact: contacts_pb2.Contact) -> dict[str, Any]:
    custom = MessageToDict(contact.custom_fields) if contact.HasField("custom_fields") else {}
    return {"id": contact.id, "first_name": contact.first_name, "last_name": contact.last_name,
            "display_name": contact.display_name, "email": _email(contact),
            "lifecycle_stage": contact.lifecycle_stage, "tags": list(contact.tags), "custom": custom}


def company_values(contact: contacts_pb2.Contact,
                   company: contacts_pb2.Company | None = None) -> dict[str, Any]:
    if not contact.companies:
        return {}
    link = contact.companies[0]
    values: dict[str, Any] = {"id": link.company_id, "name": link.name, "role": link.role}
    if company is not None:
        values.update(industry=company.industry, size=company.size, domains=list(company.domains))
    return values


def recipient_of(member: contacts_pb2.AudienceMember) -> Recipient:
    contact = contact_values(member.contact)
    custom = contact["custom"]
    tz = next((str(custom[k]) for k in TIME_ZONE_FIELDS if isinstance(custom.get(k), str) and custom[k]), "")
    return Recipient(contact_id=member.contact.id, email=contact["email"],
                     marketing_consent=email_consent(member.consents), time_zone=tz,
                     contact=contact, company=company_values(member.contact))


def outbound_message(*, workspace_id: str, send_id: str, contact_id: str, address: str, subject: str,
                     html: str, text: str, headers: Mapping[str, str]) -> Event:
    """The message for ingest to deliver (crm.outbound.v1); its id is the send id, so ingest
    delivers it once however often it is handed over."""
    message = outbound_pb2.OutboundMessage(
        id=send_id, contact_id=contact_id, channel=common_pb2.CHANNEL_EMAIL,
        recipient=identity("email", address), subject=subject, text=text, html=html,
        headers=dict(headers), origin=events.ORIGIN, reference=send_id)
    return make_event(topic=OUTBOUND, type=events.OUTBOUND_REQUESTED, source=events.SOURCE,
                      workspace=workspace_id, subject=contact_id, payload=message)


def _ts(message: Message, name: str, at: datetime | None) -> None:
    if at is not None:
        getattr(message, name).FromDatetime(at)


_LIFECYCLE: dict[str, tuple[str, type[Message]]] = {
    "scheduled": (events.CAMPAIGN_SCHEDULED, events_pb2.CampaignScheduled),
    "started": (events.CAMPAIGN_STARTED, events_pb2.CampaignStarted),
    "paused": (events.CAMPAIGN_PAUSED, events_pb2.CampaignPaused),
    "resumed": (events.CAMPAIGN_RESUMED, events_pb2.CampaignResumed),
    "cancelled": (events.CAMPAIGN_CANCELLED, events_pb2.CampaignCancelled),
}


def campaign_event(campaign: Campaign, what: str, at: datetime) -> Event:
    """``campaign.scheduled|started|paused|resumed|cancelled``, keyed by workspace and campaign."""
    type_, cls = _LIFECYCLE[what]
    payload = cls(workspace_id=campaign.workspace_id, campaign_id=campaign.id)
    _ts(payload, "at", at)
    if what == "scheduled":
        _ts(payload, "schedule_at", campaign.schedule_at)
    return make_event(topic=CAMPAIGNS, type=type_, source=events.SOURCE, workspace=campaign.workspace_id,
                      subject=campaign.id, payload=payload)


def campaign_completed(campaign: Campaign, at: datetime, queued: int, suppressed: int) -> Event:
    payload = events_pb2.CampaignCompleted(workspace_id=campaign.workspace_id, campaign_id=campaign.id,
                                           queued=queued, suppressed=suppressed)
    _ts(payload, "at", at)
    return make_event(topic=CAMPAIGNS, type=events.CAMPAIGN_COMPLETED, source=events.SOURCE,
                      workspace=campaign.workspace_id, subject=campaign.id, payload=payload)


@dataclass(frozen=True)
class DeliveryReport:
    send_id: str
    status: str
    at: datetime
    error: str


def delivery_of(updated: ingest_events.DeliveryUpdated) -> DeliveryReport | None:
    """A delivery status of a campaign message; None for other requesters' messages."""
    if updated.origin != events.ORIGIN or not updated.reference:
        return None
    at = updated.at.ToDatetime(tzinfo=UTC) if updated.HasField("at") else datetime.now(UTC)
    return DeliveryReport(send_id=updated.reference, status=updated.status.lower(), at=at,
                          error=updated.error)


_MESSAGE: dict[str, tuple[str, type[Message]]] = {
    "sent": (events.MESSAGE_SENT, events_pb2.MessageSent),
    "delivered": (events.MESSAGE_DELIVERED, events_pb2.MessageDelivered),
    "bounced": (events.MESSAGE_BOUNCED, events_pb2.MessageBounced),
    "failed": (events.MESSAGE_FAILED, events_pb2.MessageFailed),
}


def message_event(send: Mapping[str, Any], status: str, at: datetime, error: str = "") -> Event:
    """``message.sent|delivered|bounced|failed`` of a campaign send, keyed by workspace and contact."""
    type_, cls = _MESSAGE[status]
    payload = cls(workspace_id=send["workspace_id"], contact_id=send["contact_id"],
                  campaign_id=send["campaign_id"], message_id=send["_id"])
    if error and status in ("bounced", "failed"):
        payload.error = error  # type: ignore[attr-defined]
    _ts(payload, "at", at)
    return make_event(topic=CAMPAIGNS, type=type_, source=events.SOURCE, workspace=send["workspace_id"],
                      subject=send["contact_id"], payload=payload)
