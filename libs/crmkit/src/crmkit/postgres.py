"""PostgreSQL: the pool, plain-SQL migrations, and the unit of work with its outbox.

The unit of work is the one place a service commits: the state change, the events it
produces (outbox rows) and the ids of the events it consumed go in one transaction.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg

from crmkit.kafka.envelope import Envelope, Event
from crmkit.kafka.producer import Producer
from crmkit.relay import OutboxRelay, send_all

log = logging.getLogger(__name__)

CRMKIT_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x43524D4D  # "CRMM"
_RELAY_LOCK = 0x43524D52  # "CRMR"
_COPY_FROM = 200  # events in one unit of work from which the outbox is written with COPY


async def ensure_database(admin_dsn: str, database: str) -> None:
    """Create the service's database when it does not exist (local and test runs)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with suppress(asyncpg.exceptions.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=30)
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, *folders: Path) -> list[str]:
    """Apply the numbered ``*.sql`` files of each folder in order, each once, under a lock."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for folder in (CRMKIT_MIGRATIONS, *folders):
                for path in sorted(folder.glob("*.sql")):
                    owner = "crmkit" if folder == CRMKIT_MIGRATIONS else folder.parent.name
                    name = f"{owner}/{path.name}"
                    if name in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(path.read_text())
                        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                    applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    if applied:
        log.info("migrations applied", extra={"migrations": applied})
    return applied


def _headers_to_json(envelope: Envelope) -> str:
    return json.dumps([[k, base64.b64encode(v).decode()] for k, v in envelope.headers()])


def _headers_from_json(raw: str) -> list[tuple[str, bytes]]:
    return [(k, base64.b64decode(v)) for k, v in json.loads(raw)]


class PgUnitOfWork:
    """One transaction: queries run on ``conn``; events and processed ids join it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.events: list[Event] = []

    def add(self, event: Event) -> None:
        self.events.append(event)

    async def claim(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` applies ``event_id``; False when it already did."""
        return bool(await self.claim_many(consumer, [event_id]))

    async def claim_many(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Record that ``consumer`` applies these events; return the ids it had not applied yet."""
        rows = await self.conn.fetch(
            "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[])"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            consumer,
            list(dict.fromkeys(event_ids)),
        )
        return {row["event_id"] for row in rows}

    async def _flush(self) -> None:
        if not self.events:
            return
        rows = [(e.topic, e.key, _headers_to_json(e.envelope), e.envelope.data) for e in self.events]
        if len(rows) >= _COPY_FROM:  # a bulk write (an import batch): COPY, in the same order
            await self.conn.copy_records_to_table("outbox", records=rows,
                                                  columns=("topic", "key", "headers", "value"))
            return
        await self.conn.executemany(
            "INSERT INTO outbox (topic, key, headers, value) VALUES ($1, $2, $3::jsonb, $4)", rows,
        )


class PgDatabase:
    """A service's database: the pool, and units of work that wake the relay on commit."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._on_commit: list[Callable[[], None]] = []

    def on_events_committed(self, callback: Callable[[], None]) -> None:
        self._on_commit.append(callback)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[PgUnitOfWork]:
        async with self.pool.acquire() as conn, conn.transaction():
            uow = PgUnitOfWork(conn)
            yield uow
            await uow._flush()
        if uow.events:
            for callback in self._on_commit:
                callback()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")


class PgOutboxRelay(OutboxRelay):
    """Publishes outbox rows in id order, then deletes them. One relay at a time per database
    (an advisory lock), so events for one key keep their order across replicas. A crash after
    the broker acknowledged but before the delete publishes those events again:
    at-least-once, which consumers absorb by event id."""

    def __init__(self, pool: asyncpg.Pool, producer: Producer, batch_size: int = 500,
                 poll_interval: float = 0.5) -> None:
        super().__init__(batch_size, poll_interval)
        self.pool = pool
        self.producer = producer

    async def publish_batch(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, headers::text AS headers, value FROM outbox"
                " ORDER BY id LIMIT $1",
                self.batch_size,
            )
            if not rows:
                return 0
            unsendable = await send_all(self.producer, rows, _row_event)
            if unsendable:
                await conn.executemany(
                    "INSERT INTO outbox_dead (id, topic, key, headers, value, created_at, reason)"
                    " SELECT id, topic, key, headers, value, created_at, $2 FROM outbox WHERE id = $1",
                    [(row["id"], reason) for row, reason in unsendable],
                )
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])",
                               [row["id"] for row in rows])
        return len(rows) - len(unsendable)



def _row_event(row: Any) -> Event:
    headers = _headers_from_json(row["headers"])
    envelope = Envelope.from_record(headers, bytes(row["value"]))
    return Event(topic=row["topic"], key=row["key"], envelope=envelope)
