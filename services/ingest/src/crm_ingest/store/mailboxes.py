"""IMAP sync state: per polled mailbox, its UIDVALIDITY and the last UID imported, plus a lease
so that one poller at a time (across replicas) imports from it. Collection ``mailbox_state``;
every query is by ``_id`` (the mailbox's key), so no other index is needed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from crmkit.mongo import MongoDatabase


@dataclass(frozen=True)
class MailboxState:
    uidvalidity: int  # 0 before the first sync
    last_uid: int  # every message up to this UID has been accepted (or skipped for good)


class MailboxStates:
    def __init__(self, database: MongoDatabase) -> None:
        self.collection = database.db.mailbox_state

    async def claim(self, key: str, workspace_id: str, owner: str,
                    lease_seconds: float) -> MailboxState | None:
        """Take or renew the mailbox's lease for ``owner`` and return its state; None while
        another owner's lease runs."""
        now = datetime.now(UTC)
        try:
            doc = await self.collection.find_one_and_update(
                {"_id": key, "$or": [{"owner": owner}, {"owner": None}, {"lease_until": {"$lt": now}}]},
                {"$set": {"owner": owner, "lease_until": now + timedelta(seconds=lease_seconds),
                          "workspace_id": workspace_id},
                 "$setOnInsert": {"uidvalidity": 0, "last_uid": 0}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return None  # the document exists and another owner's lease has not run out
        if doc is None:
            return None
        return MailboxState(int(doc.get("uidvalidity", 0)), int(doc.get("last_uid", 0)))

    async def advance(self, key: str, owner: str, state: MailboxState, lease_seconds: float) -> bool:
        """Record progress and renew the lease; False when ``owner`` lost the lease (another
        poller took over), in which case it must stop importing."""
        now = datetime.now(UTC)
        result = await self.collection.update_one(
            {"_id": key, "owner": owner},
            {"$set": {"uidvalidity": state.uidvalidity, "last_uid": state.last_uid,
                      "lease_until": now + timedelta(seconds=lease_seconds), "synced_at": now}})
        return result.matched_count == 1

    async def release(self, key: str, owner: str) -> None:
        """Give the lease up (at shutdown), so that another replica can take over at once."""
        await self.collection.update_one({"_id": key, "owner": owner},
                                         {"$set": {"owner": None, "lease_until": None}})
