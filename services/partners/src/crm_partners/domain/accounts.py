"""Partners, their API keys and subscriptions: the records and the rules on them. Pure."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from crm_partners.api.caller import PARTNER_SCOPES

PartnerStatus = Literal["active", "suspended"]
Delivery = Literal["webhook", "kafka", "pull"]
SubscriptionStatus = Literal["enabled", "disabled"]

KEY_PREFIX = "crmpk_"
# What a key's list shows to tell keys apart: "crmpk_" and six characters of the secret.
SHOWN_PREFIX = len(KEY_PREFIX) + 6
MAX_KEY_LENGTH = 100
SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks marker, not a secret)


@dataclass(frozen=True)
class Partner:
    id: UUID
    workspace_id: str
    name: str
    description: str
    status: PartnerStatus
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ApiKey:
    """A partner's API key, without its secret: only its SHA-256 is kept."""

    id: UUID
    partner_id: UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class Subscription:
    id: UUID
    workspace_id: str
    partner_id: UUID
    name: str
    event_types: tuple[str, ...]
    delivery: Delivery
    filters: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    status: SubscriptionStatus = "enabled"
    disabled_reason: str | None = None
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


def new_api_key() -> str:
    """``crmpk_`` and 32 random bytes, URL-safe: shown once, stored as its SHA-256."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_api_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) <= MAX_KEY_LENGTH


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def unknown_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes a partner key cannot have (anything beyond PARTNER_SCOPES)."""
    return sorted(set(scopes) - PARTNER_SCOPES)
