"""A person's erasure (GDPR art. 17): what ticketing holds of them is anonymised, then
confirmed to contacts.

Tickets stay, so that volumes, response times and SLA compliance still add up, but without
anything that says who the person was or what was written: the subject, the identity replies
went to, every message's text and attachment names (theirs, the agents' replies to them, the
notes about them), the thread keys (Message-IDs name mail hosts and sometimes people) and
survey comments. The confirmation to contacts is queued in the same transaction and sent by
crmkit.erasure's background task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from crm_ticketing.store.tickets import TicketsStore
from crmkit.erasure import ErasureConfirmations
from crmkit.kafka import Delivered
from crmkit.postgres import PgDatabase, PgUnitOfWork

log = logging.getLogger(__name__)

# Erases what another part of ticketing holds of the tickets' people, in the same transaction.
Eraser = Callable[[PgUnitOfWork, str, Sequence[UUID]], Awaitable[None]]


class Erasure:
    def __init__(self, db: PgDatabase, confirmations: ErasureConfirmations,
                 erasers: Sequence[Eraser] = ()) -> None:
        self.db = db
        self.confirmations = confirmations
        self.erasers = list(erasers)

    async def erase_contacts(self, items: Sequence[Delivered[UUID]]) -> int:
        """Anonymise each erased person's tickets and queue the confirmation to contacts, each
        person in one transaction. Erasing twice changes nothing. Returns the tickets
        anonymised."""
        erased = 0
        for delivered in items:
            workspace_id, contact_id = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                tickets = await TicketsStore(uow.conn).erase_contact(workspace_id, contact_id)
                for eraser in self.erasers:
                    await eraser(uow, workspace_id, tickets)
                await self.confirmations.queue(uow.conn, workspace_id, contact_id)
            erased += len(tickets)
            log.info("anonymised an erased contact's tickets", extra={"tickets": len(tickets)})
        self.confirmations.queued()
        return erased
