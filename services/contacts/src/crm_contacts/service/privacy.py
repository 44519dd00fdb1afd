"""Consent and GDPR: consent per channel and purpose with its proof, the erasure of a person
(with the bookkeeping of which services confirmed theirs), and the export of what we hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm_contacts.domain.errors import FieldError, InvalidFields, NotFound
from crm_contacts.service.personal_data import PersonalDataExport, PersonalDataSources
from crm_contacts.service.segments import reevaluate_membership
from crm_contacts.store import audit, merges, privacy
from crm_contacts.store.contacts import ContactsStore
from crm_contacts.store.privacy import ConsentRecord, ErasureStatus
from crm_contacts.wire import consent_changed, contact_erased
from crmkit.kafka import Delivered
from crmkit.postgres import PgDatabase, PgUnitOfWork

CONSENT_CONSUMER = "contacts.consent"
CHANNELS = frozenset({"email", "sms", "whatsapp", "phone", "messenger", "instagram", "telegram", "post"})
PURPOSES = frozenset({"marketing", "newsletter", "transactional", "research", "profiling"})
STATUSES = frozenset({"granted", "withdrawn"})


@dataclass(frozen=True)
class ConsentChange:
    """A consent statement arriving from another service (an unsubscribe, say)."""

    contact_id: UUID
    record: ConsentRecord


class PrivacyService:
    def __init__(self, db: PgDatabase, erasure_services: Sequence[str], sources: PersonalDataSources) -> None:
        self.db = db
        self.erasure_services = tuple(erasure_services)
        self.sources = sources

    # -- consent -------------------------------------------------------------------------------

    async def set_consent(self, workspace_id: str, actor: str, contact_id: UUID, channel: str, purpose: str,
                          status: str, source: str, proof: str) -> ConsentRecord:
        errors = [FieldError(name, f"one of {', '.join(sorted(allowed))}")
                  for name, value, allowed in (("channel", channel, CHANNELS), ("purpose", purpose, PURPOSES),
                                               ("status", status, STATUSES)) if value not in allowed]
        if errors:
            raise InvalidFields(errors)
        record = ConsentRecord(channel, purpose, status, source or actor, proof, datetime.now(UTC))
        async with self.db.unit_of_work() as uow:
            contact_id = await self._live(uow, workspace_id, contact_id)
            await self._apply(uow, workspace_id, actor, contact_id, record)
        return record

    async def consents(self, workspace_id: str, contact_id: UUID
                       ) -> tuple[list[ConsentRecord], list[ConsentRecord]] | None:
        """The current state per channel and purpose, and every statement, newest first."""
        async with self.db.pool.acquire() as conn:
            contact = await ContactsStore(conn).current(workspace_id, contact_id)
            if contact is None:
                return None
            current = (await privacy.consents(conn, [contact.id]))[contact.id]
            return current, await privacy.consent_history(conn, workspace_id, contact.id)

    async def record_consent_changes(self, items: Sequence[Delivered[ConsentChange]]) -> int:
        """Consent statements from the event stream (campaign unsubscribes), once each; a
        statement older than the one held changes nothing."""
        applied = 0
        async with self.db.unit_of_work() as uow:
            fresh = await uow.claim_many(CONSENT_CONSUMER, [d.event_id for d in items])
            for d in items:
                if d.event_id not in fresh:
                    continue
                try:
                    contact_id = await self._live(uow, d.workspace_id, d.item.contact_id)
                except NotFound:
                    continue  # erased or never known here: nothing to record consent on
                record = d.item.record
                applied += await self._apply(uow, d.workspace_id, record.source, contact_id, record)
        return applied

    async def _apply(self, uow: PgUnitOfWork, workspace_id: str, actor: str, contact_id: UUID,
                     record: ConsentRecord) -> bool:
        if not await privacy.set_consent(uow.conn, workspace_id, contact_id, record):
            return False
        await audit.record(uow.conn, workspace_id, "contact", contact_id, "consent", actor, None,
                           {"channel": record.channel, "purpose": record.purpose, "status": record.status,
                            "source": record.source})
        uow.add(consent_changed(workspace_id, contact_id, record))
        await reevaluate_membership(uow, workspace_id, [contact_id])
        return True

    async def _live(self, uow: PgUnitOfWork, workspace_id: str, contact_id: UUID) -> UUID:
        contact = await ContactsStore(uow.conn).current(workspace_id, contact_id, for_update=True)
        if contact is None or contact.erased:
            raise NotFound("contact")
        return contact.id

    # -- erasure -------------------------------------------------------------------------------

    async def erase(self, workspace_id: str, actor: str, contact_id: UUID) -> ErasureStatus:
        """Erase a person: their data here is deleted, their identities kept only as salted
        hashes (so no import or campaign re-creates them), ``contact.erased`` is published for
        every id that stood for them, and each service's confirmation is awaited."""
        async with self.db.unit_of_work() as uow:
            contact_id = await self._live(uow, workspace_id, contact_id)
            store = ContactsStore(uow.conn)
            contact = await store.get(workspace_id, contact_id)
            assert contact is not None
            ids = [contact_id, *await merges.absorbed(uow.conn, workspace_id, contact_id)]
            await privacy.suppress(uow.conn, workspace_id, contact.identities, "erased")
            await privacy.erase(uow.conn, workspace_id, ids)
            await audit.forget(uow.conn, workspace_id, "contact", [str(i) for i in ids])
            await audit.record(uow.conn, workspace_id, "contact", contact_id, "erase", actor, None, None)
            await privacy.request_erasure(uow.conn, workspace_id, contact_id, actor, self.erasure_services)
            for erased_id in ids:
                uow.add(contact_erased(workspace_id, erased_id))
            await reevaluate_membership(uow, workspace_id, ids)
            status = await privacy.erasure_status(uow.conn, workspace_id, contact_id)
        assert status is not None
        return status

    async def confirm_erasure(self, workspace_id: str, contact_id: UUID, service: str) -> bool:
        """Record that ``service`` erased its copies; True once every expected service has."""
        async with self.db.unit_of_work() as uow:
            if not await privacy.confirm_erasure(uow.conn, workspace_id, contact_id, service):
                raise NotFound("erasure")
            status = await privacy.erasure_status(uow.conn, workspace_id, contact_id)
        assert status is not None
        return status.complete

    async def erasure_status(self, workspace_id: str, contact_id: UUID) -> ErasureStatus | None:
        async with self.db.pool.acquire() as conn:
            return await privacy.erasure_status(conn, workspace_id, contact_id)

    # -- export --------------------------------------------------------------------------------

    async def personal_data(self, workspace_id: str, contact_id: UUID) -> PersonalDataExport | None:
        """Everything the platform holds about a person: contacts' own document, and the part
        of every other service that holds personal data, asked at once for the person's id and
        every id merged into it. A service that does not answer is marked unavailable; the
        export still comes back."""
        document = await self._own_personal_data(workspace_id, contact_id)
        if document is None:
            return None
        contact_id, ids, contacts = document
        parts = await self.sources.gather(workspace_id, ids)
        return PersonalDataExport(workspace_id, contact_id, tuple(ids), datetime.now(UTC), contacts,
                                  tuple(parts))

    async def _own_personal_data(self, workspace_id: str, contact_id: UUID
                                 ) -> tuple[UUID, list[UUID], dict[str, Any]] | None:
        """The person (a merged id's survivor), every id that stands for them, and everything
        contacts holds about them, as JSON: the record, identities, company links, consents with
        their history, timeline, merges and the audit trail."""
        async with self.db.pool.acquire() as conn:
            store = ContactsStore(conn)
            contact = await store.current(workspace_id, contact_id)
            if contact is None or contact.erased:
                return None
            contact_id = contact.id
            ids = [contact_id, *await merges.absorbed(conn, workspace_id, contact_id)]
            current = (await privacy.consents(conn, [contact_id]))[contact_id]
            history = await privacy.consent_history(conn, workspace_id, contact_id)
            timeline = await store.timeline(workspace_id, contact_id, None, 10_000)
            trail = await audit.history(conn, workspace_id, "contact", contact_id, None, 10_000)
            merged = await merges.history(conn, workspace_id, contact_id)
        return contact_id, ids, {
            "contact": contact.snapshot(),
            "created_at": contact.created_at.isoformat(),
            "last_seen_at": contact.last_seen_at.isoformat() if contact.last_seen_at else None,
            "consents": [_consent(c) for c in current],
            "consent_history": [_consent(c) for c in history],
            "timeline": [{"id": e.entry_id, "kind": e.kind, "channel": e.channel, "direction": e.direction,
                          "summary": e.summary, "occurred_at": e.occurred_at.isoformat()} for e in timeline],
            "merges": [{"loser_id": str(m.loser_id), "survivor_id": str(m.survivor_id),
                        "at": m.at.isoformat()} for m in merged],
            "audit": [{"action": a.action, "actor": a.actor, "at": a.at.isoformat(), "before": a.before,
                       "after": a.after} for a in trail],
        }


def _consent(record: ConsentRecord) -> dict[str, str]:
    return {"channel": record.channel, "purpose": record.purpose, "status": record.status,
            "source": record.source, "proof": record.proof, "at": record.at.isoformat()}
