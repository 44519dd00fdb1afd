"""Proto <-> domain mapping for segments: their events and the audience a campaign streams."""

from __future__ import annotations

import json

from crm.contacts.v1 import contacts_pb2, events_pb2
from crm_contacts.domain import events
from crm_contacts.domain.segment_events import SEGMENT_MEMBERSHIP_CHANGED, MembershipChange
from crm_contacts.domain.segment_model import AudienceMember, ConsentState, Segment
from crm_contacts.wire import contact_to_proto
from crmkit.kafka import Event, make_event
from crmkit.topics import CONTACTS


def segment_to_proto(segment: Segment) -> events_pb2.Segment:
    return events_pb2.Segment(id=str(segment.id), workspace_id=segment.workspace_id, name=segment.name,
                              rules_json=json.dumps(segment.rules, separators=(",", ":")),
                              version=segment.version)


def segment_changed(event_type: str, segment: Segment) -> Event:
    """``crm.contacts.segment.created|updated|deleted.v1``, keyed by the segment."""
    payload = events_pb2.SegmentChanged(segment=segment_to_proto(segment))
    return make_event(topic=CONTACTS, type=event_type, source=events.SOURCE,
                      workspace=segment.workspace_id, subject=str(segment.id), payload=payload)


def membership_changed(workspace_id: str, change: MembershipChange) -> Event:
    """Keyed by the contact, so it stays in order with the contact's own events."""
    payload = events_pb2.SegmentMembershipChanged(
        workspace_id=workspace_id, segment_id=str(change.segment_id), contact_id=str(change.contact_id),
        member=change.member,
    )
    return make_event(topic=CONTACTS, type=SEGMENT_MEMBERSHIP_CHANGED, source=events.SOURCE,
                      workspace=workspace_id, subject=str(change.contact_id), payload=payload)


def consent_to_proto(consent: ConsentState) -> contacts_pb2.Consent:
    message = contacts_pb2.Consent(channel=consent.channel, purpose=consent.purpose,
                                   status=consent.status, source=consent.source)
    message.at.FromDatetime(consent.at)
    return message


def audience_member_to_proto(member: AudienceMember) -> contacts_pb2.AudienceMember:
    return contacts_pb2.AudienceMember(contact=contact_to_proto(member.contact),
                                       consents=[consent_to_proto(c) for c in member.consents])
