"""Lead scoring's SQL: models, the attribute snapshots and behaviour events rules read, and the
scores. Every query is scoped by workspace."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from crm_pipeline.domain.scoring import (
    Behaviour,
    BehaviourEvent,
    ContactAttributes,
    Contribution,
    EventPoints,
    Score,
    ScoringModel,
    model_to_dict,
    parse_model,
)

# Transaction-scoped advisory locks on (space, hashtext('<workspace>:<contact>')): one contact
# is re-scored by one transaction at a time, so the score last published is never raced.
_LOCK_SPACE = 0x4C534352  # "LSCR"


@dataclass(frozen=True)
class StoredScore:
    contact_id: UUID
    score: Decimal
    contributions: tuple[Contribution, ...]
    model_version: int
    computed_at: datetime
    published_score: Decimal


@dataclass(frozen=True)
class NewEvent:
    workspace_id: str
    event_id: str
    contact_id: UUID
    kind: Behaviour
    occurred_at: datetime


class ScoringStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # The model ---------------------------------------------------------------------------

    async def model(self, workspace_id: str) -> ScoringModel:
        """The workspace's model; an empty one at version 0 when none was saved."""
        row = await self.conn.fetchrow(
            "SELECT version, model FROM lead_scoring_models WHERE workspace_id = $1", workspace_id)
        if row is None:
            return ScoringModel()
        return parse_model(json.loads(row["model"]), row["version"])

    async def models(self, workspace_ids: Sequence[str]) -> dict[str, ScoringModel]:
        rows = await self.conn.fetch(
            "SELECT workspace_id, version, model FROM lead_scoring_models"
            " WHERE workspace_id = ANY($1::text[])",
            list(set(workspace_ids)))
        found = {r["workspace_id"]: parse_model(json.loads(r["model"]), r["version"]) for r in rows}
        return {ws: found.get(ws, ScoringModel()) for ws in workspace_ids}

    async def save_model(self, workspace_id: str, model: ScoringModel, expected_version: int,
                         actor: str) -> int | None:
        """Store ``model`` as the version after ``expected_version``; None when that is not the
        current version (version 0: no model yet)."""
        body = json.dumps(model_to_dict(model))
        if expected_version == 0:
            return await self.conn.fetchval(  # type: ignore[no-any-return]
                "INSERT INTO lead_scoring_models (workspace_id, version, model, updated_by)"
                " VALUES ($1, 1, $2::jsonb, $3) ON CONFLICT (workspace_id) DO NOTHING RETURNING version",
                workspace_id, body, actor)
        return await self.conn.fetchval(  # type: ignore[no-any-return]
            "UPDATE lead_scoring_models SET version = version + 1, model = $3::jsonb, updated_by = $4,"
            " updated_at = now() WHERE workspace_id = $1 AND version = $2 RETURNING version",
            workspace_id, expected_version, body, actor)

    async def model_version(self, workspace_id: str) -> int:
        version = await self.conn.fetchval(
            "SELECT version FROM lead_scoring_models WHERE workspace_id = $1", workspace_id)
        return int(version or 0)

    # What rules read ---------------------------------------------------------------------

    async def put_attributes(self, workspace_id: str, contact_id: UUID, attributes: ContactAttributes,
                             contact_version: int) -> bool:
        """Keep the contact's attributes unless a newer version of the contact is stored;
        False when it was."""
        return bool(await self.conn.fetchval(
            "INSERT INTO lead_contact_attributes (workspace_id, contact_id, lifecycle_stage, owner_id, tags,"
            " companies, custom_fields, contact_version) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)"
            " ON CONFLICT (workspace_id, contact_id) DO UPDATE SET"
            " lifecycle_stage = EXCLUDED.lifecycle_stage, owner_id = EXCLUDED.owner_id,"
            " tags = EXCLUDED.tags, companies = EXCLUDED.companies,"
            " custom_fields = EXCLUDED.custom_fields, contact_version = EXCLUDED.contact_version,"
            " updated_at = now()"
            " WHERE lead_contact_attributes.contact_version <= EXCLUDED.contact_version RETURNING 1",
            workspace_id, contact_id, attributes.lifecycle_stage, attributes.owner_id, list(attributes.tags),
            list(attributes.companies), json.dumps(dict(attributes.custom_fields)), contact_version))

    async def attributes(self, workspace_id: str, contact_id: UUID) -> ContactAttributes | None:
        row = await self.conn.fetchrow(
            "SELECT lifecycle_stage, owner_id, tags, companies, custom_fields FROM lead_contact_attributes"
            " WHERE workspace_id = $1 AND contact_id = $2", workspace_id, contact_id)
        if row is None:
            return None
        return ContactAttributes(row["lifecycle_stage"], row["owner_id"], tuple(row["tags"]),
                                 tuple(row["companies"]), json.loads(row["custom_fields"]))

    async def add_events(self, events: Sequence[NewEvent]) -> None:
        await self.conn.executemany(
            "INSERT INTO lead_behaviour_events (workspace_id, event_id, contact_id, kind, occurred_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [(e.workspace_id, e.event_id, e.contact_id, e.kind.value, e.occurred_at) for e in events])

    async def events(self, workspace_id: str, contact_id: UUID) -> list[BehaviourEvent]:
        rows = await self.conn.fetch(
            "SELECT event_id, kind, occurred_at FROM lead_behaviour_events"
            " WHERE workspace_id = $1 AND contact_id = $2 ORDER BY occurred_at, event_id",
            workspace_id, contact_id)
        return [BehaviourEvent(r["event_id"], Behaviour(r["kind"]), r["occurred_at"]) for r in rows]

    async def forget_events_before(self, cutoff: datetime) -> int:
        """Delete behaviour events older than ``cutoff`` (past any sensible half-life)."""
        done = await self.conn.execute("DELETE FROM lead_behaviour_events WHERE occurred_at < $1", cutoff)
        return int(done.split()[-1])

    # Scores ------------------------------------------------------------------------------

    async def lock(self, workspace_id: str, contact_ids: Sequence[UUID]) -> None:
        """Lock the contacts' scores until the transaction ends (in one order: no deadlock)."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(k))"
            " FROM (SELECT unnest($2::text[]) AS k ORDER BY 1) keys",
            _LOCK_SPACE, sorted({f"{workspace_id}:{c}" for c in contact_ids}))

    async def score(self, workspace_id: str, contact_id: UUID) -> StoredScore | None:
        row = await self.conn.fetchrow(
            "SELECT contact_id, score, contributions, model_version, computed_at, published_score"
            " FROM lead_scores WHERE workspace_id = $1 AND contact_id = $2", workspace_id, contact_id)
        return _stored(row) if row else None

    async def save_score(self, workspace_id: str, contact_id: UUID, score: Score, model_version: int,
                         computed_at: datetime, published_score: Decimal) -> None:
        await self.conn.execute(
            "INSERT INTO lead_scores (workspace_id, contact_id, score, contributions, model_version,"
            " computed_at, published_score) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)"
            " ON CONFLICT (workspace_id, contact_id) DO UPDATE SET score = EXCLUDED.score,"
            " contributions = EXCLUDED.contributions, model_version = EXCLUDED.model_version,"
            " computed_at = EXCLUDED.computed_at, published_score = EXCLUDED.published_score",
            workspace_id, contact_id, score.value,
            json.dumps([_contribution_dict(c) for c in score.contributions]), model_version, computed_at,
            published_score)

    async def top(self, workspace_id: str, minimum: Decimal | None, after: tuple[Decimal, UUID] | None,
                  limit: int) -> list[StoredScore]:
        """Scores from the highest (ties by contact id), from after the ``after`` one."""
        rows = await self.conn.fetch(
            "SELECT contact_id, score, contributions, model_version, computed_at, published_score"
            " FROM lead_scores WHERE workspace_id = $1 AND ($2::numeric IS NULL OR score >= $2)"
            " AND ($3::numeric IS NULL OR (score, contact_id) < ($3, $4::uuid))"
            " ORDER BY score DESC, contact_id DESC LIMIT $5",
            workspace_id, minimum, after[0] if after else None, after[1] if after else None, limit)
        return [_stored(r) for r in rows]

    async def due(self, computed_before: datetime, limit: int) -> list[tuple[str, UUID]]:
        """Contacts to score again: scored under an older model, or before ``computed_before``
        (their events have faded since). Only workspaces with a model."""
        rows = await self.conn.fetch(
            "SELECT s.workspace_id, s.contact_id FROM lead_scores s"
            " JOIN lead_scoring_models m USING (workspace_id)"
            " WHERE s.model_version <> m.version OR s.computed_at < $1 ORDER BY s.computed_at LIMIT $2",
            computed_before, limit)
        return [(r["workspace_id"], r["contact_id"]) for r in rows]

    # Merges and erasure ------------------------------------------------------------------

    async def fold(self, workspace_id: str, loser_id: UUID, survivor_id: UUID) -> bool:
        """Give the loser's behaviour events to the survivor and drop the loser's attributes
        and score (the survivor keeps its own attributes); False when the loser had nothing."""
        moved = await self.conn.execute(
            "UPDATE lead_behaviour_events SET contact_id = $3 WHERE workspace_id = $1 AND contact_id = $2",
            workspace_id, loser_id, survivor_id)
        dropped = await self.conn.fetchval(
            "WITH a AS (DELETE FROM lead_contact_attributes WHERE workspace_id = $1 AND contact_id = $2"
            " RETURNING 1),"
            " s AS (DELETE FROM lead_scores WHERE workspace_id = $1 AND contact_id = $2 RETURNING 1)"
            " SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM s)", workspace_id, loser_id)
        return int(moved.split()[-1]) > 0 or bool(dropped)

    async def erase(self, workspace_id: str, contact_ids: Sequence[UUID]) -> int:
        """Delete everything scoring holds of these contacts; returns the rows deleted."""
        deleted = 0
        for table in ("lead_behaviour_events", "lead_contact_attributes", "lead_scores"):
            done = await self.conn.execute(
                f"DELETE FROM {table} WHERE workspace_id = $1 AND contact_id = ANY($2::uuid[])",  # noqa: S608
                workspace_id, list(contact_ids))
            deleted += int(done.split()[-1])
        return deleted

    async def of_contacts(self, workspace_id: str, contact_ids: Sequence[UUID], limit: int
                          ) -> dict[str, list[dict[str, Any]]]:
        """What scoring holds of these contacts, for their data export."""
        found: dict[str, list[dict[str, Any]]] = {}
        for section, table in (("lead_scores", "lead_scores"), ("lead_attributes", "lead_contact_attributes"),
                               ("lead_events", "lead_behaviour_events")):
            rows = await self.conn.fetch(
                f"SELECT * FROM {table} WHERE workspace_id = $1 AND contact_id = ANY($2::uuid[])"  # noqa: S608
                " ORDER BY contact_id LIMIT $3", workspace_id, list(contact_ids), limit)
            found[section] = [dict(r) for r in rows]
        return found


def _contribution_dict(c: Contribution) -> dict[str, Any]:
    return {"rule_id": c.rule_id, "kind": c.kind, "points": str(c.points), "event_count": c.event_count,
            "capped": c.capped,
            "events": [{"event_id": e.event_id, "occurred_at": e.occurred_at.isoformat(),
                        "points": str(e.points)} for e in c.events]}


def _contribution(raw: dict[str, Any]) -> Contribution:
    return Contribution(raw["rule_id"], raw["kind"], Decimal(raw["points"]), raw["event_count"],
                        tuple(EventPoints(e["event_id"], datetime.fromisoformat(e["occurred_at"]),
                                          Decimal(e["points"])) for e in raw["events"]),
                        raw["capped"])


def _stored(row: Any) -> StoredScore:
    contributions = tuple(_contribution(c) for c in json.loads(row["contributions"]))
    return StoredScore(row["contact_id"], row["score"], contributions, row["model_version"],
                       row["computed_at"], row["published_score"])
