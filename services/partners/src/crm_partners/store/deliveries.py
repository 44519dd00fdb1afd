"""SQL for webhook deliveries: fan-out, claiming due deliveries across replicas, recording
attempts, the delivery log, the DLQ, retries, replays and secret rotation. Every query a caller
can reach is scoped by workspace.

Per-key order is kept in ``next_attempt_at``: only the head of a subscription's key (its
oldest pending delivery) has a real time; the ones behind it wait at ``infinity`` and the
head's end (delivered or dead) moves the next one up. So the due deliveries are an index
range (``deliveries_due``), however long the queues behind failing heads grow. A delivery
queued in the instant its key's head ended, and the heads of a subscription enabled again,
are moved up by ``release_heads``, which the dispatcher also runs now and then."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg

from crm_partners.domain.model import PublicEvent

DeliveryStatus = Literal["pending", "delivered", "dead", "cancelled"]

# Rows read at a time when a replay walks the replay store.
REPLAY_CHUNK = 5000


@dataclass(frozen=True)
class WebhookSubscription:
    """What fan-out needs of an enabled webhook subscription."""

    id: UUID
    workspace_id: str
    event_types: frozenset[str]
    filters: dict[str, Any]


@dataclass(frozen=True)
class NewDelivery:
    workspace_id: str
    subscription_id: UUID
    event_seq: int
    event_id: str
    key: str


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt, with what the attempt sends."""

    id: int
    subscription_id: UUID
    url: str
    event: PublicEvent
    replay_id: UUID | None
    attempts: int
    retry_from: datetime


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, and what it makes of the delivery."""

    delivery_id: int
    subscription_id: UUID
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    key: str
    # 'delivered', 'pending' (tried again at next_attempt_at) or 'dead'.
    status: str
    next_attempt_at: datetime
    # Set when the endpoint answered 410: the subscription is disabled with this reason.
    disable_reason: str | None = None


@dataclass(frozen=True)
class Attempt:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery as the delivery log shows it."""

    id: int
    workspace_id: str
    subscription_id: UUID
    partner_id: UUID
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    replay_id: UUID | None
    log: tuple[Attempt, ...] = ()


def _event(row: Any) -> PublicEvent:
    return PublicEvent(id=row["event_id"], workspace_id=row["workspace_id"], topic=row["topic"],
                       type=row["type"], source=row["source"], subject=row["subject"], key=row["key"],
                       time=row["time"], data=json.loads(row["data"]), seq=row["event_seq"])


def _record(row: Any) -> DeliveryRecord:
    return DeliveryRecord(id=row["id"], workspace_id=row["workspace_id"],
                          subscription_id=row["subscription_id"], partner_id=row["partner_id"],
                          event_id=row["event_id"], event_type=row["type"], status=row["status"],
                          attempts=row["attempts"], next_attempt_at=row["next_attempt_at"],
                          last_status_code=row["last_status_code"], last_error=row["last_error"],
                          created_at=row["created_at"], delivered_at=row["delivered_at"],
                          replay_id=row["replay_id"])


_RECORD = ("SELECT d.id, d.workspace_id, d.subscription_id, s.partner_id, d.event_id, e.type, d.status,"
           " d.attempts, d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at,"
           " d.replay_id"
           " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
           " JOIN public_events e ON e.seq = d.event_seq")


class DeliveriesStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- fan-out ---

    async def webhook_subscriptions(self, workspace_ids: Sequence[str]) -> list[WebhookSubscription]:
        """The enabled webhook subscriptions of active partners in these workspaces."""
        rows = await self.conn.fetch(
            "SELECT s.id, s.workspace_id, s.event_types, s.filters FROM subscriptions s"
            " JOIN partners p ON p.id = s.partner_id AND p.workspace_id = s.workspace_id"
            " WHERE s.workspace_id = ANY($1::text[]) AND s.delivery = 'webhook' AND s.status = 'enabled'"
            " AND p.status = 'active'", list(workspace_ids))
        return [WebhookSubscription(r["id"], r["workspace_id"], frozenset(r["event_types"]),
                                    json.loads(r["filters"])) for r in rows]

    async def insert(self, deliveries: Sequence[NewDelivery], replay_id: UUID | None = None) -> None:
        if not deliveries:
            return
        # The first of a key is due now unless one of its key is pending already; the rest wait.
        await self.conn.execute(
            "INSERT INTO deliveries (workspace_id, subscription_id, event_seq, event_id, key, replay_id,"
            " next_attempt_at)"
            " SELECT w, s, q, e, k, $6, CASE WHEN row_number() OVER (PARTITION BY s, k ORDER BY n) = 1"
            "  AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.subscription_id = s AND x.key = k"
            "   AND x.status = 'pending') THEN now() ELSE 'infinity' END"
            " FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::text[]) WITH ORDINALITY"
            "  AS t(w, s, q, e, k, n) ORDER BY n",
            [d.workspace_id for d in deliveries], [d.subscription_id for d in deliveries],
            [d.event_seq for d in deliveries], [d.event_id for d in deliveries], [d.key for d in deliveries],
            replay_id)

    # --- the dispatcher ---

    async def paused(self) -> list[UUID]:
        """The webhook subscriptions that get nothing now: disabled, or of a suspended partner."""
        rows = await self.conn.fetch(
            "SELECT s.id FROM subscriptions s JOIN partners p ON p.id = s.partner_id"
            " WHERE s.delivery = 'webhook' AND (s.status <> 'enabled' OR p.status <> 'active')")
        return [r["id"] for r in rows]

    async def due(self, excluded: Sequence[UUID], limit: int) -> list[tuple[int, UUID]]:
        """Locks up to ``limit`` due deliveries (id, subscription) for this transaction, oldest
        due first, skipping those another replica holds: heads of their key whose time has
        come, of subscriptions not ``excluded`` (paused, or at their limit here). One table
        and its due index, so the scan stops at ``limit``."""
        rows = await self.conn.fetch(
            "SELECT id, subscription_id FROM deliveries"
            " WHERE status = 'pending' AND next_attempt_at <= now()"
            " AND NOT (subscription_id = ANY($1::uuid[]))"
            " ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            list(excluded), limit)
        return [(r["id"], r["subscription_id"]) for r in rows]

    async def lease(self, ids: Sequence[int], seconds: float) -> list[Claimed]:
        """Takes these (locked) deliveries for one attempt: nobody else claims them until the
        lease ends, by when the attempt has been recorded (or its process has died, and it is
        tried again)."""
        rows = await self.conn.fetch(
            "UPDATE deliveries d SET next_attempt_at = now() + make_interval(secs => $2)"
            " FROM subscriptions s, public_events e"
            " WHERE d.id = ANY($1::bigint[]) AND s.id = d.subscription_id AND e.seq = d.event_seq"
            " RETURNING d.id, d.subscription_id, d.event_seq, d.event_id, d.replay_id, d.attempts,"
            " d.retry_from, s.url, e.workspace_id, e.topic, e.type, e.source, e.subject, e.key, e.time,"
            " e.data::text AS data",
            list(ids), seconds)
        return [Claimed(id=r["id"], subscription_id=r["subscription_id"], url=r["url"], event=_event(r),
                        replay_id=r["replay_id"], attempts=r["attempts"], retry_from=r["retry_from"])
                for r in sorted(rows, key=lambda r: r["id"])]

    async def valid_secrets(self, subscription_ids: Sequence[UUID]) -> dict[UUID, list[str]]:
        """Each subscription's secrets that sign now, newest first."""
        rows = await self.conn.fetch(
            "SELECT subscription_id, secret FROM webhook_secrets WHERE subscription_id = ANY($1::uuid[])"
            " AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC, id",
            list(subscription_ids))
        found: dict[UUID, list[str]] = {}
        for row in rows:
            found.setdefault(row["subscription_id"], []).append(row["secret"])
        return found

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Every attempt's log row and the delivery's new state; a 410 disables the subscription."""
        if not outcomes:
            return
        await self.conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, error)"
            " SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::int[], $5::text[])"
            " AS t(d, a, c, l, e) WHERE EXISTS (SELECT 1 FROM deliveries WHERE id = t.d)",
            [o.delivery_id for o in outcomes], [o.attempted_at for o in outcomes],
            [o.status_code for o in outcomes], [o.latency_ms for o in outcomes], [o.error for o in outcomes])
        await self.conn.execute(
            "UPDATE deliveries d SET status = t.status, attempts = d.attempts + 1,"
            " next_attempt_at = t.next_at, last_status_code = t.code, last_error = t.error,"
            " delivered_at = CASE WHEN t.status = 'delivered' THEN t.at ELSE d.delivered_at END"
            " FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::text[],"
            " $6::timestamptz[]) AS t(id, status, next_at, code, error, at) WHERE d.id = t.id",
            [o.delivery_id for o in outcomes], [o.status for o in outcomes],
            [o.next_attempt_at for o in outcomes], [o.status_code for o in outcomes],
            [o.error for o in outcomes], [o.attempted_at for o in outcomes])
        ended = [o for o in outcomes if o.status != "pending"]
        if ended:  # the next of each key moves up
            await self.conn.execute(
                "UPDATE deliveries d SET next_attempt_at = now()"
                " FROM (SELECT (SELECT min(x.id) FROM deliveries x"
                "  WHERE x.subscription_id = t.s AND x.key = t.k AND x.status = 'pending') AS id"
                "  FROM unnest($1::uuid[], $2::text[]) AS t(s, k)) AS h"
                " WHERE d.id = h.id AND d.next_attempt_at = 'infinity'",
                [o.subscription_id for o in ended], [o.key for o in ended])
        gone = {o.subscription_id: o.disable_reason for o in outcomes if o.disable_reason}
        if gone:  # disabled, its deliveries parked until it is enabled again
            await self.conn.execute(
                "UPDATE subscriptions s SET status = 'disabled', disabled_reason = t.reason,"
                " version = version + 1, updated_at = now()"
                " FROM unnest($1::uuid[], $2::text[]) AS t(id, reason)"
                " WHERE s.id = t.id AND s.status = 'enabled'",
                list(gone), list(gone.values()))
            await self.conn.execute(
                "UPDATE deliveries SET next_attempt_at = 'infinity'"
                " WHERE subscription_id = ANY($1::uuid[]) AND status = 'pending'", list(gone))

    async def analyze_if_stale(self) -> bool:
        """ANALYZE the deliveries once a tenth of them changed since the last time, as
        autovacuum does where it runs: the claim query needs the statistics to scan the due
        range in order rather than sort every due delivery (a server without autovacuum, like
        the CI one, would plan it blind)."""
        stale = await self.conn.fetchval(
            "SELECT n_mod_since_analyze > greatest(1000, n_live_tup / 10) FROM pg_stat_user_tables"
            " WHERE relid = 'deliveries'::regclass")
        if stale:
            await self.conn.execute("ANALYZE deliveries")
        return bool(stale)

    async def release_heads(self, subscription_id: UUID | None = None) -> int:
        """Moves up every waiting delivery that no pending one of its key is ahead of, in
        enabled subscriptions (one, or all): how many."""
        result: str = await self.conn.execute(
            "UPDATE deliveries d SET next_attempt_at = now()"
            " WHERE d.status = 'pending' AND d.next_attempt_at = 'infinity'"
            " AND ($1::uuid IS NULL OR d.subscription_id = $1)"
            " AND d.subscription_id IN (SELECT id FROM subscriptions WHERE status = 'enabled')"
            " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.subscription_id = d.subscription_id"
            "  AND e.key = d.key AND e.status = 'pending' AND e.id < d.id)", subscription_id)
        return int(result.split()[-1])

    # --- the delivery log ---

    async def delivery(self, workspace_id: str, delivery_id: int, *,
                       lock: bool = False) -> DeliveryRecord | None:
        row = await self.conn.fetchrow(
            _RECORD + " WHERE d.workspace_id = $1 AND d.id = $2" + (" FOR UPDATE OF d" if lock else ""),
            workspace_id, delivery_id)
        return None if row is None else _record(row)

    async def deliveries(self, workspace_id: str, subscription_id: UUID, status: str | None,
                         before: int | None, limit: int) -> list[DeliveryRecord]:
        """Newest first."""
        rows = await self.conn.fetch(
            _RECORD + " WHERE d.workspace_id = $1 AND d.subscription_id = $2"
            " AND ($3::text IS NULL OR d.status = $3) AND ($4::bigint IS NULL OR d.id < $4)"
            " ORDER BY d.id DESC LIMIT $5", workspace_id, subscription_id, status, before, limit)
        return [_record(r) for r in rows]

    async def attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        rows = await self.conn.fetch(
            "SELECT delivery_id, attempted_at, status_code, latency_ms, error FROM delivery_attempts"
            " WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, id", list(delivery_ids))
        found: dict[int, list[Attempt]] = {}
        for r in rows:
            found.setdefault(r["delivery_id"], []).append(
                Attempt(r["attempted_at"], r["status_code"], r["latency_ms"], r["error"]))
        return found

    # --- retries, replays, rotation, enabling ---

    async def requeue(self, workspace_id: str, delivery_id: int) -> None:
        await self.conn.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), retry_from = now()"
            " WHERE workspace_id = $1 AND id = $2", workspace_id, delivery_id)

    async def requeue_dead(self, workspace_id: str, subscription_id: UUID) -> int:
        count: int = await self.conn.fetchval(
            "WITH requeued AS (UPDATE deliveries"
            " SET status = 'pending', next_attempt_at = now(), retry_from = now()"
            " WHERE workspace_id = $1 AND subscription_id = $2 AND status = 'dead' RETURNING 1)"
            " SELECT count(*) FROM requeued", workspace_id, subscription_id)
        return count

    async def event_seq(self, workspace_id: str, event_id: str) -> int | None:
        seq: int | None = await self.conn.fetchval(
            "SELECT seq FROM public_events WHERE workspace_id = $1 AND id = $2", workspace_id, event_id)
        return seq

    async def stored_events(self, workspace_id: str, event_types: Sequence[str], *,
                            after_seq: int | None = None, from_time: datetime | None = None,
                            to_time: datetime | None = None,
                            with_data: bool = True) -> AsyncIterator[list[PublicEvent]]:
        """The workspace's stored events of these types after a seq or in [from_time, to_time),
        in seq order, a chunk at a time (inside a transaction). Without ``with_data`` the
        events carry an empty payload (enough for a replay without filters)."""
        data = "data::text" if with_data else "'{}'"
        query = (
            f"SELECT seq AS event_seq, id AS event_id, workspace_id, topic, type, source, subject, key, time,"  # noqa: S608 (a constant choice)
            f" {data} AS data FROM public_events WHERE workspace_id = $1 AND type = ANY($2::text[])"
            " AND ($3::bigint IS NULL OR seq > $3) AND ($4::timestamptz IS NULL OR time >= $4)"
            " AND ($5::timestamptz IS NULL OR time < $5) ORDER BY seq")
        chunk: list[PublicEvent] = []
        rows = self.conn.cursor(query, workspace_id, list(event_types), after_seq, from_time, to_time,
                                prefetch=REPLAY_CHUNK)
        async for row in rows:
            chunk.append(_event(row))
            if len(chunk) >= REPLAY_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def insert_replay(self, replay_id: UUID, workspace_id: str, subscription_id: UUID,
                            from_time: datetime | None, to_time: datetime | None, after_event_id: str | None,
                            requested_by: str, deliveries: int) -> datetime:
        created: datetime = await self.conn.fetchval(
            "INSERT INTO replays (id, workspace_id, subscription_id, from_time, to_time, after_event_id,"
            " requested_by, deliveries) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at",
            replay_id, workspace_id, subscription_id, from_time, to_time, after_event_id, requested_by,
            deliveries)
        return created

    async def rotate_secret(self, subscription_id: UUID, secret_id: UUID, secret: str,
                            old_until: datetime) -> None:
        """The new secret signs from now on; the ones valid now keep signing until ``old_until``
        (or their own earlier end)."""
        await self.conn.execute(
            "UPDATE webhook_secrets SET expires_at = LEAST(coalesce(expires_at, $2), $2)"
            " WHERE subscription_id = $1 AND (expires_at IS NULL OR expires_at > now())",
            subscription_id, old_until)
        await self.conn.execute(
            "INSERT INTO webhook_secrets (id, subscription_id, secret) VALUES ($1, $2, $3)",
            secret_id, subscription_id, secret)

    async def enable(self, workspace_id: str, subscription_id: UUID) -> None:
        await self.conn.execute(
            "UPDATE subscriptions SET status = 'enabled', disabled_reason = NULL, version = version + 1,"
            " updated_at = now() WHERE workspace_id = $1 AND id = $2 AND status = 'disabled'",
            workspace_id, subscription_id)
