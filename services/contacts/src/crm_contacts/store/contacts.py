"""The only place with contacts' SQL. Every query is scoped by workspace."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_contacts.domain.model import (
    CompanyLink,
    Contact,
    ContactTimelineEntry,
    Identity,
    IdentityKind,
    LifecycleStage,
    TimelineEntry,
    TimelinePosition,
)

_COLUMNS = (
    "id, workspace_id, display_name, first_name, last_name, addresses::text AS addresses, owner_id,"
    " lifecycle_stage, tags, custom::text AS custom, version, created_at, updated_at, last_seen_at,"
    " interaction_count, erased_at"
)
# Orders a list can be sorted by: the SQL expression, and whether it runs newest/highest first.
SORTS: dict[str, tuple[str, bool]] = {
    "created_at": ("c.created_at", True),
    "updated_at": ("c.updated_at", True),
    "last_seen_at": ("COALESCE(c.last_seen_at, '-infinity')", True),
    "name": ("lower(c.display_name)", False),
}
# An email's words: what the query side (service.contacts.search_query) splits a search into.
_WORD_BREAKS = re.compile(r"[\W_]+")
# What the full-text index sees: names, identities (emails also split into words, phones
# also as bare digits) and company names. One SQL statement keeps it right for every write.
_REFRESH_SEARCH = """
UPDATE contacts c SET search_text = concat_ws(' ', c.first_name, c.last_name, c.display_name,
    (SELECT string_agg(CASE
        WHEN i.kind IN ('phone', 'whatsapp') THEN i.value || ' ' || substr(i.value, 2)
        WHEN i.kind = 'email' THEN i.value || ' ' || regexp_replace(i.value, '[^[:alnum:]]+', ' ', 'g')
        ELSE i.value END, ' ') FROM identities i WHERE i.contact_id = c.id),
    (SELECT string_agg(co.name, ' ') FROM contact_companies cc JOIN companies co ON co.id = cc.company_id
      WHERE cc.contact_id = c.id))
