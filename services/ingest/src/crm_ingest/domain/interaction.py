"""The normalised interaction every channel becomes. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from crm_ingest.domain.message import InboundMessage, MediaRef, Order
from crm_ingest.outbound.base import OutboundRequest, Sent
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
    kind: str = "message"  # message, auto_reply, bounce, complaint, order, refund
    quoted_text: str = ""
    has_html: bool = False  # the sanitised HTML is kept beside it (InteractionsStore.html)
    attachments: tuple[AttachmentRef, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    order: Order | None = None
    outbound_id: str = ""  # outbound: the OutboundMessage it delivered


@dataclass(frozen=True)
class AttachmentRef:
    """An attachment as the interaction describes it; the bytes are stored apart."""

    index: int
    filename: str
    content_type: str
    size: int
    sha256: str
    stored: bool  # False when it was over the attachment limit


def interaction_id(workspace_id: str, channel: str, provider_message_id: str) -> str:
    """The same provider message in the same workspace always gets the same id."""
    return str(derived_id(workspace_id, channel, provider_message_id))


def inbound_interaction(
    workspace_id: str, contact_id: str, message: InboundMessage, received_at: datetime,
    max_attachment_bytes: int = 0,
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
        kind=message.kind,
        quoted_text=message.quoted_text,
        has_html=bool(message.html),
        attachments=tuple(
            AttachmentRef(index, a.filename, a.content_type, len(a.data), a.sha256,
                          stored=len(a.data) <= max_attachment_bytes)
            for index, a in enumerate(message.attachments)),
        metadata=dict(message.metadata),
        order=message.order,
    )


def outbound_interaction(request: OutboundRequest, sent: Sent) -> Interaction:
    """The message ingest delivered, as an interaction of the person it went to. Its id is
    derived from the provider's message id, like an inbound message's, so that the provider's
    delivery statuses find it (an email's Message-ID is derived from the request id, so the
    same request sent twice is one interaction)."""
    return Interaction(
        id=interaction_id(request.workspace_id, request.channel, sent.provider_message_id),
        workspace_id=request.workspace_id,
        contact_id=request.contact_id,
        channel=request.channel,
        direction="outbound",
        sender_kind=request.recipient_kind,
        sender=sent.sender,
        sender_name="",
        recipients=(request.recipient, *request.cc),
        message_id=sent.provider_message_id,
        in_reply_to=request.in_reply_to,
        references=request.references,
        subject=request.subject,
        text=request.text,
        occurred_at=sent.at,
        received_at=sent.at,
        conversation_id=request.conversation_id,
        has_html=bool(request.html),
        # Who asked, so that the provider's later statuses can be reported back to them.
        metadata={**sent.metadata,
                  **{k: v for k, v in (("origin", request.origin), ("reference", request.reference)) if v}},
        outbound_id=request.id,
    )


@dataclass(frozen=True)
class ContactMerge:
    loser_id: str
    survivor_id: str
