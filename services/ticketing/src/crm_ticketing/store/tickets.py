"""The only place with ticketing's SQL. Every query is scoped by workspace."""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.model import InboundMessage, Ticket, TicketPriority, TicketStatus, TicketType
from crm_ticketing.domain.transitions import FieldChange

# Stored rows as they are, for a person's data export.
Rows = list[dict[str, Any]]

_COLUMNS = ("id, workspace_id, contact_id, channel, subject, status, message_count, created_at,"
            " requester_kind, requester")
_READ = (_COLUMNS + ", priority, type, tags, version, updated_at, solved_at, team_id, assignee,"
         " custom_fields::text AS custom_fields")


def _ticket(row: Any) -> Ticket:
    fields = dict(row)
    fields["status"] = TicketStatus(fields["status"])
    fields["priority"] = TicketPriority(fields["priority"])
    fields["type"] = None if fields["type"] is None else TicketType(fields["type"])
    fields["tags"] = tuple(fields["tags"])
    fields["custom_fields"] = json.loads(fields["custom_fields"])
    return Ticket(**fields)


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    at: datetime
    actor: str
    field: str
    old: Any
    new: Any


class TicketsStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def ticket_for_keys(self, workspace_id: str, keys: list[str]) -> UUID | None:
        if not keys:
            return None
        rows = await self.conn.fetch(
            "SELECT key, ticket_id FROM thread_keys WHERE workspace_id = $1 AND key = ANY($2::text[])",
            workspace_id, keys,
        )
        found = {r["key"]: r["ticket_id"] for r in rows}
        for key in keys:  # most specific first
            if key in found:
                ticket_id: UUID = found[key]
                return ticket_id
        return None

    async def insert_ticket(self, ticket: Ticket) -> None:
        await self.conn.execute(
            f"INSERT INTO tickets ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",  # noqa: S608
            ticket.id, ticket.workspace_id, ticket.contact_id, ticket.channel, ticket.subject,
            ticket.status.value, ticket.message_count, ticket.created_at, ticket.requester_kind,
            ticket.requester,
        )

    async def is_threaded(self, workspace_id: str, interaction_id: str) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT 1 FROM ticket_messages WHERE workspace_id = $1 AND interaction_id = $2",
            workspace_id, interaction_id,
        ))

    async def add_message(self, ticket_id: UUID, message: InboundMessage) -> bool:
        added = await self.conn.fetchval(
            "INSERT INTO ticket_messages (workspace_id, interaction_id, ticket_id, occurred_at,"
            " direction, author, body, attachments) VALUES ($1, $2, $3, $4, 'inbound', $5, $6, $7::jsonb)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            message.workspace_id, message.interaction_id, ticket_id, message.occurred_at,
            str(message.contact_id), message.text, json.dumps(list(message.attachments)),
        )
        if added:
            await self.conn.execute(
                "UPDATE tickets SET message_count = message_count + 1, updated_at = now()"
                " WHERE id = $1", ticket_id,
            )
        return added is not None

    async def add_keys(self, workspace_id: str, ticket_id: UUID, keys: list[str], *,
                       repoint: bool = False) -> None:
        """Keys already naming a ticket keep it, unless ``repoint``: then they name this one."""
        conflict = "DO UPDATE SET ticket_id = EXCLUDED.ticket_id" if repoint else "DO NOTHING"
        await self.conn.executemany(
            f"INSERT INTO thread_keys (workspace_id, key, ticket_id) VALUES ($1, $2, $3)"  # noqa: S608
            f" ON CONFLICT (workspace_id, key) {conflict}",
            [(workspace_id, key, ticket_id) for key in keys],
        )

    async def move_to_contact(self, workspace_id: str, from_contact: UUID, to_contact: UUID) -> int:
        """Every ticket of ``from_contact`` becomes ``to_contact``'s; returns how many."""
        status: str = await self.conn.execute(
            "UPDATE tickets SET contact_id = $3, updated_at = now()"
            " WHERE workspace_id = $1 AND contact_id = $2",
            workspace_id, from_contact, to_contact,
        )
        return int(status.split()[-1])

    async def get(self, workspace_id: str, ticket_id: UUID, *, for_update: bool = False) -> Ticket | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"SELECT {_READ} FROM tickets WHERE workspace_id = $1 AND id = $2{lock}",  # noqa: S608
            workspace_id, ticket_id,
        )
        return _ticket(row) if row else None

    async def update_fields(self, ticket: Ticket) -> None:
        """Writes what a change sets: status, priority, type, tags, team, assignee, custom
        fields, version and the times."""
        await self.conn.execute(
            "UPDATE tickets SET status = $3, priority = $4, type = $5, tags = $6::text[], version = $7,"
            " updated_at = $8, solved_at = $9, team_id = $10, assignee = $11, custom_fields = $12::jsonb"
            " WHERE workspace_id = $1 AND id = $2",
            ticket.workspace_id, ticket.id, ticket.status.value, ticket.priority.value,
            None if ticket.type is None else ticket.type.value, list(ticket.tags), ticket.version,
            ticket.updated_at, ticket.solved_at, ticket.team_id, ticket.assignee,
            json.dumps(dict(ticket.custom_fields)),
        )

    async def add_history(self, ticket: Ticket, actor: str, changes: Sequence[FieldChange]) -> None:
        await self.conn.executemany(
            "INSERT INTO ticket_history (workspace_id, ticket_id, at, actor, field, old, new)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)",
            [(ticket.workspace_id, ticket.id, ticket.updated_at, actor, c.field, json.dumps(c.old),
              json.dumps(c.new)) for c in changes],
        )

    async def history(self, workspace_id: str, ticket_id: UUID, before_id: int | None, limit: int
                      ) -> list[HistoryEntry]:
        """Newest first, below ``before_id`` when given."""
        rows = await self.conn.fetch(
            "SELECT id, at, actor, field, old::text AS old, new::text AS new FROM ticket_history"
            " WHERE workspace_id = $1 AND ticket_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4",
            workspace_id, ticket_id, 2**62 if before_id is None else before_id, limit,
        )
        return [HistoryEntry(id=r["id"], at=r["at"], actor=r["actor"], field=r["field"],
                             old=None if r["old"] is None else json.loads(r["old"]),
                             new=None if r["new"] is None else json.loads(r["new"])) for r in rows]

    async def list(self, workspace_id: str, contact_id: UUID | None,
                   after: tuple[datetime, UUID] | None, limit: int) -> list[Ticket]:
        conditions = ["workspace_id = $1"]
        args: list[Any] = [workspace_id]
        if contact_id is not None:
            args.append(contact_id)
            conditions.append(f"contact_id = ${len(args)}")
        if after is not None:
            args.extend(after)
            conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        rows = await self.conn.fetch(
            f"SELECT {_READ} FROM tickets WHERE {' AND '.join(conditions)}"  # noqa: S608
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
        return [_ticket(r) for r in rows]

    async def first_inbound_text(self, workspace_id: str, ticket_id: UUID) -> str:
        """What the customer wrote first in the ticket ('' when nothing, or erased)."""
        text = await self.conn.fetchval(
            "SELECT body FROM ticket_messages WHERE workspace_id = $1 AND ticket_id = $2"
            " AND direction = 'inbound' ORDER BY occurred_at, seq LIMIT 1", workspace_id, ticket_id)
        return str(text or "")

    async def erase_contact(self, workspace_id: str, contact_id: UUID) -> builtins.list[UUID]:
        """Anonymise the contact's tickets (their merged contacts' tickets are theirs already):
        no subject, no requester identity, no message text or attachment names, no thread
        keys. Returns them."""
        rows = await self.conn.fetch(
            "UPDATE tickets SET subject = '', requester_kind = '', requester = '', updated_at = now()"
            " WHERE workspace_id = $1 AND contact_id = $2 RETURNING id",
            workspace_id, contact_id,
        )
        tickets = [r["id"] for r in rows]
        await self.conn.execute(
            "UPDATE ticket_messages SET body = '', attachments = '[]' WHERE workspace_id = $1"
            " AND ticket_id = ANY($2::uuid[]) AND (body <> '' OR attachments <> '[]')", workspace_id, tickets)
        await self.conn.execute(
            "DELETE FROM thread_keys WHERE workspace_id = $1 AND ticket_id = ANY($2::uuid[])",
            workspace_id, tickets)
        return tickets

    # -- a person's data export: every stored column, oldest first -------------------------------

    async def tickets_of(self, workspace_id: str, contact_ids: Sequence[UUID], limit: int) -> Rows:
        rows = await self.conn.fetch(
            "SELECT * FROM tickets WHERE workspace_id = $1 AND contact_id = ANY($2::uuid[])"
            " ORDER BY created_at, id LIMIT $3",
            workspace_id, list(contact_ids), limit,
        )
        return [dict(r) for r in rows]

    async def messages_of(self, workspace_id: str, contact_ids: Sequence[UUID], limit: int) -> Rows:
        """The messages threaded into the contacts' tickets."""
        rows = await self.conn.fetch(
            "SELECT m.* FROM ticket_messages m JOIN tickets t ON t.id = m.ticket_id"
            " WHERE t.workspace_id = $1 AND m.workspace_id = $1 AND t.contact_id = ANY($2::uuid[])"
            " ORDER BY t.created_at, t.id, m.occurred_at, m.interaction_id LIMIT $3",
            workspace_id, list(contact_ids), limit,
        )
        return [dict(r) for r in rows]

    async def thread_keys_of(self, workspace_id: str, contact_ids: Sequence[UUID], limit: int) -> Rows:
        """The keys (Message-IDs, conversation ids) by which replies find the contacts' tickets."""
        rows = await self.conn.fetch(
            "SELECT k.* FROM thread_keys k JOIN tickets t ON t.id = k.ticket_id"
            " WHERE t.workspace_id = $1 AND k.workspace_id = $1 AND t.contact_id = ANY($2::uuid[])"
            " ORDER BY t.created_at, t.id, k.key LIMIT $3",
            workspace_id, list(contact_ids), limit,
        )
        return [dict(r) for r in rows]
