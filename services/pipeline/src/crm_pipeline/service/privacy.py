"""A person's erasure (GDPR art. 17): what pipeline holds of them goes, then contacts is told.

Deals stay, with their amounts, stages and history, so that forecasts and win rates still add
up; but they lose the person: a deal whose primary contact they were has no contact any more
(contact_id NULL, a new version), and their participant rows go. Activities on a deal keep
their place on its timeline (kind, times, owner) without subject, body or contact: the ones
about the person, and every note on a deal they were the primary contact of (notes are free
text about the deal's people). An activity about the person alone (no deal) goes. Their
interaction count (``contact_activity``) goes. Other parts of pipeline (lead scoring) add their
own erasers, run in the same transaction.

The confirmation is queued in the transaction that erases and sent by crmkit.erasure's
background task, retried with backoff: contacts being unreachable never holds up the consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

from crm_pipeline.store.activities import ActivitiesStore
from crmkit.erasure import ErasureConfirmations
from crmkit.kafka import Delivered
from crmkit.personal_data import Export, Sections
from crmkit.postgres import PgDatabase, PgUnitOfWork

log = logging.getLogger(__name__)

# Erases what another part of pipeline holds of the person, in the same transaction:
# (unit of work, workspace, contact id).
Eraser = Callable[[PgUnitOfWork, str, UUID], Awaitable[None]]


class Erasure:
    def __init__(self, db: PgDatabase, confirmations: ErasureConfirmations,
                 erasers: Sequence[Eraser] = ()) -> None:
        self.db = db
        self.confirmations = confirmations
        self.erasers = list(erasers)

    async def erase_contacts(self, items: Sequence[Delivered[UUID]]) -> int:
        """Erase each person and queue the confirmation to contacts, each person in one
        transaction. Erasing twice changes nothing. Returns the activities erased."""
        erased = 0
        for delivered in items:
            workspace_id, contact_id = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                activities = await ActivitiesStore(uow.conn).erase_contact(workspace_id, contact_id)
                for eraser in self.erasers:
                    await eraser(uow, workspace_id, contact_id)
                await self.confirmations.queue(uow.conn, workspace_id, contact_id)
            erased += activities
            log.info("erased a contact's deals links and activities", extra={"activities": activities})
        self.confirmations.queued()
        return erased


def exports(*parts: Export) -> Export:
    """One data export of what pipeline holds about a person from its parts' (each answers its
    own sections)."""

    async def export(workspace_id: str, contact_ids: list[UUID]) -> Sections:
        sections: dict[str, Any] = {}
        for part in parts:
            sections.update(await part(workspace_id, contact_ids))
        return sections

    return export
