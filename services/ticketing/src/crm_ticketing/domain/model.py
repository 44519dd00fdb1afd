"""Ticketing's domain: threading rules and the ticket. Pure."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from crm_ticketing.domain.replies import token_in, token_key


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    SOLVED = "solved"
    CLOSED = "closed"


class TicketPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class TicketType(StrEnum):
    QUESTION = "question"
    INCIDENT = "incident"
    PROBLEM = "problem"
    TASK = "task"


@dataclass(frozen=True)
class InboundMessage:
    """What threading needs to know about one inbound interaction."""

    interaction_id: str
    workspace_id: str
    contact_id: UUID
    channel: str
    subject: str
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    conversation_id: str
    occurred_at: datetime
    # What the customer wrote (the plain text part).
    text: str = ""
    # The identity they wrote from, as contacts names its kind ("email", "chat_visitor"...).
    sender_kind: str = ""
    sender: str = ""
    # References to the files that came with it, kept by ingest: {ref, filename, content_type,
    # size}, ref being ingest's download path.
    attachments: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ContactMerge:
    """Contacts merged ``loser_id`` into ``survivor_id``: its tickets are the survivor's now."""

    loser_id: UUID
    survivor_id: UUID


@dataclass(frozen=True)
class Ticket:
    id: UUID
    workspace_id: str
    contact_id: UUID
    channel: str
    subject: str
    status: TicketStatus
    message_count: int
    created_at: datetime
    priority: TicketPriority = TicketPriority.NORMAL
    type: TicketType | None = None
    tags: tuple[str, ...] = ()
    # Bumped by every change: the HTTP ETag.
    version: int = 1
    updated_at: datetime | None = None
    # When it last went to solved; None until then and after a reopen.
    solved_at: datetime | None = None
    # Where replies go: the identity the customer wrote from when it opened.
    requester_kind: str = ""
    requester: str = ""
    # Who works it: a team and an agent (the agent's subject); None when not assigned.
    team_id: UUID | None = None
    assignee: str | None = None
    # Custom field values by key (crmkit.fields checks them against the workspace's
    # definitions); a key is absent rather than null.
    custom_fields: Mapping[str, Any] = field(default_factory=dict)


def parent_keys(message: InboundMessage) -> list[str]:
    """Keys of earlier messages this one answers, most specific first. Never the subject
    alone: only a ticket token in it (``[#token]``, as replies' subjects carry), last, as the
    fallback for a customer's email whose client lost In-Reply-To and References."""
    keys: list[str] = []
    if message.conversation_id:
        keys.append(f"conv:{message.channel}:{message.conversation_id}")
    if message.in_reply_to:
        keys.append(f"msgid:{message.in_reply_to}")
    keys.extend(f"msgid:{ref}" for ref in reversed(message.references))
    token = token_in(message.subject)
    if token:
        keys.append(token_key(token))
    return list(dict.fromkeys(keys))


def own_keys(message: InboundMessage) -> list[str]:
    """Keys by which later messages can find this one's ticket."""
    keys = [f"msgid:{message.message_id}"] if message.message_id else []
    if message.conversation_id:
        keys.append(f"conv:{message.channel}:{message.conversation_id}")
    return keys


def encode_cursor(created_at: datetime, ticket_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{ticket_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Raises ValueError for anything this API did not give out."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    stamp, ticket_id = raw.split("|", 1)
    created_at = datetime.fromisoformat(stamp)
    if created_at.tzinfo is None:
        raise ValueError("a cursor's time has a zone")
    try:
        return created_at.astimezone(UTC), UUID(ticket_id)
    except OverflowError as exc:
        raise ValueError("a cursor's time is out of range") from exc
