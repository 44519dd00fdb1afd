"""SQL for partners, their API keys, subscriptions and the first signing secret of a webhook
subscription. Every query is scoped by workspace (the key lookup by hash finds it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_partners.domain.accounts import ApiKey, Partner, Subscription


def _partner(row: Any) -> Partner:
    return Partner(id=row["id"], workspace_id=row["workspace_id"], name=row["name"],
                   description=row["description"], status=row["status"], version=row["version"],
                   created_at=row["created_at"], updated_at=row["updated_at"])


def _key(row: Any) -> ApiKey:
    return ApiKey(id=row["id"], partner_id=row["partner_id"], name=row["name"], prefix=row["prefix"],
                  scopes=tuple(row["scopes"]), created_at=row["created_at"], expires_at=row["expires_at"],
                  revoked_at=row["revoked_at"], last_used_at=row["last_used_at"])


def _subscription(row: Any) -> Subscription:
    return Subscription(id=row["id"], workspace_id=row["workspace_id"], partner_id=row["partner_id"],
                        name=row["name"], event_types=tuple(row["event_types"]), delivery=row["delivery"],
                        filters=json.loads(row["filters"]), url=row["url"], status=row["status"],
                        disabled_reason=row["disabled_reason"], version=row["version"],
                        created_at=row["created_at"], updated_at=row["updated_at"])


@dataclass(frozen=True)
class KeyOwner:
    """Whom a usable API key belongs to, and whether its last use is worth recording again."""

    key_id: UUID
    workspace_id: str
    partner_id: UUID
    sha256: str
    scopes: tuple[str, ...]
    stale: bool


class AccountsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- partners ---

    async def insert_partner(self, partner: Partner) -> Partner:
        row = await self.conn.fetchrow(
            "INSERT INTO partners (id, workspace_id, name, description, status) VALUES ($1, $2, $3, $4, $5)"
            " RETURNING *",
            partner.id, partner.workspace_id, partner.name, partner.description, partner.status)
        return _partner(row)

    async def partner(self, workspace_id: str, partner_id: UUID, *, lock: bool = False) -> Partner | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM partners WHERE workspace_id = $1 AND id = $2"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            workspace_id, partner_id)
        return None if row is None else _partner(row)

    async def partners(self, workspace_id: str, after: UUID | None, limit: int) -> list[Partner]:
        rows = await self.conn.fetch(
            "SELECT * FROM partners WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id > $2)"
            " ORDER BY id LIMIT $3", workspace_id, after, limit)
        return [_partner(r) for r in rows]

    async def count_partners(self, workspace_id: str) -> int:
        count: int = await self.conn.fetchval("SELECT count(*) FROM partners WHERE workspace_id = $1",
                                              workspace_id)
        return count

    async def update_partner(self, partner: Partner) -> Partner:
        row = await self.conn.fetchrow(
            "UPDATE partners SET name = $3, description = $4, status = $5, version = version + 1,"
            " updated_at = now() WHERE workspace_id = $1 AND id = $2 RETURNING *",
            partner.workspace_id, partner.id, partner.name, partner.description, partner.status)
        return _partner(row)

    async def delete_partner(self, workspace_id: str, partner_id: UUID) -> bool:
        deleted = await self.conn.fetchval(
            "DELETE FROM partners WHERE workspace_id = $1 AND id = $2 RETURNING id", workspace_id, partner_id)
        return deleted is not None

    # --- API keys ---

    async def insert_key(self, workspace_id: str, key: ApiKey, sha256: str) -> ApiKey:
        row = await self.conn.fetchrow(
            "INSERT INTO partner_api_keys (id, workspace_id, partner_id, name, prefix, sha256, scopes,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            key.id, workspace_id, key.partner_id, key.name, key.prefix, sha256, list(key.scopes),
            key.expires_at)
        return _key(row)

    async def key(self, workspace_id: str, partner_id: UUID, key_id: UUID, *,
                  lock: bool = False) -> ApiKey | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM partner_api_keys WHERE workspace_id = $1 AND partner_id = $2 AND id = $3"  # noqa: S608
            + (" FOR UPDATE" if lock else ""), workspace_id, partner_id, key_id)
        return None if row is None else _key(row)

    async def keys(self, workspace_id: str, partner_id: UUID, after: UUID | None, limit: int) -> list[ApiKey]:
        rows = await self.conn.fetch(
            "SELECT * FROM partner_api_keys WHERE workspace_id = $1 AND partner_id = $2"
            " AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4", workspace_id, partner_id, after, limit)
        return [_key(r) for r in rows]

    async def count_usable_keys(self, workspace_id: str, partner_id: UUID) -> int:
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM partner_api_keys WHERE workspace_id = $1 AND partner_id = $2"
            " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
            workspace_id, partner_id)
        return count

    async def expire_key(self, workspace_id: str, key_id: UUID, at: datetime) -> ApiKey:
        row = await self.conn.fetchrow(
            "UPDATE partner_api_keys SET expires_at = $3 WHERE workspace_id = $1 AND id = $2 RETURNING *",
            workspace_id, key_id, at)
        return _key(row)

    async def revoke_key(self, workspace_id: str, partner_id: UUID, key_id: UUID) -> bool:
        """Revokes the key now (a key revoked before keeps its time); False when there is none."""
        found = await self.conn.fetchval(
            "UPDATE partner_api_keys SET revoked_at = coalesce(revoked_at, now())"
            " WHERE workspace_id = $1 AND partner_id = $2 AND id = $3 RETURNING id",
            workspace_id, partner_id, key_id)
        return found is not None

    async def key_owner(self, sha256: str) -> KeyOwner | None:
        """The owner of a usable key (not revoked, not expired, its partner active)."""
        row = await self.conn.fetchrow(
            "SELECT k.id, k.workspace_id, k.partner_id, k.sha256, k.scopes,"
            " (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute') AS stale"
            " FROM partner_api_keys k"
            " JOIN partners p ON p.id = k.partner_id AND p.workspace_id = k.workspace_id"
            " WHERE k.sha256 = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())"
            " AND p.status = 'active'", sha256)
        if row is None:
            return None
        return KeyOwner(row["id"], row["workspace_id"], row["partner_id"], row["sha256"],
                        tuple(row["scopes"]), row["stale"])

    async def key_used(self, key_id: UUID) -> None:
        await self.conn.execute(
            "UPDATE partner_api_keys SET last_used_at = now() WHERE id = $1"
            " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')", key_id)

    # --- subscriptions ---

    async def insert_subscription(self, sub: Subscription) -> Subscription:
        row = await self.conn.fetchrow(
            "INSERT INTO subscriptions (id, workspace_id, partner_id, name, event_types, filters, delivery,"
            " url, status) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9) RETURNING *",
            sub.id, sub.workspace_id, sub.partner_id, sub.name, list(sub.event_types),
            json.dumps(sub.filters), sub.delivery, sub.url, sub.status)
        return _subscription(row)

    async def insert_secret(self, secret_id: UUID, subscription_id: UUID, secret: str) -> None:
        await self.conn.execute(
            "INSERT INTO webhook_secrets (id, subscription_id, secret) VALUES ($1, $2, $3)",
            secret_id, subscription_id, secret)

    async def subscription(self, workspace_id: str, subscription_id: UUID, *,
                           lock: bool = False) -> Subscription | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM subscriptions WHERE workspace_id = $1 AND id = $2"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            workspace_id, subscription_id)
        return None if row is None else _subscription(row)

    async def subscriptions(self, workspace_id: str, partner_ids: Sequence[UUID], after: UUID | None = None,
                            limit: int | None = None) -> list[Subscription]:
        rows = await self.conn.fetch(
            "SELECT * FROM subscriptions WHERE workspace_id = $1 AND partner_id = ANY($2::uuid[])"
            " AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4",
            workspace_id, list(partner_ids), after, limit)
        return [_subscription(r) for r in rows]

    async def count_subscriptions(self, workspace_id: str, partner_id: UUID) -> int:
        count: int = await self.conn.fetchval(
            "SELECT count(*) FROM subscriptions WHERE workspace_id = $1 AND partner_id = $2",
            workspace_id, partner_id)
        return count

    async def update_subscription(self, sub: Subscription) -> Subscription:
        row = await self.conn.fetchrow(
            "UPDATE subscriptions SET name = $3, event_types = $4, filters = $5::jsonb, url = $6,"
            " status = $7, disabled_reason = $8, version = version + 1, updated_at = now()"
            " WHERE workspace_id = $1 AND id = $2 RETURNING *",
            sub.workspace_id, sub.id, sub.name, list(sub.event_types), json.dumps(sub.filters), sub.url,
            sub.status, sub.disabled_reason)
        return _subscription(row)

    async def delete_subscription(self, workspace_id: str, subscription_id: UUID) -> None:
        await self.conn.execute("DELETE FROM subscriptions WHERE workspace_id = $1 AND id = $2",
                                workspace_id, subscription_id)
