"""Contacts' domain: pure values and rules, no I/O."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import phonenumbers

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


PHONE_KINDS = frozenset({IdentityKind.PHONE, IdentityKind.WHATSAPP})

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")


def normalise_phone(raw: str, region: str | None = None) -> str | None:
    """E.164 for a possible phone number; ``region`` (ISO 3166 alpha-2) reads national
    numbers. None when it is not a phone number."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_identity(kind: IdentityKind, raw: str, region: str | None = None) -> Identity:
    """The one spelling of an identity under which it is stored and matched."""
    value = raw.strip()
    if kind is IdentityKind.EMAIL:
        value = value.lower()
        if not _EMAIL.match(value):
            raise InvalidIdentity(kind.value, "not an email address")
    elif kind in PHONE_KINDS:
        phone = normalise_phone(value, region)
        if phone is None:
            raise InvalidIdentity(kind.value, "not a phone number (E.164, or national with a region)")
        value = phone
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


class LifecycleStage(StrEnum):
    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    EVANGELIST = "evangelist"


@dataclass(frozen=True)
class CompanyLink:
    company_id: UUID
    name: str
    role: str


@dataclass(frozen=True)
class Contact:
    id: UUID
    workspace_id: str
    display_name: str
    identities: tuple[Identity, ...]
    created_at: datetime
    last_seen_at: datetime | None
    first_name: str = ""
    last_name: str = ""
    addresses: tuple[dict[str, str], ...] = ()
    owner_id: str | None = None
    lifecycle_stage: LifecycleStage = LifecycleStage.SUBSCRIBER
    tags: tuple[str, ...] = ()
    custom: dict[str, Any] = field(default_factory=dict)
    companies: tuple[CompanyLink, ...] = ()
    version: int = 1
    updated_at: datetime | None = None
    interaction_count: int = 0
    erased: bool = False

    def snapshot(self) -> dict[str, Any]:
        """The record as JSON, for the audit log and merge history."""
        return {
            "id": str(self.id),
            "display_name": self.display_name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "identities": [{"kind": i.kind.value, "value": i.value} for i in self.identities],
            "addresses": list(self.addresses),
            "owner_id": self.owner_id,
            "lifecycle_stage": self.lifecycle_stage.value,
            "tags": list(self.tags),
            "custom_fields": self.custom,
            "companies": [{"company_id": str(c.company_id), "role": c.role} for c in self.companies],
            "version": self.version,
        }


@dataclass(frozen=True)
class Company:
    id: UUID
    workspace_id: str
    name: str
    domains: tuple[str, ...]
    industry: str | None
    size: int | None
    custom: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime

    def snapshot(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "domains": list(self.domains),
                "industry": self.industry, "size": self.size, "custom_fields": self.custom,
                "version": self.version}


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
