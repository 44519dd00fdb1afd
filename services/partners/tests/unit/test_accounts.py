"""API keys and signing secrets as handed out: their shape, and what a key's list shows."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from crm_partners.domain.accounts import (
    SHOWN_PREFIX,
    ApiKey,
    looks_like_api_key,
    new_api_key,
    new_webhook_secret,
    unknown_scopes,
)


def test_api_keys_are_crmpk_and_32_random_url_safe_bytes() -> None:
    key = new_api_key()
    assert key.startswith("crmpk_")
    assert len(base64.urlsafe_b64decode(key[6:] + "=" * (-len(key[6:]) % 4))) == 32
    assert looks_like_api_key(key)
    assert key != new_api_key()
    assert len(key[:SHOWN_PREFIX]) == 12


def test_only_crmpk_values_of_a_sane_length_look_like_keys() -> None:
    assert not looks_like_api_key("Bearer abc")
    assert not looks_like_api_key("crmpk_" + "a" * 200)


def test_webhook_secrets_follow_standard_webhooks() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) >= 24


def test_partner_keys_get_partner_scopes_only() -> None:
    assert unknown_scopes(["events:read", "subscriptions:write", "deliveries:replay"]) == []
    assert unknown_scopes(["events:read", "partners:admin", "*"]) == ["*", "partners:admin"]


def test_a_key_is_usable_until_revoked_or_expired() -> None:
    now = datetime.now(UTC)
    key = ApiKey(uuid4(), uuid4(), "k", "crmpk_abcdef", ("events:read",), now, None, None, None)
    assert key.usable(now)
    assert replace(key, expires_at=now + timedelta(seconds=1)).usable(now)
    assert not replace(key, expires_at=now).usable(now)
    assert not replace(key, revoked_at=now).usable(now)
