"""Consent, erasure bookkeeping and the suppression list of erased people's identities."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from crm_contacts.domain.model import Identity


@dataclass(frozen=True)
class ConsentRecord:
    channel: str
    purpose: str
    status: str
    source: str
    proof: str
    at: datetime


@dataclass(frozen=True)
class ErasureStatus:
    requested_at: datetime
    requested_by: str
    expected: tuple[str, ...]
    confirmed: dict[str, datetime]

    @property
    def complete(self) -> bool:
        return set(self.expected) <= set(self.confirmed)


async def _salt(conn: asyncpg.Connection, workspace_id: str) -> bytes:
    """The workspace's secret salt, made on first use; hashes are useless without it."""
    await conn.execute(
        "INSERT INTO workspace_salts (workspace_id, salt) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        workspace_id, os.urandom(32),
    )
    salt: bytes = await conn.fetchval("SELECT salt FROM workspace_salts WHERE workspace_id = $1",
                                      workspace_id)
    return salt


def _hash(salt: bytes, identity: Identity) -> str:
    return hmac.new(salt, f"{identity.kind.value}:{identity.value}".encode(), hashlib.sha256).hexdigest()


async def suppress(conn: asyncpg.Connection, workspace_id: str, identities: Sequence[Identity],
                   reason: str) -> None:
    salt = await _salt(conn, workspace_id)
    await conn.executemany(
        "INSERT INTO suppressions (workspace_id, kind, hash, reason) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        [(workspace_id, i.kind.value, _hash(salt, i), reason) for i in identities],
    )


async def suppressed(conn: asyncpg.Connection, workspace_id: str, identities: Sequence[Identity]
                     ) -> set[Identity]:
    """Those of ``identities`` that belong to erased people."""
    if not identities:
        return set()
    salt = await _salt(conn, workspace_id)
    hashes = {_hash(salt, i): i for i in identities}
    rows = await conn.fetch(
        "SELECT hash FROM suppressions WHERE workspace_id = $1 AND hash = ANY($2::text[])",
        workspace_id, list(hashes),
    )
    return {hashes[r["hash"]] for r in rows}


async def consents(conn: asyncpg.Connection, contact_ids: Sequence[UUID]) -> dict[UUID, list[ConsentRecord]]:
    found: dict[UUID, list[ConsentRecord]] = {c: [] for c in contact_ids}
    for r in await conn.fetch(
        "SELECT contact_id, channel, purpose, status, source, proof, at FROM consents"
        " WHERE contact_id = ANY($1::uuid[]) ORDER BY channel, purpose", list(contact_ids),
    ):
        found[r["contact_id"]].append(ConsentRecord(r["channel"], r["purpose"], r["status"], r["source"],
                                                    r["proof"], r["at"]))
    return found


async def consent_history(
    conn: asyncpg.Connection, workspace_id: str, contact_id: UUID
) -> list[ConsentRecord]:
    rows = await conn.fetch(
        "SELECT channel, purpose, status, source, proof, at FROM consent_history"
        " WHERE workspace_id = $1 AND contact_id = $2 ORDER BY id DESC LIMIT 500", workspace_id, contact_id,
    )
    return [ConsentRecord(**dict(r)) for r in rows]


async def set_consent(conn: asyncpg.Connection, workspace_id: str, contact_id: UUID, record: ConsentRecord
                      ) -> bool:
    """Record a consent change; False when it is older than the state already held (events
    can arrive late) or changes nothing."""
    current = await conn.fetchrow(
        "SELECT status, at FROM consents WHERE contact_id = $1 AND channel = $2 AND purpose = $3 FOR UPDATE",
        contact_id, record.channel, record.purpose,
    )
    if current is not None and (current["at"] > record.at or current["status"] == record.status):
        return False
    args = (workspace_id, contact_id, record.channel, record.purpose, record.status, record.source,
            record.proof, record.at)
    await conn.execute(
        "INSERT INTO consents (workspace_id, contact_id, channel, purpose, status, source, proof, at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (contact_id, channel, purpose) DO UPDATE"
        " SET status = $5, source = $6, proof = $7, at = $8", *args,
    )
    await conn.execute(
        "INSERT INTO consent_history (workspace_id, contact_id, channel, purpose, status, source, proof, at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", *args,
    )
    return True


async def drop_consents(conn: asyncpg.Connection, contact_ids: Sequence[UUID]) -> None:
    await conn.execute("DELETE FROM consents WHERE contact_id = ANY($1::uuid[])", list(contact_ids))


async def erase(conn: asyncpg.Connection, workspace_id: str, contact_ids: Sequence[UUID]) -> None:
    """Delete every piece of personal data contacts holds for these ids; the rows keep only
    their ids, times and erased mark, so references elsewhere resolve to "erased"."""
    ids = list(contact_ids)
    for table in ("identities", "consents", "consent_history", "contact_companies", "timeline_entries"):
        await conn.execute(f"DELETE FROM {table} WHERE contact_id = ANY($1::uuid[])", ids)  # noqa: S608
    await conn.execute(
        "UPDATE contacts SET display_name = '', first_name = '', last_name = '', addresses = '[]',"
        " owner_id = NULL, tags = '{}', custom = '{}', search_text = '', erased_at = now(),"
        " updated_at = now(), version = version + 1 WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
        workspace_id, ids,
    )
    await conn.execute(
        "DELETE FROM duplicate_candidates WHERE contact_a = ANY($1::uuid[]) OR contact_b = ANY($1::uuid[])",
        ids,
    )
    await conn.execute(
        "UPDATE merges SET loser = '{}', choices = '{}' WHERE workspace_id = $1"
        " AND (loser_id = ANY($2::uuid[]) OR survivor_id = ANY($2::uuid[]))", workspace_id, ids,
    )


async def request_erasure(conn: asyncpg.Connection, workspace_id: str, contact_id: UUID, requested_by: str,
                          expected: Sequence[str]) -> None:
    await conn.execute(
        "INSERT INTO erasures (workspace_id, contact_id, requested_by, expected) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING", workspace_id, contact_id, requested_by, list(expected),
    )


async def confirm_erasure(
    conn: asyncpg.Connection, workspace_id: str, contact_id: UUID, service: str
) -> bool:
    """False when no erasure of that contact was requested in the workspace."""
    known = await conn.fetchval("SELECT 1 FROM erasures WHERE workspace_id = $1 AND contact_id = $2",
                                workspace_id, contact_id)
    if not known:
        return False
    await conn.execute("INSERT INTO erasure_confirmations (contact_id, service) VALUES ($1, $2)"
                       " ON CONFLICT DO NOTHING", contact_id, service)
    return True


async def erasure_status(
    conn: asyncpg.Connection, workspace_id: str, contact_id: UUID
) -> ErasureStatus | None:
    row = await conn.fetchrow(
        "SELECT requested_at, requested_by, expected FROM erasures"
        " WHERE workspace_id = $1 AND contact_id = $2",
        workspace_id, contact_id,
    )
    if row is None:
        return None
    confirmed = {r["service"]: r["confirmed_at"] for r in await conn.fetch(
        "SELECT service, confirmed_at FROM erasure_confirmations WHERE contact_id = $1", contact_id)}
    return ErasureStatus(row["requested_at"], row["requested_by"], tuple(row["expected"]), confirmed)
