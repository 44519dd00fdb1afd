"""SQL of a ticket's messages as agents see them: replies, notes, their delivery, and the
thread keys a reply is threaded with. Every query is scoped by workspace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.replies import QUEUED, MessageSummary


@dataclass(frozen=True)
class TicketMessage:
    id: str  # the interaction id; a reply's or note's own id (a reply's outbound id)
    seq: int
    direction: str  # inbound, reply, note
    author: str
    body: str
    occurred_at: datetime
    attachments: list[dict[str, Any]]
    delivery_status: str | None = None
    delivery_error: str | None = None
    delivery_at: datetime | None = None
    macro_id: UUID | None = None


_COLUMNS = ("interaction_id, seq, direction, author, body, occurred_at, attachments::text AS attachments,"
            " delivery_status, delivery_error, delivery_at, macro_id")


def _message(row: Any) -> TicketMessage:
    fields = dict(row)
    fields["id"] = fields.pop("interaction_id")
    fields["attachments"] = json.loads(fields["attachments"])
    return TicketMessage(**fields)


class MessagesStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, workspace_id: str, ticket_id: UUID, message_id: str, direction: str, author: str,
                  body: str, occurred_at: datetime, attachments: list[dict[str, Any]],
                  macro_id: UUID | None) -> TicketMessage:
        """An agent's reply (queued for delivery) or note."""
        row = await self.conn.fetchrow(
            "INSERT INTO ticket_messages (workspace_id, interaction_id, ticket_id, occurred_at,"  # noqa: S608
            " direction, author, body, attachments, delivery_status, macro_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)"
            f" RETURNING {_COLUMNS}",
            workspace_id, message_id, ticket_id, occurred_at, direction, author, body,
            json.dumps(attachments), QUEUED if direction == "reply" else None, macro_id,
        )
        await self.conn.execute("UPDATE tickets SET updated_at = now() WHERE workspace_id = $1 AND id = $2",
                                workspace_id, ticket_id)
        return _message(row)

    async def seq_of(self, workspace_id: str, ticket_id: UUID, message_id: str) -> int | None:
        seq: int | None = await self.conn.fetchval(
            "SELECT seq FROM ticket_messages WHERE workspace_id = $1 AND ticket_id = $2"
            " AND interaction_id = $3",
            workspace_id, ticket_id, message_id)
        return seq

    async def added_after(self, workspace_id: str, ticket_id: UUID, seq: int) -> list[MessageSummary]:
        rows = await self.conn.fetch(
            "SELECT interaction_id, direction, author, occurred_at FROM ticket_messages"
            " WHERE workspace_id = $1 AND ticket_id = $2 AND seq > $3 ORDER BY seq LIMIT 50",
            workspace_id, ticket_id, seq)
        return [MessageSummary(r["interaction_id"], r["direction"], r["author"], r["occurred_at"])
                for r in rows]

    async def page(self, workspace_id: str, ticket_id: UUID, after_seq: int, limit: int
                   ) -> list[TicketMessage]:
        """Oldest first (in the order ticketing learnt them), after ``after_seq``."""
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM ticket_messages"  # noqa: S608
            " WHERE workspace_id = $1 AND ticket_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            workspace_id, ticket_id, after_seq, limit)
        return [_message(r) for r in rows]

    # -- threading a reply ----------------------------------------------------------------------

    async def email_chain(self, workspace_id: str, ticket_id: UUID) -> tuple[list[str], set[str]]:
        """The ticket's Message-IDs in the order they were learnt, and those of our replies."""
        chain = await self.conn.fetch(
            "SELECT substr(key, 7) AS id FROM thread_keys WHERE workspace_id = $1 AND ticket_id = $2"
            " AND key LIKE 'msgid:%' ORDER BY seq", workspace_id, ticket_id)
        ours = await self.conn.fetch(
            "SELECT message_id FROM ticket_messages WHERE workspace_id = $1 AND ticket_id = $2"
            " AND direction = 'reply' AND message_id IS NOT NULL", workspace_id, ticket_id)
        return [r["id"] for r in chain], {r["message_id"] for r in ours}

    async def conversation_id(self, workspace_id: str, ticket_id: UUID, channel: str) -> str:
        """The ticket's latest conversation on its channel (chat, social), or ""."""
        prefix = f"conv:{channel}:"
        key: str | None = await self.conn.fetchval(
            "SELECT key FROM thread_keys WHERE workspace_id = $1 AND ticket_id = $2 AND starts_with(key, $3)"
            " ORDER BY seq DESC LIMIT 1", workspace_id, ticket_id, prefix)
        return key[len(prefix):] if key else ""

    # -- delivery feedback from ingest ------------------------------------------------------------

    async def reply(self, workspace_id: str, outbound_id: str) -> tuple[UUID, str | None] | None:
        """The ticket and delivery status of our reply sent as ``outbound_id``, locked."""
        row = await self.conn.fetchrow(
            "SELECT ticket_id, delivery_status FROM ticket_messages WHERE workspace_id = $1"
            " AND interaction_id = $2 AND direction = 'reply' FOR UPDATE", workspace_id, outbound_id)
        return (row["ticket_id"], row["delivery_status"]) if row else None

    async def set_sent_message_id(self, workspace_id: str, outbound_id: str, message_id: str) -> None:
        await self.conn.execute(
            "UPDATE ticket_messages SET message_id = $3 WHERE workspace_id = $1 AND interaction_id = $2",
            workspace_id, outbound_id, message_id)

    async def set_delivery(self, workspace_id: str, outbound_id: str, status: str, error: str,
                           at: datetime | None) -> None:
        await self.conn.execute(
            "UPDATE ticket_messages SET delivery_status = $3, delivery_error = NULLIF($4, ''),"
            " delivery_at = $5 WHERE workspace_id = $1 AND interaction_id = $2",
            workspace_id, outbound_id, status, error, at)
