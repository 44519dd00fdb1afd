"""The normalised interaction every channel becomes. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_ingest.domain.message import InboundMessage, MediaRef
from crmkit.ids import derived_id


@dataclass(frozen=True)
class Interaction:
    id: str
    workspace_id: str
    contact_id: str
    channel: str
    direction: str
    sender_kind: str
    sender: str
    sender_name: str
    recipients: tuple[str, ...]  # identities of sender_kind
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    subject: str
    text: str
    occurred_at: datetime
    received_at: datetime
    conversation_id: str = ""
    media: tuple[MediaRef, ...] = ()


def interaction_id(workspace_id: str, channel: str, provider_message_id: str) -> str:
    """The same provider message in the same workspace always gets the same id."""
    return str(derived_id(workspace_id, channel, provider_message_id))


def inbound_interaction(
    workspace_id: str, contact_id: str, message: InboundMessage, received_at: datetime
) -> Interaction:
    return Interaction(
        id=interaction_id(workspace_id, message.channel, message.message_id),
        workspace_id=workspace_id,
        contact_id=contact_id,
        channel=message.channel,
        direction="inbound",
        sender_kind=message.sender_kind,
        sender=message.sender,
        sender_name=message.sender_name,
        recipients=message.recipients,
        message_id=message.message_id,
        in_reply_to=message.in_reply_to,
        references=message.references,
        subject=message.subject,
        text=message.text,
        # A sender's clock may lie or be missing; never place a message in the future.
        occurred_at=min(message.sent_at, received_at) if message.sent_at else received_at,
        received_at=received_at,
        conversation_id=message.conversation_id,
        media=message.media,
    )
