"""Proto <-> domain mapping for ingest."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from crm.common.v1 import common_pb2
from crm.ingest.v1 import events_pb2, interaction_pb2, raw_pb2
from crm_ingest.domain import events
from crm_ingest.domain.interaction import Interaction
from crmkit.ids import uuid7
from crmkit.kafka import Event, make_event, partition_key
from crmkit.topics import INGEST_RAW, INTERACTIONS


def channel_name(channel: str) -> str:
    """The proto enum label of a channel ("email" -> "CHANNEL_EMAIL")."""
    return f"CHANNEL_{channel.upper()}"


def channel_of(channel: int) -> str:
    """A proto channel as the domain names it (CHANNEL_WHATSAPP -> "whatsapp")."""
    return common_pb2.Channel.Name(channel).removeprefix("CHANNEL_").lower()


def identity(kind: str, value: str) -> common_pb2.Identity:
    return common_pb2.Identity(kind=f"IDENTITY_KIND_{kind.upper()}", value=value)


def interaction_to_proto(item: Interaction) -> interaction_pb2.Interaction:
    message = interaction_pb2.Interaction(
        id=item.id,
        workspace_id=item.workspace_id,
        contact_id=item.contact_id,
        channel=channel_name(item.channel),
        direction=f"DIRECTION_{item.direction.upper()}",
        sender=identity(item.sender_kind, item.sender),
        sender_name=item.sender_name,
        recipients=[identity(item.sender_kind, r) for r in item.recipients],
        thread=interaction_pb2.ThreadKeys(
            message_id=item.message_id, in_reply_to=item.in_reply_to, references=list(item.references),
            conversation_id=item.conversation_id,
        ),
        subject=item.subject,
        text=item.text,
        media=[interaction_pb2.MediaRef(kind=m.kind, provider_id=m.provider_id, mime_type=m.mime_type,
                                        caption=m.caption, filename=m.filename, sha256=m.sha256)
               for m in item.media],
    )
    message.occurred_at.FromDatetime(item.occurred_at)
    message.received_at.FromDatetime(item.received_at)
    return message


def interaction_recorded(item: Interaction, trace: Mapping[str, str] | None = None) -> Event:
    return make_event(
        trace=trace,
        topic=INTERACTIONS,
        type=events.INTERACTION_RECORDED,
        source=events.SOURCE,
        workspace=item.workspace_id,
        subject=item.contact_id,
        payload=events_pb2.InteractionRecorded(interaction=interaction_to_proto(item)),
    )


def raw_received(workspace_id: str, channel: str, source: str, content_type: str,
                 payload: bytes, sender: str | None) -> Event:
    """Keyed by the sender where it is known, so one person's messages keep their order."""
    raw = raw_pb2.RawInbound(channel=channel_name(channel), source=source,
                             content_type=content_type, payload=payload)
    raw.received_at.FromDatetime(datetime.now(UTC))
    raw_id = str(uuid7())
    return make_event(topic=INGEST_RAW, type=events.RAW_RECEIVED, source=events.SOURCE,
                      workspace=workspace_id, subject=raw_id, payload=raw, event_id=raw_id,
                      key=partition_key(workspace_id, f"{channel}:{sender or raw_id}"))
