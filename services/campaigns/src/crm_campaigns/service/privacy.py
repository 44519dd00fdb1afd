"""A person's erasure: what campaigns holds of them goes, a hash of each address stays.

Contacts publishes ``contact.erased`` after it has erased the contact, so the person's
addresses are no longer to be had from contacts: they are taken from their send documents
before those are deleted. Each address's hash (the one the sender looks suppression up with,
``store.campaigns.address_hash``) stays on the suppression list with the reason ``erased``,
so no later campaign or journey mails them, even when the address comes back in a new contact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from crm_campaigns.store.campaigns import address_hash
from crm_campaigns.store.erasure import addresses_of, erase_contacts, merged_into, suppress_erased
from crmkit.erasure import Confirm, MongoErasureConfirmations
from crmkit.kafka import Delivered
from crmkit.mongo import MongoDatabase

log = logging.getLogger(__name__)


class PrivacyService:
    def __init__(self, db: MongoDatabase, confirm: Confirm) -> None:
        self.db = db
        # Erasures done here, told to contacts by ``confirmations.run()`` (a background task).
        self.confirmations = MongoErasureConfirmations(db, confirm)

    async def erase_contacts(self, items: Sequence[Delivered[str]]) -> int:
        """Erase each person (and the contacts merged into them): their send documents,
        tracking hits, journey runs and engagement go; the hash of every address they were
        sent to stays suppressed; the confirmation to contacts is queued. All in one
        transaction per person; erasing twice changes nothing. Returns the sends deleted."""
        deleted = 0
        for delivered in items:
            workspace_id, contact_id = delivered.workspace_id, delivered.item
            async with self.db.unit_of_work() as uow:
                ids = [contact_id, *await merged_into(uow, workspace_id, contact_id)]
                hashes = {address_hash(a) for a in await addresses_of(uow, workspace_id, ids)}
                count = await erase_contacts(uow, workspace_id, ids)
                await suppress_erased(uow, workspace_id, hashes)
                await self.confirmations.queue(uow, workspace_id, contact_id)
            deleted += count
            log.info("erased a contact's campaign data", extra={"sends": count, "suppressed": len(hashes)})
        self.confirmations.queued()
        return deleted
