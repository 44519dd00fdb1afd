"""One batch of an import, applied set-based inside the caller's unit of work.

The rows come validated (the API's rules, domain/imports.py); they are matched against the
identities the workspace has with one query and against the suppression list with another,
planned row by row (domain/import_plan.py), then written with one COPY or statement per table.
Each contact row is written once, with its search text (store.contacts.search_text: the words
refresh_search would write). What every contact write ends with follows for the whole batch:
the audit entries, one event per contact and the segment memberships.

The CPU-bound parts (planning, building rows, snapshots and events) run in a worker thread,
partly while PostgreSQL works on the batch's COPYs: the two overlap on separate cores, and the
event loop stays free for the API meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from crm_contacts.domain import events
from crm_contacts.domain.import_plan import BatchPlan, Draft, plan_batch
from crm_contacts.domain.imports import ImportJob, OnDuplicate, ParsedRow
from crm_contacts.domain.model import Company, CompanyLink, Contact
from crm_contacts.service.contacts import _changed_fields as changed_fields
from crm_contacts.service.segments import reevaluate_membership
from crm_contacts.store import audit, imports, privacy
from crm_contacts.store.contacts import ContactsStore, search_text
from crm_contacts.wire import company_changed, contact_created, contact_updated
from crmkit.ids import uuid7
from crmkit.kafka import Event
from crmkit.postgres import PgUnitOfWork

Entry = tuple[object, str, dict[str, Any] | None, dict[str, Any] | None]


async def apply_batch(uow: PgUnitOfWork, job: ImportJob, parsed: Sequence[ParsedRow]) -> BatchPlan:
    """Apply validated rows; the plan holds the counts and the error report's lines."""
    conn, workspace_id = uow.conn, job.workspace_id
    identities = list(dict.fromkeys(i for row in parsed for i in row.identities))
    store = ContactsStore(conn)
    owners = await store.identity_owners(workspace_id, identities) if identities else {}
    suppressed = await privacy.suppressed(conn, workspace_id, identities)
    current: dict[UUID, Contact] = {}
    if job.on_duplicate is OnDuplicate.UPDATE and owners:
        locked = await store.get_many(workspace_id, list(set(owners.values())), for_update=True)
        current = {c.id: c for c in locked}
    plan = await asyncio.to_thread(plan_batch, parsed, job.on_duplicate, owners, current, suppressed)
    if plan.drafts:
        await _write(uow, job, plan.drafts)
    await imports.add_errors(conn, job.id, plan.errors)
    return plan


@dataclass
class _Rows:
    """A batch's writes, table by table."""

    written: list[tuple[Draft, Contact]]
    inserts: list[tuple[Any, ...]]
    updates: list[tuple[Any, ...]]
    identities: list[tuple[str, str, UUID]]
    links: list[tuple[UUID, UUID]]


async def _write(uow: PgUnitOfWork, job: ImportJob, drafts: Sequence[Draft]) -> None:
    conn, workspace_id, actor = uow.conn, job.workspace_id, f"import:{job.id}"
    now: datetime = await conn.fetchval("SELECT now()")
    names = list(dict.fromkeys(name for d in drafts for name in d.new_companies))
    companies, made = await imports.find_or_create_companies(conn, workspace_id, names, now)
    rows = await asyncio.to_thread(_rows, workspace_id, drafts, companies, now)
    derived = asyncio.ensure_future(asyncio.to_thread(_derived, rows.written, made))
    try:
        await imports.insert_contacts(conn, rows.inserts)
        await imports.update_contacts(conn, workspace_id, rows.updates)
        await imports.insert_identities(conn, workspace_id, rows.identities)
        await imports.link_companies(conn, workspace_id, rows.links)
    except BaseException:
        await asyncio.gather(derived, return_exceptions=True)  # the thread ends before the rollback
        raise
    contact_entries, company_entries, outgoing = await derived
    await audit.record_many(conn, workspace_id, "contact", actor, contact_entries)
    if company_entries:
        await audit.record_many(conn, workspace_id, "company", actor, company_entries)
    for event in outgoing:
        uow.add(event)
    await reevaluate_membership(uow, workspace_id, [c.id for _, c in rows.written])


def _rows(workspace_id: str, drafts: Sequence[Draft], companies: dict[str, tuple[UUID, str]],
          now: datetime) -> _Rows:
    rows = _Rows([], [], [], [], [])
    # UUIDv7s of one millisecond are not ordered: sorted, the batch's new contacts sort in file order.
    new_ids = iter(sorted(uuid7() for d in drafts if d.contact is None))
    for draft in drafts:
        contact = _after(workspace_id, draft, companies, now, new_ids)
        rows.written.append((draft, contact))
        text = search_text(contact.first_name, contact.last_name, contact.display_name, contact.identities,
                           [link.name for link in contact.companies])
        values = (contact.display_name, contact.first_name, contact.last_name, contact.owner_id,
                  contact.lifecycle_stage.value, text)
        if draft.contact is None:
            rows.inserts.append((contact.id, workspace_id, *values, list(contact.tags),
                                 json.dumps(contact.custom), now, now))
        else:
            rows.updates.append((contact.id, *values, json.dumps(contact.tags), json.dumps(contact.custom)))
        rows.identities += [(i.kind.value, i.value, contact.id) for i in draft.added_identities()]
        rows.links += [(contact.id, companies[name][0]) for name in draft.new_companies]
    return rows


def _derived(written: Sequence[tuple[Draft, Contact]], made: Sequence[Company]
             ) -> tuple[list[Entry], list[Entry], list[Event]]:
    """The audit entries (contacts', then the new companies') and the events of a batch."""
    contact_entries: list[Entry] = []
    outgoing = [company_changed(events.COMPANY_CREATED, company) for company in made]
    for draft, contact in written:
        if draft.contact is None:
            contact_entries.append((contact.id, "create", None, contact.snapshot()))
            outgoing.append(contact_created(contact))
        else:
            contact_entries.append((contact.id, "update", draft.contact.snapshot(), contact.snapshot()))
            outgoing.append(contact_updated(contact, changed_fields(draft.contact, contact)))
    return contact_entries, [(c.id, "create", None, c.snapshot()) for c in made], outgoing


def _after(workspace_id: str, draft: Draft, companies: dict[str, tuple[UUID, str]], now: datetime,
           new_ids: Iterator[UUID]) -> Contact:
    """The contact as the batch writes it, without reading it back."""
    links = tuple(CompanyLink(companies[name][0], companies[name][1], "") for name in draft.new_companies)
    if draft.contact is None:
        return Contact(id=next(new_ids), workspace_id=workspace_id, display_name=draft.final_display_name(),
                       identities=tuple(draft.identities), created_at=now, last_seen_at=None,
                       first_name=draft.first_name, last_name=draft.last_name, owner_id=draft.owner_id,
                       lifecycle_stage=draft.lifecycle_stage, tags=tuple(sorted(draft.tags)),
                       custom=dict(draft.custom), companies=links, updated_at=now)
    return replace(draft.contact, display_name=draft.final_display_name(), first_name=draft.first_name,
                   last_name=draft.last_name, owner_id=draft.owner_id,
                   lifecycle_stage=draft.lifecycle_stage, tags=tuple(sorted(draft.tags)),
                   custom=dict(draft.custom), identities=tuple(draft.identities),
                   companies=draft.contact.companies + links, version=draft.contact.version + 1,
                   updated_at=now)
