"""CSAT surveys' rows. Every query is scoped by workspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class Survey:
    id: UUID
    workspace_id: str
    ticket_id: UUID
    contact_id: UUID
    channel: str
    agent: str | None
    team_id: UUID | None
    created_at: datetime
    expires_at: datetime
    superseded_at: datetime | None = None
    rating: int | None = None
    comment: str | None = None
    rated_at: datetime | None = None


_SURVEY = ("id, workspace_id, ticket_id, contact_id, channel, agent, team_id, created_at, expires_at,"
           " superseded_at, rating, comment, rated_at")


def _survey(row: Any) -> Survey:
    return Survey(**dict(row))


class CsatStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def last_replier(self, workspace_id: str, ticket_id: UUID) -> str | None:
        """Who wrote the ticket's last public reply."""
        author: str | None = await self.conn.fetchval(
            "SELECT author FROM ticket_messages WHERE workspace_id = $1 AND ticket_id = $2"
            " AND direction = 'reply' AND author <> '' ORDER BY occurred_at DESC LIMIT 1",
            workspace_id, ticket_id)
        return author

    async def supersede_open(self, workspace_id: str, ticket_id: UUID, now: datetime) -> int:
        """Unanswered surveys of the ticket can no longer be answered: a new solve asks again."""
        status: str = await self.conn.execute(
            "UPDATE csat_surveys SET superseded_at = $3 WHERE workspace_id = $1 AND ticket_id = $2"
            " AND rated_at IS NULL AND superseded_at IS NULL", workspace_id, ticket_id, now)
        return int(status.split()[-1])

    async def insert(self, survey: Survey) -> None:
        await self.conn.execute(
            "INSERT INTO csat_surveys (id, workspace_id, ticket_id, contact_id, channel, agent, team_id,"
            " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            survey.id, survey.workspace_id, survey.ticket_id, survey.contact_id, survey.channel,
            survey.agent, survey.team_id, survey.created_at, survey.expires_at)

    async def get(self, workspace_id: str, survey_id: UUID) -> tuple[Survey, str] | None:
        """The survey and its ticket's subject."""
        row = await self.conn.fetchrow(
            f"SELECT {', '.join('s.' + c.strip() for c in _SURVEY.split(','))}, t.subject"  # noqa: S608
            " FROM csat_surveys s JOIN tickets t ON t.id = s.ticket_id AND t.workspace_id = s.workspace_id"
            " WHERE s.workspace_id = $1 AND s.id = $2", workspace_id, survey_id)
        if row is None:
            return None
        fields = dict(row)
        subject: str = fields.pop("subject")
        return Survey(**fields), subject

    async def rate(self, workspace_id: str, survey_id: UUID, rating: int, comment: str | None,
                   now: datetime) -> Survey | None:
        """Record the answer if the survey is still open; None when it is not (answered,
        superseded, expired or unknown). One statement, so two answers at once record one."""
        row = await self.conn.fetchrow(
            f"UPDATE csat_surveys SET rating = $3, comment = $4, rated_at = $5"  # noqa: S608
            " WHERE workspace_id = $1 AND id = $2 AND rated_at IS NULL AND superseded_at IS NULL"
            f" AND expires_at > $5 RETURNING {_SURVEY}", workspace_id, survey_id, rating, comment, now)
        return _survey(row) if row else None

    async def of_contacts(self, workspace_id: str, contact_ids: Sequence[UUID], limit: int
                          ) -> list[dict[str, Any]]:
        """The surveys of the contacts' tickets as stored, oldest first: their data export."""
        rows = await self.conn.fetch(
            "SELECT s.* FROM csat_surveys s JOIN tickets t ON t.id = s.ticket_id"
            " WHERE t.workspace_id = $1 AND s.workspace_id = $1 AND t.contact_id = ANY($2::uuid[])"
            " ORDER BY s.created_at, s.id LIMIT $3", workspace_id, list(contact_ids), limit)
        return [dict(r) for r in rows]

    async def erase_comments(self, workspace_id: str, ticket_ids: Sequence[UUID]) -> None:
        await self.conn.execute(
            "UPDATE csat_surveys SET comment = NULL WHERE workspace_id = $1 AND ticket_id = ANY($2::uuid[])"
            " AND comment IS NOT NULL", workspace_id, list(ticket_ids))

    async def of_ticket(self, workspace_id: str, ticket_id: UUID, limit: int) -> list[Survey]:
        rows = await self.conn.fetch(
            f"SELECT {_SURVEY} FROM csat_surveys WHERE workspace_id = $1 AND ticket_id = $2"  # noqa: S608
            " ORDER BY created_at DESC, id DESC LIMIT $3", workspace_id, ticket_id, limit)
        return [_survey(r) for r in rows]
