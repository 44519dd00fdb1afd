"""The normalised interaction every channel becomes. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crm_ingest.domain.email import ParsedEmail
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
    recipients: tuple[str, ...]
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    subject: str
    text: str
    occurred_at: datetime
    received_at: datetime


def interaction_id(workspace_id: str, channel: str, provider_message_id: str) -> str:
    """The same provider message in the same workspace always gets the same id."""
    return str(derived_id(workspace_id, channel, provider_message_id))


def email_interaction(
    workspace_id: str, contact_id: str, email: ParsedEmail, received_at: datetime
) -> Interaction:
    return Interaction(
        id=interaction_id(workspace_id, "email", email.message_id),
        workspace_id=workspace_id,
        contact_id=contact_id,
        channel="email",
        direction="inbound",
        sender_kind="email",
        sender=email.sender_address,
        sender_name=email.sender_name,
        recipients=email.recipients,
        message_id=email.message_id,
        in_reply_to=email.in_reply_to,
        references=email.references,
        subject=email.subject,
        text=email.text,
        # A sender's Date may lie or be missing; never place a message in the future.
        occurred_at=min(email.sent_at, received_at) if email.sent_at else received_at,
        received_at=received_at,
    )
