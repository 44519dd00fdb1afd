"""Contacts' domain: pure values and rules, no I/O."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

from crm_contacts.domain.errors import InvalidCursor, InvalidIdentity


class IdentityKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CHAT_VISITOR = "chat_visitor"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    X = "x"


@dataclass(frozen=True)
class Identity:
    kind: IdentityKind
    value: str


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")


def normalise_identity(kind: IdentityKind, raw: str) -> Identity:
    """The one spelling of an identity under which it is stored and matched."""
    value = raw.strip()
    if kind is IdentityKind.EMAIL:
        value = value.lower()
        if not _EMAIL.match(value):
            raise InvalidIdentity(kind.value, "not an email address")
    elif kind in (IdentityKind.PHONE, IdentityKind.WHATSAPP):
        value = re.sub(r"[\s().-]", "", value)
        if value.startswith("00"):
            value = "+" + value[2:]
        if not _PHONE.match(value):
            raise InvalidIdentity(kind.value, "not an E.164 phone number")
    elif kind is IdentityKind.X:
        value = value.lstrip("@").lower()
    if not value or len(value) > 320:
        raise InvalidIdentity(kind.value, "empty or too long")
    return Identity(kind, value)


@dataclass(frozen=True)
class Resolution:
    identity: Identity
    contact_id: UUID | None
    created: bool


@dataclass(frozen=True)
class Contact:
    id: UUID
    workspace_id: str
    display_name: str
    identities: tuple[Identity, ...]
    created_at: datetime
    last_seen_at: datetime | None


@dataclass(frozen=True)
class TimelineEntry:
    entry_id: str
    kind: str
    channel: str
    direction: str
    summary: str
    occurred_at: datetime


@dataclass(frozen=True)
class ContactTimelineEntry:
    contact_id: UUID
    entry: TimelineEntry


@dataclass(frozen=True)
class TimelinePosition:
    """Where a timeline page ends: entries are ordered newest first, then by id."""

    occurred_at: datetime
    entry_id: str

    def encode(self) -> str:
        raw = f"{self.occurred_at.isoformat()}|{self.entry_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> TimelinePosition:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            stamp, entry_id = raw.split("|", 1)
            return cls(_utc(datetime.fromisoformat(stamp)), entry_id)
        except (ValueError, UnicodeDecodeError, OverflowError) as exc:
            raise InvalidCursor() from exc


def _utc(stamp: datetime) -> datetime:
    if stamp.tzinfo is None:
        raise ValueError("a cursor's time has a zone")
    return stamp.astimezone(UTC)


def summarise(subject: str, text: str, limit: int = 140) -> str:
    """A timeline line: the subject, else the start of the text."""
    line = subject.strip() or " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