WHERE c.id = ANY($1::uuid[])
"""


def search_text(first_name: str, last_name: str, display_name: str, identities: Sequence[Identity],
                company_names: Sequence[str]) -> str:
    """The text _REFRESH_SEARCH writes (the same words), for writers that set it with the row
    in bulk (imports) instead of updating every row a second time."""
    parts = [first_name, last_name, display_name]
    if identities:
        parts.append(" ".join(
            f"{i.value} {i.value[1:]}" if i.kind in (IdentityKind.PHONE, IdentityKind.WHATSAPP)
            else f"{i.value} {_WORD_BREAKS.sub(' ', i.value)}" if i.kind is IdentityKind.EMAIL
            else i.value for i in identities))
    if company_names:
        parts.append(" ".join(company_names))
    return " ".join(parts)


@dataclass(frozen=True)
class ContactFilter:
    lifecycle_stage: str | None = None
    owner_id: str | None = None
    tag: str | None = None
    company_id: UUID | None = None
    query: str | None = None
    updated_after: datetime | None = None


class ContactsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def contact_of(self, workspace_id: str, identity: Identity) -> UUID | None:
        value: UUID | None = await self.conn.fetchval(
            "SELECT contact_id FROM identities WHERE workspace_id = $1 AND kind = $2 AND value = $3",
            workspace_id, identity.kind.value, identity.value,
        )
        return value

    async def claim_identity(self, workspace_id: str, identity: Identity, contact_id: UUID) -> bool:
        """Link the identity to ``contact_id`` unless it already belongs to someone. A concurrent
        claim of the same identity waits for the other transaction, then loses here."""
        row = await self.conn.fetchval(
            "INSERT INTO identities (workspace_id, kind, value, contact_id) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            workspace_id, identity.kind.value, identity.value, contact_id,
        )
        return row is not None

    async def insert_contact(self, workspace_id: str, contact_id: UUID, display_name: str,
                             values: dict[str, Any] | None = None) -> None:
        values = {"display_name": display_name, **(values or {})}
        _check_writable(values)
        names = ["id", "workspace_id", *values]
        params = [contact_id, workspace_id, *(_param(k, v) for k, v in values.items())]
        placeholders = ", ".join(f"${n + 1}{_cast(name)}" for n, name in enumerate(names))
        await self.conn.execute(
            f"INSERT INTO contacts ({', '.join(names)}) VALUES ({placeholders})", *params  # noqa: S608
        )

    async def update_contact(self, workspace_id: str, contact_id: UUID, values: dict[str, Any]) -> int:
        """Write ``values`` and move the version on; returns the new version."""
        _check_writable(values)
        sets = [f"{name} = ${n + 3}{_cast(name)}" for n, name in enumerate(values)]
        version: int = await self.conn.fetchval(
            f"UPDATE contacts SET {', '.join([*sets, 'version = version + 1', 'updated_at = now()'])}"  # noqa: S608
            " WHERE workspace_id = $1 AND id = $2 RETURNING version",
            workspace_id, contact_id, *(_param(k, v) for k, v in values.items()),
        )
        return version

    async def get(self, workspace_id: str, contact_id: UUID, *, for_update: bool = False) -> Contact | None:
        """A contact not merged away (an erased one says so: ``erased``)."""
        return await self._one("$2", workspace_id, contact_id, for_update)

    async def current(self, workspace_id: str, contact_id: UUID, *, for_update: bool = False
                      ) -> Contact | None:
        """The contact an id stands for now: itself, or the survivor it was merged into."""
        survivor = "COALESCE((SELECT merged_into FROM contacts WHERE workspace_id = $1 AND id = $2), $2)"
        return await self._one(survivor, workspace_id, contact_id, for_update)

    async def _one(self, id_sql: str, workspace_id: str, contact_id: UUID, for_update: bool
                   ) -> Contact | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM contacts WHERE workspace_id = $1 AND id = {id_sql}"  # noqa: S608
            f" AND merged_into IS NULL{' FOR UPDATE' if for_update else ''}",
            workspace_id, contact_id,
        )
        if row is None:
            return None
        [contact] = await self._with_relations([row])
        return contact

    async def get_many(self, workspace_id: str, contact_ids: Sequence[UUID], *, for_update: bool = False
                       ) -> list[Contact]:
        """The contacts among ``contact_ids`` that are not merged away (erased ones say so), in
        id order, which is also the order they are locked in with ``for_update``."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM contacts WHERE workspace_id = $1 AND id = ANY($2::uuid[])"  # noqa: S608
            f" AND merged_into IS NULL ORDER BY id{' FOR UPDATE' if for_update else ''}",
            workspace_id, list(contact_ids),
        )
        return await self._with_relations(rows)

    async def survivor_of(self, workspace_id: str, contact_id: UUID) -> UUID | None:
        """The contact a merged contact's id now stands for; None when it was not merged."""
        value: UUID | None = await self.conn.fetchval(
            "SELECT merged_into FROM contacts WHERE workspace_id = $1 AND id = $2", workspace_id, contact_id
        )
        return value

    async def current_ids(self, workspace_id: str, contact_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        """Each id mapped to the contact it stands for now (itself, or its survivor); erased
        and unknown ids are left out. The rows
        are share-locked, so a merge of one of them commits before this answers, or after the
        caller's transaction: what the caller writes for the loser is never left behind."""
        rows = await self.conn.fetch(
            "SELECT id, merged_into FROM contacts WHERE workspace_id = $1 AND id = ANY($2::uuid[])"
            " AND erased_at IS NULL ORDER BY id FOR SHARE",
            workspace_id, list(set(contact_ids)),
        )
        return {r["id"]: r["merged_into"] or r["id"] for r in rows}

    async def page(self, workspace_id: str, where: ContactFilter, sort: str,
                   after: list[Any] | None, limit: int) -> list[Contact]:
        expr, descending = SORTS[sort]
        clauses = ["c.workspace_id = $1", "c.merged_into IS NULL", "c.erased_at IS NULL"]
        params: list[Any] = [workspace_id]

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if where.lifecycle_stage:
            clauses.append(f"c.lifecycle_stage = {param(where.lifecycle_stage)}")
        if where.owner_id:
            clauses.append(f"c.owner_id = {param(where.owner_id)}")
        if where.tag:
            clauses.append(f"c.tags @> ARRAY[{param(where.tag)}]::text[]")
        if where.company_id:
            clauses.append("EXISTS (SELECT 1 FROM contact_companies cc WHERE cc.contact_id = c.id"  # noqa: S608
                           f" AND cc.company_id = {param(where.company_id)})")
        if where.updated_after:
            clauses.append(f"c.updated_at > {param(where.updated_after)}")
        if where.query:
            matches = f"to_tsquery('simple', {param(where.query)})"
            clauses.append(f"to_tsvector('simple', c.search_text) @@ {matches}")
        if after is not None:
            value = datetime.fromisoformat(after[0]) if sort != "name" else after[0]
            op = "<" if descending else ">"
            clauses.append(f"({expr}, c.id) {op} ({param(value)}, {param(UUID(after[1]))})")
        order = "DESC" if descending else "ASC"
        rows = await self.conn.fetch(
            # Only code-defined SQL is joined here; every value is a parameter.
            f"SELECT {_COLUMNS}, {expr} AS sort_key FROM contacts c WHERE {' AND '.join(clauses)}"  # noqa: S608
            f" ORDER BY {expr} {order}, c.id {order} LIMIT {param(limit)}",
            *params,
        )
        return await self._with_relations(rows)

    async def identity_owners(
        self, workspace_id: str, identities: Sequence[Identity]
    ) -> dict[Identity, UUID]:
        rows = await self.conn.fetch(
            "SELECT i.kind, i.value, i.contact_id FROM identities i"
            " JOIN unnest($2::text[], $3::text[]) AS wanted(kind, value)"
            " ON i.kind = wanted.kind AND i.value = wanted.value WHERE i.workspace_id = $1",
            workspace_id, [i.kind.value for i in identities], [i.value for i in identities],
        )
        return {Identity(IdentityKind(r["kind"]), r["value"]): r["contact_id"] for r in rows}

    async def replace_identities(self, workspace_id: str, contact_id: UUID, identities: Sequence[Identity]
                                 ) -> list[Identity]:
        """Make ``identities`` the contact's; returns those another contact holds (nothing is
        claimed from anyone)."""
        await self.conn.execute(
            "DELETE FROM identities i WHERE i.workspace_id = $1 AND i.contact_id = $2 AND NOT EXISTS ("
            " SELECT 1 FROM unnest($3::text[], $4::text[]) AS k(kind, value)"
            " WHERE k.kind = i.kind AND k.value = i.value)",
            workspace_id, contact_id, [i.kind.value for i in identities], [i.value for i in identities],
        )
        taken = []
        for identity in identities:
            if not await self.claim_identity(workspace_id, identity, contact_id):
                owner = await self.contact_of(workspace_id, identity)
                if owner != contact_id:
                    taken.append(identity)
        return taken

    async def set_companies(
        self, workspace_id: str, contact_id: UUID, links: Sequence[tuple[UUID, str]]
    ) -> None:
        await self.conn.execute("DELETE FROM contact_companies WHERE contact_id = $1", contact_id)
        await self.conn.executemany(
            "INSERT INTO contact_companies (workspace_id, contact_id, company_id, role)"
            " VALUES ($1, $2, $3, $4)",
            [(workspace_id, contact_id, company_id, role) for company_id, role in links],
        )

    async def refresh_search(self, contact_ids: Sequence[UUID]) -> None:
        await self.conn.execute(_REFRESH_SEARCH, list(contact_ids))

    async def _with_relations(self, rows: Sequence[asyncpg.Record]) -> list[Contact]:
        ids = [r["id"] for r in rows]
        identities: dict[UUID, list[Identity]] = {i: [] for i in ids}
        for r in await self.conn.fetch(
            "SELECT contact_id, kind, value FROM identities WHERE contact_id = ANY($1::uuid[])"
            " ORDER BY created_at, kind, value", ids,
        ):
            identities[r["contact_id"]].append(Identity(IdentityKind(r["kind"]), r["value"]))
        companies: dict[UUID, list[CompanyLink]] = {i: [] for i in ids}
        for r in await self.conn.fetch(
            "SELECT cc.contact_id, cc.company_id, co.name, cc.role FROM contact_companies cc"
            " JOIN companies co ON co.id = cc.company_id WHERE cc.contact_id = ANY($1::uuid[])"
            " ORDER BY co.name, cc.company_id", ids,
        ):
            companies[r["contact_id"]].append(CompanyLink(r["company_id"], r["name"], r["role"]))
        return [
            Contact(
                id=r["id"], workspace_id=r["workspace_id"], display_name=r["display_name"],
                identities=tuple(identities[r["id"]]), created_at=r["created_at"],
                last_seen_at=r["last_seen_at"], first_name=r["first_name"], last_name=r["last_name"],
                addresses=tuple(json.loads(r["addresses"])), owner_id=r["owner_id"],
                lifecycle_stage=LifecycleStage(r["lifecycle_stage"]), tags=tuple(r["tags"]),
                custom=json.loads(r["custom"]), companies=tuple(companies[r["id"]]), version=r["version"],
                updated_at=r["updated_at"], interaction_count=r["interaction_count"],
                erased=r["erased_at"] is not None,
            )
            for r in rows
        ]

    async def exists(self, workspace_id: str, contact_id: UUID) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM contacts WHERE workspace_id = $1 AND id = $2 AND merged_into IS NULL",
            workspace_id, contact_id,
        ))

    async def add_timeline_entries(self, entries: list[tuple[str, ContactTimelineEntry]]) -> None:
        await self.conn.executemany(
            "INSERT INTO timeline_entries (workspace_id, entry_id, contact_id, kind, channel,"
            " direction, summary, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT DO NOTHING",
            [(workspace_id, e.entry.entry_id, e.contact_id, e.entry.kind, e.entry.channel,
              e.entry.direction, e.entry.summary, e.entry.occurred_at) for workspace_id, e in entries],
        )

    async def record_activity(self, activity: dict[tuple[str, UUID], tuple[datetime, int]]) -> None:
        """Count each (workspace, contact)'s new interactions and move its last-seen time
        forward, never back."""
        await self.conn.executemany(
            "UPDATE contacts SET last_seen_at = GREATEST(COALESCE(last_seen_at, $3), $3),"
            " interaction_count = interaction_count + $4 WHERE workspace_id = $1 AND id = $2",
            [(workspace_id, contact_id, at, count)
             for (workspace_id, contact_id), (at, count) in activity.items()],
        )

    async def timeline(
        self, workspace_id: str, contact_id: UUID, after: TimelinePosition | None, limit: int
    ) -> list[TimelineEntry]:
        if after is None:
            rows = await self.conn.fetch(
                "SELECT entry_id, kind, channel, direction, summary, occurred_at FROM timeline_entries"
                " WHERE workspace_id = $1 AND contact_id = $2"
                " ORDER BY occurred_at DESC, entry_id DESC LIMIT $3",
                workspace_id, contact_id, limit,
            )
        else:
            rows = await self.conn.fetch(
                "SELECT entry_id, kind, channel, direction, summary, occurred_at FROM timeline_entries"
                " WHERE workspace_id = $1 AND contact_id = $2 AND (occurred_at, entry_id) < ($3, $4)"
                " ORDER BY occurred_at DESC, entry_id DESC LIMIT $5",
                workspace_id, contact_id, after.occurred_at, after.entry_id, limit,
            )
        return [TimelineEntry(**dict(r)) for r in rows]


_JSON_COLUMNS = frozenset({"addresses", "custom"})
_WRITABLE = frozenset({"display_name", "first_name", "last_name", "addresses", "owner_id", "lifecycle_stage",
                       "tags", "custom", "search_text", "merged_into", "erased_at", "last_seen_at"})


def _check_writable(values: dict[str, Any]) -> None:
    unknown = set(values) - _WRITABLE
    if unknown:
        raise ValueError(f"not a writable contact column: {sorted(unknown)}")


def _cast(name: str) -> str:
    return "::jsonb" if name in _JSON_COLUMNS else ""


def _param(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    if name == "tags":
        return list(value)
    if name == "lifecycle_stage":
        return str(value)
    return value
