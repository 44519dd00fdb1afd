"""Segments and their audiences: pure values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crm_contacts.domain.model import Contact


@dataclass(frozen=True)
class Segment:
    id: UUID
    workspace_id: str
    name: str
    # The rules as the caller wrote them (a JSON object); domain.segments parses them.
    rules: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConsentState:
    channel: str
    purpose: str
    status: str
    source: str
    at: datetime


@dataclass(frozen=True)
class AudienceMember:
    """A segment member as a campaign needs it: the contact, with its identities, and consent."""

    contact: Contact
    consents: tuple[ConsentState, ...]
