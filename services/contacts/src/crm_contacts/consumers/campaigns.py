"""crm.campaigns.v1 -> consent: an unsubscribe withdraws consent for that channel and purpose."""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from crm.campaigns.v1 import events_pb2
from crm_contacts.domain.events import RECIPIENT_UNSUBSCRIBED
from crm_contacts.service.privacy import ConsentChange, PrivacyService
from crm_contacts.store.privacy import ConsentRecord
from crmkit.kafka import Envelope, Handlers, PermanentError, consume


def consent_change(envelope: Envelope, event: events_pb2.RecipientUnsubscribed) -> ConsentChange:
    try:
        contact_id = UUID(event.contact_id)
    except ValueError as exc:
        raise PermanentError(f"unsubscribe without a valid contact id: {exc}") from exc
    if not event.channel or not event.purpose:
        raise PermanentError("unsubscribe without a channel and purpose")
    at = event.at.ToDatetime(tzinfo=UTC) if event.HasField("at") else envelope.time
    record = ConsentRecord(channel=event.channel, purpose=event.purpose, status="withdrawn",
                           source=f"campaign:{event.campaign_id}" if event.campaign_id else "campaigns",
                           proof=event.method, at=at)
    return ConsentChange(contact_id, record)


def campaigns_handlers(service: PrivacyService) -> Handlers:
    return consume(RECIPIENT_UNSUBSCRIBED, events_pb2.RecipientUnsubscribed, consent_change,
                   service.record_consent_changes, workspace_of=lambda event: event.workspace_id)
