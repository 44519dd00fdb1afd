"""What delivering an outbound message means, whatever the channel: one ``Delivery`` per
channel, chosen by the outbound worker. Pure types; the channels live beside this module."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class OutboundRequest:
    """One OutboundMessage from crm.outbound.v1, as the domain sees it."""

    id: str  # the requester's: the same id is delivered once
    workspace_id: str
    contact_id: str
    channel: str  # "email", "chat", "whatsapp", "messenger", "instagram", "telegram", "sms"
    recipient_kind: str  # contacts identity kind: "email", "phone", "chat_visitor", ...
    recipient: str
    text: str
    cc: tuple[str, ...] = ()
    subject: str = ""
    html: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    conversation_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    from_address: str = ""
    origin: str = ""
    reference: str = ""


@dataclass(frozen=True)
class Sent:
    """A provider took the message."""

    provider_message_id: str  # email: our Message-ID (without <>); others: the provider's id
    at: datetime
    sender: str = ""  # the identity it was sent from (our address, business number...)
    metadata: dict[str, str] = field(default_factory=dict)


class DeliveryFailed(Exception):
    """The provider refused the message. ``permanent``: retrying cannot help (a bad address,
    a blocked number, a 4xx), so the message is dead-lettered and reported failed; otherwise
    the worker retries with backoff."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Delivery(Protocol):
    """Sends one channel's messages. Raises DeliveryFailed, or a transient error
    (ConnectionError, TimeoutError) that the worker retries."""

    channel: str

    async def send(self, message: OutboundRequest) -> Sent: ...
