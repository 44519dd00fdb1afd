"""Contacts' use cases: identities, the contact record, custom fields, the timeline, the audit.

Every write runs in one unit of work: the row, its identities, the audit entry, the segment
memberships it changes and the events it publishes commit together or not at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm_contacts.domain.errors import (
    DuplicateIdentities,
    FieldError,
    InvalidFields,
    NotFound,
    VersionMismatch,
)
from crm_contacts.domain.fields import Entity
from crm_contacts.domain.model import (
    PHONE_KINDS,
    Contact,
    ContactTimelineEntry,
    Identity,
    IdentityKind,
    Resolution,
    TimelineEntry,
    TimelinePosition,
)
from crm_contacts.domain.rules import (
    ContactChanges,
    display_name_of,
    merged_identities,
    validate_changes,
)
from crm_contacts.service.segments import reevaluate_membership
from crm_contacts.store import audit, companies
from crm_contacts.store import fields as field_store
from crm_contacts.store.audit import AuditEntry
from crm_contacts.store.contacts import SORTS, ContactFilter, ContactsStore
from crm_contacts.wire import contact_created, contact_updated
from crmkit.fields import FieldDefinition, check_definition, defined_only
from crmkit.ids import uuid7
from crmkit.kafka import Delivered
from crmkit.pagination import decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase, PgUnitOfWork

log = logging.getLogger(__name__)

TIMELINE_CONSUMER = "contacts.timeline"
MAX_PAGE = 100
SYSTEM = "system"
NEVER = datetime(1, 1, 1, tzinfo=UTC)  # how a contact never seen sorts by last_seen_at


@dataclass(frozen=True)
class IdentityRequest:
    identity: Identity
    display_name: str
    create_if_missing: bool
    verified_email: Identity | None = None


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    next_cursor: str | None


@dataclass(frozen=True)
class ContactPage:
    items: list[Contact]
    next_cursor: str | None


def search_query(text: str) -> str | None:
    """A tsquery matching contacts whose names, identities or companies have words starting
    with every word of ``text``; a phone number is matched by its digits."""
    compact = re.sub(r"[\s().-]", "", text)
    if re.fullmatch(r"\+?\d{6,15}", compact):
        return f"{compact.lstrip('+')}:*"
    words = [f"{word}:*" for word in re.findall(r"[^\W_]+", text.lower())[:8]]
    return " & ".join(words) or None


class ContactsService:
    def __init__(self, db: PgDatabase, phone_region: str | None = None) -> None:
        self.db = db
        self.phone_region = phone_region

    # -- identities ---------------------------------------------------------------------------

    async def resolve_identities(
        self, workspace_id: str, requests: Sequence[IdentityRequest]
    ) -> list[Resolution]:
        """Resolve each identity to its contact, creating contacts for unknown identities when
        asked. An unknown WhatsApp number joins the contact that has it as a phone (and the other
        way round); an unknown identity with a verified email joins the owner of that email, or
        makes a new contact that owns both. Identities are claimed in one fixed order, so
        concurrent batches cannot deadlock, and a lost race answers with the winner's contact."""
        resolved: dict[Identity, Resolution] = {}
        created: list[UUID] = []
        async with self.db.unit_of_work() as uow:
            store = ContactsStore(uow.conn)
            for req in sorted(requests, key=lambda r: (r.identity.kind.value, r.identity.value)):
                known = resolved.get(req.identity)
                if known is not None and (known.contact_id is not None or not req.create_if_missing):
                    continue
                existing = await store.contact_of(workspace_id, req.identity)
                if existing is None:
                    existing = await self._linked_by_rule(store, workspace_id, req)
                if existing is not None or not req.create_if_missing:
                    resolved[req.identity] = Resolution(req.identity, existing, False)
                    continue
                contact_id = uuid7()
                if await store.claim_identity(workspace_id, req.identity, contact_id):
                    await store.insert_contact(workspace_id, contact_id, req.display_name)
                    if req.verified_email is not None and req.verified_email != req.identity:
                        # The channel vouches for the address, which no contact owns yet: it is
                        # this new person's (unless a concurrent resolver took it first).
                        await store.claim_identity(workspace_id, req.verified_email, contact_id)
                    resolved[req.identity] = Resolution(req.identity, contact_id, True)
                    created.append(contact_id)
                else:  # another resolver claimed it first, and has committed
                    winner = await store.contact_of(workspace_id, req.identity)
                    resolved[req.identity] = Resolution(req.identity, winner, False)
            await store.refresh_search(created)
            await self._after_write(uow, workspace_id, created, "created", [])
        return [resolved[r.identity] for r in requests]

    async def _linked_by_rule(self, store: ContactsStore, workspace_id: str, req: IdentityRequest
                              ) -> UUID | None:
        """The contact a new identity belongs to by a linking rule, with the identity claimed
        for it: the same number as a phone and as a WhatsApp account is one person, and so is
        an identity whose channel verified an email address with the owner of that email."""
        identity = req.identity
        twins = []
        if identity.kind in PHONE_KINDS:
            twin = IdentityKind.WHATSAPP if identity.kind is IdentityKind.PHONE else IdentityKind.PHONE
            twins.append(Identity(twin, identity.value))
        if req.verified_email is not None and req.verified_email != identity:
            twins.append(req.verified_email)
        for twin_identity in twins:
            owner = await store.contact_of(workspace_id, twin_identity)
            if owner is None:
                continue
            if await store.claim_identity(workspace_id, identity, owner):
                await store.refresh_search([owner])
                return owner
            return await store.contact_of(workspace_id, identity)
        return None

    # -- the contact record -------------------------------------------------------------------

    async def get_contact(self, workspace_id: str, contact_id: UUID) -> Contact | None:
        """A contact; the id of a merged contact answers with its survivor."""
        async with self.db.pool.acquire() as conn:
            contact = await ContactsStore(conn).current(workspace_id, contact_id)
            if contact is None or contact.erased:
                return None
            definitions = await field_store.definitions(conn, workspace_id, Entity.CONTACT)
        return _shown(contact, definitions)

    async def list_contacts(self, workspace_id: str, where: ContactFilter, sort: str, cursor: str | None,
                            limit: int) -> ContactPage:
        """A page of live contacts; InvalidCursor for a cursor of another list or sort."""
        after = decode_cursor(f"contacts:{sort}", cursor, 2) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        if where.query is not None:
            where = ContactFilter(**{**where.__dict__, "query": search_query(where.query) or "''"})
        async with self.db.pool.acquire() as conn:
            rows = await ContactsStore(conn).page(workspace_id, where, sort, after, limit + 1)
            definitions = await field_store.definitions(conn, workspace_id, Entity.CONTACT)
        page = [_shown(c, definitions) for c in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor(f"contacts:{sort}", [_sort_value(last, sort), str(last.id)])
        return ContactPage(page, next_cursor)

    async def create_contact(self, workspace_id: str, actor: str, raw: dict[str, Any]) -> Contact:
        """Create a contact. DuplicateIdentities names the contacts that already own any of its
        identities (detection on create); InvalidFields names every bad field."""
        async with self.db.unit_of_work() as uow:
            changes = await self._validated(uow, workspace_id, raw)
            identities = changes.all_identities()
            store = ContactsStore(uow.conn)
            owners = await store.identity_owners(workspace_id, identities)
            if owners:
                raise _duplicates(owners)
            contact_id = uuid7()
            name = changes.display_name or display_name_of(changes.first_name, changes.last_name, identities)
            await store.insert_contact(workspace_id, contact_id, name, _columns(changes))
            await self._write_relations(store, workspace_id, contact_id, changes, identities)
            contact = await self._reload(store, workspace_id, contact_id)
            await audit.record(uow.conn, workspace_id, "contact", contact_id, "create", actor, None,
                               contact.snapshot())
            await self._after_write(uow, workspace_id, [contact_id], "created", [])
        return contact

    async def update_contact(self, workspace_id: str, actor: str, contact_id: UUID, raw: dict[str, Any],
                             expected_version: int | None) -> Contact:
        """Apply the fields given; VersionMismatch when ``expected_version`` is not current."""
        async with self.db.unit_of_work() as uow:
            store = ContactsStore(uow.conn)
            before = await store.get(workspace_id, contact_id, for_update=True)
            if before is None or before.erased:
                raise NotFound("contact")
            if expected_version is not None and expected_version != before.version:
                raise VersionMismatch(before.version)
            changes = await self._validated(uow, workspace_id, raw)
            values = _columns(changes)
            if "custom" in values:
                values["custom"] = {k: v for k, v in {**before.custom, **values["custom"]}.items()
                                    if v is not None}
            identities = merged_identities(before.identities, changes) if changes.identities else None
            if identities is not None:
                owners = await store.identity_owners(workspace_id, identities)
                foreign = {i: c for i, c in owners.items() if c != contact_id}
                if foreign:
                    raise _duplicates(foreign)
            if not changes.given & {"display_name"} and changes.given & {"first_name", "last_name"}:
                first = values.get("first_name", before.first_name)
                last = values.get("last_name", before.last_name)
                values["display_name"] = display_name_of(first, last, list(identities or before.identities))
            await store.update_contact(workspace_id, contact_id, values)
            await self._write_relations(store, workspace_id, contact_id, changes, identities)
            after = await self._reload(store, workspace_id, contact_id)
            changed = _changed_fields(before, after)
            await audit.record(uow.conn, workspace_id, "contact", contact_id, "update", actor,
                               before.snapshot(), after.snapshot())
            await self._after_write(uow, workspace_id, [contact_id], "updated", changed)
        return after

    async def _validated(self, uow: PgUnitOfWork, workspace_id: str, raw: dict[str, Any]) -> ContactChanges:
        definitions = await field_store.definitions(uow.conn, workspace_id, Entity.CONTACT)
        changes, errors = validate_changes(raw, definitions, self.phone_region)
        if changes.companies:
            wanted = [company_id for company_id, _ in changes.companies]
            known = await companies.existing(uow.conn, workspace_id, wanted)
            errors += [FieldError(f"companies[{n}].company_id", "no such company in this workspace")
                       for n, company_id in enumerate(wanted) if company_id not in known]
        if errors:
            raise InvalidFields(errors)
        return changes

    async def _write_relations(self, store: ContactsStore, workspace_id: str, contact_id: UUID,
                               changes: ContactChanges, identities: Sequence[Identity] | None) -> None:
        if identities is not None:
            taken = await store.replace_identities(workspace_id, contact_id, identities)
            if taken:  # claimed by a concurrent write since we looked
                raise _duplicates({i: None for i in taken})
        if "companies" in changes.given:
            await store.set_companies(workspace_id, contact_id, changes.companies)
        await store.refresh_search([contact_id])

    async def _reload(self, store: ContactsStore, workspace_id: str, contact_id: UUID) -> Contact:
        contact = await store.get(workspace_id, contact_id)
        assert contact is not None
        return contact

    async def _after_write(self, uow: PgUnitOfWork, workspace_id: str, contact_ids: Sequence[UUID],
                           action: str, changed: list[str]) -> None:
        """What follows every contact write: its event, and its segment memberships."""
        if not contact_ids:
            return
        for contact in await ContactsStore(uow.conn).get_many(workspace_id, contact_ids):
            uow.add(contact_created(contact) if action == "created" else contact_updated(contact, changed))
        await reevaluate_membership(uow, workspace_id, contact_ids)

    # -- custom fields -------------------------------------------------------------------------

    async def fields(self, workspace_id: str, entity: Entity) -> list[FieldDefinition]:
        async with self.db.pool.acquire() as conn:
            return list((await field_store.definitions(conn, workspace_id, entity)).values())

    async def define_field(self, workspace_id: str, actor: str, definition: FieldDefinition) -> bool:
        """False when the key is already defined. No table changes: values are JSON."""
        errors = check_definition(definition)
        if errors:
            raise InvalidFields(errors)
        async with self.db.unit_of_work() as uow:
            created = await field_store.insert(uow.conn, workspace_id, definition)
            if created:
                await audit.record(uow.conn, workspace_id, "field", f"{definition.entity}.{definition.key}",
                                   "create", actor, None, {"type": definition.type.value,
                                                           "options": list(definition.options)})
        return created

    async def remove_field(self, workspace_id: str, actor: str, entity: Entity, key: str) -> bool:
        """Stored values stay on disk, unread; defining the key again does not bring them back
        unless they still fit (reads show only defined keys)."""
        async with self.db.unit_of_work() as uow:
            removed = await field_store.delete(uow.conn, workspace_id, entity, key)
            if removed:
                await audit.record(uow.conn, workspace_id, "field", f"{entity}.{key}", "delete", actor,
                                   None, None)
        return removed

    # -- timeline and audit --------------------------------------------------------------------

    async def timeline(
        self, workspace_id: str, contact_id: UUID, cursor: str | None, limit: int
    ) -> TimelinePage | None:
        """A contact's timeline, newest first (a merged id reads its survivor's); None when the
        contact is not in the workspace."""
        after = TimelinePosition.decode(cursor) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            store = ContactsStore(conn)
            contact_id = await store.survivor_of(workspace_id, contact_id) or contact_id
            if not await store.exists(workspace_id, contact_id):
                return None
            entries = await store.timeline(workspace_id, contact_id, after, limit + 1)
        page = entries[:limit]
        next_cursor = (
            TimelinePosition(page[-1].occurred_at, page[-1].entry_id).encode()
            if len(entries) > limit else None
        )
        return TimelinePage(page, next_cursor)

    async def record_timeline_entries(self, items: Sequence[Delivered[ContactTimelineEntry]]) -> int:
        """Put entries on contacts' timelines (a merged contact's go to its survivor), count the
        activity and move last-seen times, once per event, in one transaction; returns how many
        were new. Segment memberships on activity follow."""
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(TIMELINE_CONSUMER, [d.event_id for d in items])
            store = ContactsStore(uow.conn)
            wanted: dict[str, set[UUID]] = {}
            for d in items:
                if d.event_id in fresh:
                    wanted.setdefault(d.workspace_id, set()).add(d.item.contact_id)
            current = {ws: await store.current_ids(ws, sorted(ids)) for ws, ids in sorted(wanted.items())}
            applied: list[tuple[str, ContactTimelineEntry]] = []
            for d in items:
                target = current.get(d.workspace_id, {}).get(d.item.contact_id)
                if d.event_id in fresh and target is not None:
                    applied.append((d.workspace_id, ContactTimelineEntry(target, d.item.entry)))
                elif d.event_id in fresh:  # the person was erased (or never known here)
                    log.info("timeline entry for an erased or unknown contact not recorded",
                             extra={"event_id": d.event_id})
            await store.add_timeline_entries(applied)
            activity: dict[tuple[str, UUID], tuple[datetime, int]] = {}
            for workspace_id, e in applied:
                if e.entry.kind != "interaction":  # tickets, deals... are not the person's activity
                    continue
                seen, count = activity.get((workspace_id, e.contact_id), (e.entry.occurred_at, 0))
                activity[(workspace_id, e.contact_id)] = (max(seen, e.entry.occurred_at), count + 1)
            await store.record_activity(activity)
            by_workspace: dict[str, list[UUID]] = {}
            for workspace_id, contact_id in activity:
                by_workspace.setdefault(workspace_id, []).append(contact_id)
            for workspace_id, contact_ids in sorted(by_workspace.items()):  # one lock order
                await reevaluate_membership(uow, workspace_id, contact_ids)
        return len(applied)

    async def history(self, workspace_id: str, entity: str, entity_id: UUID, before: int | None,
                      limit: int) -> list[AuditEntry]:
        async with self.db.pool.acquire() as conn:
            return await audit.history(conn, workspace_id, entity, entity_id, before,
                                       max(1, min(limit, MAX_PAGE)))


def _duplicates(owners: Mapping[Identity, UUID | None]) -> DuplicateIdentities:
    return DuplicateIdentities({f"{i.kind.value}:{i.value}": str(c or "") for i, c in owners.items()})


def _shown(contact: Contact, definitions: dict[str, FieldDefinition]) -> Contact:
    return replace(contact, custom=defined_only(definitions, contact.custom))


def _columns(changes: ContactChanges) -> dict[str, Any]:
    """The contact-row columns a write sets."""
    names = {"first_name": "first_name", "last_name": "last_name", "display_name": "display_name",
             "owner_id": "owner_id", "lifecycle_stage": "lifecycle_stage", "tags": "tags",
             "addresses": "addresses", "custom_fields": "custom"}
    return {column: getattr(changes, column) for field, column in names.items() if field in changes.given}


def _changed_fields(before: Contact, after: Contact) -> list[str]:
    old, new = before.snapshot(), after.snapshot()
    changed = [k for k in new if k not in ("version", "custom_fields") and old.get(k) != new.get(k)]
    keys = set(before.custom) | set(after.custom)
    changed += [f"custom_fields.{k}" for k in sorted(keys) if before.custom.get(k) != after.custom.get(k)]
    return changed


def _sort_value(contact: Contact, sort: str) -> Any:
    if sort == "name":
        return contact.display_name.lower()
    stamp = {"created_at": contact.created_at, "updated_at": contact.updated_at,
             "last_seen_at": contact.last_seen_at}[sort]
    return (stamp or NEVER).isoformat()


__all__ = ["SORTS", "ContactPage", "ContactsService", "IdentityRequest", "TimelinePage", "search_query"]
