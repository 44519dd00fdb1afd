"""Companies' use cases. A company's name is on its contacts' search text, so a rename
refreshes theirs in the same transaction."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from uuid import UUID

from crm_contacts.domain import events
from crm_contacts.domain.errors import FieldError, InvalidFields, NotFound, VersionMismatch
from crm_contacts.domain.fields import Entity
from crm_contacts.domain.model import Company
from crm_contacts.store import audit, companies
from crm_contacts.store import fields as field_store
from crm_contacts.store.contacts import ContactsStore
from crm_contacts.wire import company_changed
from crmkit.fields import defined_only, validate_custom
from crmkit.ids import uuid7
from crmkit.pagination import decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase, PgUnitOfWork

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_PAGE = 100


class CompaniesService:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def create(self, workspace_id: str, actor: str, raw: dict[str, Any]) -> Company:
        async with self.db.unit_of_work() as uow:
            values = await self._validated(uow, workspace_id, raw, creating=True)
            company_id = uuid7()
            await companies.insert(uow.conn, workspace_id, company_id, values)
            company = await companies.get(uow.conn, workspace_id, company_id)
            assert company is not None
            await audit.record(uow.conn, workspace_id, "company", company_id, "create", actor, None,
                               company.snapshot())
            uow.add(company_changed(events.COMPANY_CREATED, company))
        return company

    async def update(self, workspace_id: str, actor: str, company_id: UUID, raw: dict[str, Any],
                     expected_version: int) -> Company:
        async with self.db.unit_of_work() as uow:
            before = await self._locked(uow, workspace_id, company_id, expected_version)
            values = await self._validated(uow, workspace_id, raw, creating=False)
            custom = {k: v for k, v in {**before.custom, **values.pop("custom", {})}.items() if v is not None}
            await companies.update(uow.conn, workspace_id, replace(before, custom=custom, **values))
            after = await companies.get(uow.conn, workspace_id, company_id)
            assert after is not None
            if after.name != before.name:
                linked = await companies.linked_contacts(uow.conn, company_id)
                await ContactsStore(uow.conn).refresh_search(linked)
            await audit.record(uow.conn, workspace_id, "company", company_id, "update", actor,
                               before.snapshot(), after.snapshot())
            uow.add(company_changed(events.COMPANY_UPDATED, after))
        return after

    async def delete(self, workspace_id: str, actor: str, company_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            before = await self._locked(uow, workspace_id, company_id, expected_version)
            linked = await companies.delete(uow.conn, workspace_id, company_id)
            await ContactsStore(uow.conn).refresh_search(linked)
            await audit.record(uow.conn, workspace_id, "company", company_id, "delete", actor,
                               before.snapshot(), None)
            uow.add(company_changed(events.COMPANY_DELETED, before))

    async def _locked(self, uow: PgUnitOfWork, workspace_id: str, company_id: UUID, expected_version: int
                      ) -> Company:
        """The company, locked for this write; NotFound, or VersionMismatch for a stale write."""
        company = await companies.get(uow.conn, workspace_id, company_id, for_update=True)
        if company is None:
            raise NotFound("company")
        if company.version != expected_version:
            raise VersionMismatch(company.version)
        return company

    async def get(self, workspace_id: str, company_id: UUID) -> Company | None:
        async with self.db.pool.acquire() as conn:
            company = await companies.get(conn, workspace_id, company_id)
            if company is None:
                return None
            definitions = await field_store.definitions(conn, workspace_id, Entity.COMPANY)
        return replace(company, custom=defined_only(definitions, company.custom))

    async def page(self, workspace_id: str, query: str | None, domain: str | None, cursor: str | None,
                   limit: int) -> tuple[list[Company], str | None]:
        after = None
        if cursor:
            name, company_id = decode_cursor("companies", cursor, 2)
            after = (str(name), UUID(str(company_id)))
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            rows = await companies.page(conn, workspace_id, query, domain.lower() if domain else None, after,
                                        limit + 1)
        items = rows[:limit]
        next_cursor = (encode_cursor("companies", [items[-1].name.lower(), str(items[-1].id)])
                       if len(rows) > limit else None)
        return items, next_cursor

    async def _validated(self, uow: PgUnitOfWork, workspace_id: str, raw: dict[str, Any], *,
                         creating: bool) -> dict[str, Any]:
        errors: list[FieldError] = []
        values: dict[str, Any] = {}
        if "name" in raw or creating:
            name = (raw.get("name") or "").strip()
            if not name:
                errors.append(FieldError("name", "a company needs a name"))
            values["name"] = name
        if "domains" in raw:
            domains = [d.strip().lower().removeprefix("www.") for d in raw["domains"] or []]
            errors += [FieldError(f"domains[{n}]", "not a domain name")
                       for n, d in enumerate(domains) if not _DOMAIN.match(d)]
            values["domains"] = tuple(dict.fromkeys(domains))
        for name in ("industry", "size"):
            if name in raw:
                values[name] = raw[name]
        if "custom_fields" in raw:
            definitions = await field_store.definitions(uow.conn, workspace_id, Entity.COMPANY)
            values["custom"], custom_errors = validate_custom(definitions, raw["custom_fields"] or {})
            errors += custom_errors
        if errors:
            raise InvalidFields(errors)
        return values
