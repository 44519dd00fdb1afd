"""Partner accounts, their API keys and subscriptions.

``authenticate`` turns a partner API key into the caller (None for an unknown, revoked or
expired key, or a suspended partner). Every other use case takes the caller's workspace; the
subscription ones take the caller itself, since a partner manages its own subscriptions and
must find another partner's as missing as another workspace's (404).
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from crm_partners.api.caller import PARTNER_SCOPES, Caller
from crm_partners.domain.accounts import (
    SHOWN_PREFIX,
    ApiKey,
    Delivery,
    Partner,
    Subscription,
    looks_like_api_key,
    new_api_key,
    new_webhook_secret,
    unknown_scopes,
)
from crm_partners.domain.filters import FilterError, parse_filters
from crm_partners.domain.kafka_users import kafka_user
from crm_partners.domain.policy import POLICIES
from crm_partners.domain.urls import UnsafeUrl, check_webhook_url
from crm_partners.settings import Settings
from crm_partners.store.accounts import AccountsStore
from crmkit.auth import hash_api_key
from crmkit.etags import stale
from crmkit.fields import FieldError
from crmkit.ids import uuid7
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase
from crmkit.problems import NotFound, Problem

MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_PARTNERS = 1000
MAX_USABLE_KEYS = 10
MAX_SUBSCRIPTIONS = 100
MAX_EVENT_TYPES = 50
MAX_GRACE = timedelta(days=30)

T = TypeVar("T", Partner, ApiKey, Subscription)


def invalid(*errors: FieldError) -> Problem:
    return Problem(422, "validation", "The request is not valid", errors=[e.as_dict() for e in errors])


def conflict(detail: str) -> Problem:
    return Problem(409, "conflict", "Conflict", detail)


def _after(kind: str, cursor: str | None) -> UUID | None:
    if cursor is None:
        return None
    try:
        return UUID(str(decode_cursor(kind, cursor, 1)[0]))
    except (InvalidCursor, ValueError) as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor",
                      "the cursor is not one this API gave out") from exc


def _page(kind: str, found: list[T], limit: int) -> tuple[list[T], str | None]:
    if len(found) <= limit:
        return found, None
    return found[:limit], encode_cursor(kind, [str(found[limit - 1].id)])


def _name(value: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise invalid(FieldError("name", f"between 1 and {MAX_NAME} characters"))
    return cleaned


class Accounts:
    def __init__(self, db: PgDatabase, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # --- authentication ---

    async def authenticate(self, api_key: str) -> Caller | None:
        if not looks_like_api_key(api_key):
            return None
        digest = hash_api_key(api_key)
        async with self.db.pool.acquire() as conn:
            store = AccountsStore(conn)
            owner = await store.key_owner(digest)
            # The lookup went by the digest's index; compare once more in constant time anyway.
            if owner is None or not hmac.compare_digest(owner.sha256, digest):
                return None
            if owner.stale:  # at most one write a minute per key, however busy the partner
                await store.key_used(owner.key_id)
        return Caller(owner.workspace_id, f"partner:{owner.partner_id}",
                      frozenset(owner.scopes) & PARTNER_SCOPES, partner_id=str(owner.partner_id))

    # --- partners ---

    async def create_partner(self, workspace_id: str, name: str, description: str) -> Partner:
        if len(description) > MAX_DESCRIPTION:
            raise invalid(FieldError("description", f"at most {MAX_DESCRIPTION} characters"))
        now = datetime.now(UTC)
        draft = Partner(uuid7(), workspace_id, _name(name), description, "active", 1, now, now)
        async with self.db.unit_of_work() as uow:
            store = AccountsStore(uow.conn)
            if await store.count_partners(workspace_id) >= MAX_PARTNERS:
                raise invalid(FieldError("name", f"a workspace has at most {MAX_PARTNERS} partners"))
            try:
                return await store.insert_partner(draft)
            except asyncpg.UniqueViolationError as exc:
                raise conflict("a partner of this workspace already has this name") from exc

    async def partners(self, workspace_id: str, cursor: str | None,
                       limit: int) -> tuple[list[Partner], str | None]:
        after = _after("partners", cursor)
        async with self.db.pool.acquire() as conn:
            found = await AccountsStore(conn).partners(workspace_id, after, limit + 1)
        return _page("partners", found, limit)

    async def partner(self, workspace_id: str, partner_id: UUID) -> Partner:
        async with self.db.pool.acquire() as conn:
            return await self._partner(AccountsStore(conn), workspace_id, partner_id)

    async def update_partner(self, workspace_id: str, partner_id: UUID, changes: dict[str, Any],
                             expected_version: int) -> Partner:
        """``changes`` holds what the caller sent of name, description and status (active or
        suspended: a suspended partner's keys stop working at once, and come back with it)."""
        if len(changes.get("description") or "") > MAX_DESCRIPTION:
            raise invalid(FieldError("description", f"at most {MAX_DESCRIPTION} characters"))
        async with self.db.unit_of_work() as uow:
            store = AccountsStore(uow.conn)
            partner = await self._partner(store, workspace_id, partner_id, lock=True)
            if partner.version != expected_version:
                raise stale(partner.version)
            changed = replace(
                partner,
                name=_name(changes["name"]) if changes.get("name") is not None else partner.name,
                description=partner.description if changes.get("description") is None
                else changes["description"],
                status=changes.get("status") or partner.status)
            try:
                return await store.update_partner(changed)
            except asyncpg.UniqueViolationError as exc:
                raise conflict("a partner of this workspace already has this name") from exc

    async def delete_partner(self, workspace_id: str, partner_id: UUID) -> None:
        """Removes the partner with its keys, subscriptions and their deliveries."""
        async with self.db.unit_of_work() as uow:
            if not await AccountsStore(uow.conn).delete_partner(workspace_id, partner_id):
                raise NotFound("partner")

    @staticmethod
    async def _partner(store: AccountsStore, workspace_id: str, partner_id: UUID, *,
                       lock: bool = False) -> Partner:
        partner = await store.partner(workspace_id, partner_id, lock=lock)
        if partner is None:
            raise NotFound("partner")
        return partner

    # --- API keys ---

    async def create_key(self, workspace_id: str, partner_id: UUID, name: str, scopes: list[str],
                         expires_at: datetime | None) -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown this once."""
        errors = []
        if not scopes or unknown_scopes(scopes):
            errors.append(FieldError("scopes", "one or more of " + ", ".join(sorted(PARTNER_SCOPES))))
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= datetime.now(UTC)):
            errors.append(FieldError("expires_at", "a time in the future, with its UTC offset"))
        if errors:
            raise invalid(*errors)
        name = _name(name)
        async with self.db.unit_of_work() as uow:
            store = AccountsStore(uow.conn)
            await self._partner(store, workspace_id, partner_id, lock=True)
            if await store.count_usable_keys(workspace_id, partner_id) >= MAX_USABLE_KEYS:
                raise conflict(f"a partner has at most {MAX_USABLE_KEYS} usable keys: revoke one first")
            return await self._new_key(store, workspace_id, partner_id, name, tuple(sorted(set(scopes))),
                                       expires_at)

    async def keys(self, workspace_id: str, partner_id: UUID, cursor: str | None,
                   limit: int) -> tuple[list[ApiKey], str | None]:
        after = _after("keys", cursor)
        async with self.db.pool.acquire() as conn:
            store = AccountsStore(conn)
            await self._partner(store, workspace_id, partner_id)
            found = await store.keys(workspace_id, partner_id, after, limit + 1)
        return _page("keys", found, limit)

    async def rotate_key(self, workspace_id: str, partner_id: UUID, key_id: UUID,
                         grace: timedelta) -> tuple[ApiKey, str, ApiKey]:
        """A new key with the old one's name, scopes and expiry; the old one keeps working for
        ``grace`` (or until it expires, if sooner), so the partner can switch without a gap.
        Returns the new key, its secret, and the old key as it now is."""
        if grace < timedelta(0) or grace > MAX_GRACE:
            raise invalid(FieldError("grace_seconds", f"between 0 and {int(MAX_GRACE.total_seconds())}"))
        now = datetime.now(UTC)
        async with self.db.unit_of_work() as uow:
            store = AccountsStore(uow.conn)
            await self._partner(store, workspace_id, partner_id, lock=True)
            old = await store.key(workspace_id, partner_id, key_id, lock=True)
            if old is None:
                raise NotFound("API key")
            if not old.usable(now):
                raise conflict("the key is revoked or expired: create a new one")
            new, secret = await self._new_key(store, workspace_id, partner_id, old.name, old.scopes,
                                              old.expires_at)
            ends = now + grace if old.expires_at is None else min(old.expires_at, now + grace)
            return new, secret, await store.expire_key(workspace_id, key_id, ends)

    async def revoke_key(self, workspace_id: str, partner_id: UUID, key_id: UUID) -> None:
        async with self.db.unit_of_work() as uow:
            if not await AccountsStore(uow.conn).revoke_key(workspace_id, partner_id, key_id):
                raise NotFound("API key")

    @staticmethod
    async def _new_key(store: AccountsStore, workspace_id: str, partner_id: UUID, name: str,
                       scopes: tuple[str, ...], expires_at: datetime | None) -> tuple[ApiKey, str]:
        secret = new_api_key()
        draft = ApiKey(uuid7(), partner_id, name, secret[:SHOWN_PREFIX], scopes, datetime.now(UTC),
                       expires_at, None, None)
        return await store.insert_key(workspace_id, draft, hash_api_key(secret)), secret

    # --- subscriptions ---

    async def create_subscription(self, caller: Caller, partner_id: UUID, name: str, event_types: list[str],
                                  filters: dict[str, Any], delivery: Delivery,
                                  url: str | None) -> tuple[Subscription, str | None]:
        """The subscription and, for a webhook, its first signing secret (shown this once)."""
        if not caller.sees(str(partner_id)):
            raise NotFound("partner")
        types = _event_types(event_types)
        checked_filters = _filters(filters, types)
        if (delivery == "webhook") != (url is not None):
            raise invalid(FieldError("url", "required for webhook delivery, and only for it"))
        checked_url = await self._url(url) if url is not None else None
        draft = Subscription(uuid7(), caller.workspace_id, partner_id, _name(name), types, delivery,
                             checked_filters, checked_url)
        async with self.db.unit_of_work() as uow:
            store = AccountsStore(uow.conn)
            await self._partner(store, caller.workspace_id, partner_id, lock=True)
            if await store.count_subscriptions(caller.workspace_id, partner_id) >= MAX_SUBSCRIPTIONS:
                raise conflict(f"a partner has at most {MAX_SUBSCRIPTIONS} subscriptions")
            sub = await store.insert_subscription(draft)
            secret = None
            if delivery == "webhook":
                secret = new_webhook_secret()
                await store.insert_secret(uuid7(), sub.id, secret)
            return sub, secret

    async def subscriptions(self, caller: Caller, partner_id: UUID, cursor: str | None,
                            limit: int) -> tuple[list[Subscription], str | None]:
        if not caller.sees(str(partner_id)):
            raise NotFound("partner")
        after = _after("subscriptions", cursor)
        async with self.db.pool.acquire() as conn:
            store = AccountsStore(conn)
            await self._partner(store, caller.workspace_id, partner_id)
            found = await store.subscriptions(caller.workspace_id, [partner_id], after, limit + 1)
        return _page("subscriptions", found, limit)

    async def subscription(self, caller: Caller, subscription_id: UUID) -> Subscription:
        """The subscription if the caller may see it (its workspace's admin or its partner)."""
        async with self.db.pool.acquire() as conn:
            return await visible_subscription(AccountsStore(conn), caller, subscription_id)

    async def update_subscription(self, caller: Caller, subscription_id: UUID, changes: dict[str, Any],
                                  expected_version: int) -> Subscription:
        """``changes`` holds what the caller sent of name, event_types, filters, url and status.
        The filters are checked again against the event types they will apply to; enabling
        clears why it was disabled (for example an endpoint that answered 410)."""
        # Resolving the URL's host takes time: not while the subscription is locked.
        new_url = await self._url(changes["url"]) if changes.get("url") is not None else None
        async with self.db.unit_of_work() as uow:
            store = AccountsStore(uow.conn)
            sub = await visible_subscription(store, caller, subscription_id, lock=True)
            if sub.version != expected_version:
                raise stale(sub.version)
            types = _event_types(changes["event_types"]) if "event_types" in changes else sub.event_types
            filters = changes.get("filters", sub.filters)
            if new_url is not None and sub.delivery != "webhook":
                raise invalid(FieldError("url", "only webhook subscriptions have a URL"))
            status, reason = sub.status, sub.disabled_reason
            if changes.get("status") is not None and changes["status"] != sub.status:
                status = changes["status"]
                reason = None if status == "enabled" else f"disabled by {caller.subject}"
            changed = replace(sub, name=_name(changes.get("name") or sub.name), event_types=types,
                              filters=_filters(filters, types), url=new_url or sub.url, status=status,
                              disabled_reason=reason)
            return await store.update_subscription(changed)

    async def delete_subscription(self, caller: Caller, subscription_id: UUID) -> None:
        """Removes it with its secrets and deliveries."""
        async with self.db.unit_of_work() as uow:
            store = AccountsStore(uow.conn)
            await visible_subscription(store, caller, subscription_id, lock=True)
            await store.delete_subscription(caller.workspace_id, subscription_id)

    async def _url(self, url: str) -> str:
        try:
            return await check_webhook_url(url, allow_loopback=self.settings.webhook_allow_loopback)
        except UnsafeUrl as exc:
            raise invalid(FieldError("url", str(exc))) from exc

    # --- Kafka users ---

    async def kafka_user(self, workspace_id: str, partner_id: UUID) -> dict[str, Any]:
        """The partner's Strimzi KafkaUser, from its enabled kafka subscriptions."""
        async with self.db.pool.acquire() as conn:
            store = AccountsStore(conn)
            partner = await self._partner(store, workspace_id, partner_id)
            return kafka_user(partner, await store.subscriptions(workspace_id, [partner_id]))


def _event_types(event_types: list[str]) -> tuple[str, ...]:
    errors = [FieldError(f"event_types[{i}]", "not a public event type (see the event catalogue)")
              for i, event_type in enumerate(event_types) if event_type not in POLICIES]
    if errors:
        raise invalid(*errors)
    unique = tuple(dict.fromkeys(event_types))
    if not unique or len(unique) > MAX_EVENT_TYPES:
        raise invalid(FieldError("event_types", f"between 1 and {MAX_EVENT_TYPES} public event types"))
    return unique


def _filters(filters: dict[str, Any], event_types: tuple[str, ...]) -> dict[str, Any]:
    try:
        return parse_filters(filters, list(event_types))
    except FilterError as exc:
        raise invalid(FieldError("filters", str(exc))) from exc


async def visible_subscription(store: AccountsStore, caller: Caller, subscription_id: UUID, *,
                               lock: bool = False) -> Subscription:
    """The subscription if the caller may see it (its workspace's admin or its own partner);
    404 otherwise, so another workspace's or partner's ids answer as unknown ones do."""
    sub = await store.subscription(caller.workspace_id, subscription_id, lock=lock)
    if sub is None or not caller.sees(str(sub.partner_id)):
        raise NotFound("subscription")
    return sub
