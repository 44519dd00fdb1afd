"""Contact merges as a PostgreSQL service that holds contact ids follows them.

When contacts merges a loser into a survivor (``crm.contacts.contact.merged.v1``), such a
service moves what it holds of the loser to the survivor and records a redirect (the table
``contact_redirects``, crmkit's migration 002), so that events still naming the loser, in
flight during the merge, land on the survivor too. Redirects are kept flat: when B is merged
into C, whatever pointed at B points at C.

Writes for a contact and merges of that contact are ordered by transaction-scoped advisory
locks: ``resolve`` holds a shared lock on every contact it answers for, ``merge`` an exclusive
one on the loser. So a write for the loser either commits before the merge, which then moves
it, or waits for the merge and finds the redirect. Use both inside the unit of work that writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import asyncpg

from crmkit.kafka.retry import PermanentError

# Advisory locks keyed (space, hashtext('<workspace>:<contact id>')): the two-int key space,
# apart from the single-bigint keys of the migrations and the relay.
_LOCK_SPACE = 0x43524D43  # "CRMC"

ContactKey = tuple[str, UUID]
"""A contact as (workspace id, contact id)."""


class ContactRedirects:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def resolve(self, contacts: Iterable[ContactKey]) -> dict[ContactKey, UUID]:
        """The contact each one stands for now: itself, or the survivor it was merged into.
        Each is locked (shared) until the transaction ends, so no merge of it commits first."""
        wanted = set(contacts)
        if not wanted:
            return {}
        locked: set[ContactKey] = set()
        to_lock = wanted
        while True:
            await self._lock(to_lock, exclusive=False)
            locked |= to_lock
            survivors = await self._survivors(wanted)
            answer = {key: survivors.get(key, key[1]) for key in wanted}
            # A survivor read before its lock may have been merged on since: lock, read again.
            to_lock = {(key[0], target) for key, target in answer.items()} - locked
            if not to_lock:
                return answer

    async def merge(self, workspace_id: str, loser_id: UUID, survivor_id: UUID) -> UUID | None:
        """Record that ``loser_id`` was merged into ``survivor_id``, and hold the loser's lock
        until the transaction ends. Returns the contact the loser's data now belongs to (the
        survivor, or what the survivor was merged into since), or None when the loser had been
        merged already, so there is nothing to move."""
        loser = (workspace_id, loser_id)
        await self._lock({loser}, exclusive=True)
        if await self._survivors({loser}):
            return None
        target = (await self.resolve([(workspace_id, survivor_id)]))[(workspace_id, survivor_id)]
        if target == loser_id:
            raise PermanentError(f"merging {loser_id} into {survivor_id} would make a cycle: "
                                 f"{survivor_id} was merged into {loser_id}")
        await self.conn.execute(
            "INSERT INTO contact_redirects (workspace_id, loser_id, survivor_id) VALUES ($1, $2, $3)",
            workspace_id, loser_id, target,
        )
        await self.conn.execute(
            "UPDATE contact_redirects SET survivor_id = $3 WHERE workspace_id = $1 AND survivor_id = $2",
            workspace_id, loser_id, target,
        )
        return target

    async def _lock(self, contacts: set[ContactKey], *, exclusive: bool) -> None:
        if not contacts:
            return
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await self.conn.execute(
            f"SELECT {function}($1, hashtext(k))"  # noqa: S608 - one of two function names
            " FROM (SELECT unnest($2::text[]) AS k ORDER BY 1) keys",
            _LOCK_SPACE, sorted(f"{workspace}:{contact}" for workspace, contact in contacts),
        )

    async def _survivors(self, contacts: set[ContactKey]) -> dict[ContactKey, UUID]:
        keys = list(contacts)
        rows = await self.conn.fetch(
            "SELECT r.workspace_id, r.loser_id, r.survivor_id FROM contact_redirects r"
            " JOIN unnest($1::text[], $2::uuid[]) AS k (workspace_id, loser_id)"
            " USING (workspace_id, loser_id)",
            [workspace for workspace, _ in keys], [contact for _, contact in keys],
        )
        return {(r["workspace_id"], r["loser_id"]): r["survivor_id"] for r in rows}
