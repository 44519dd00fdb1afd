from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from crmkit.kafka import Producer
from crmkit.mongo import MongoDatabase, create_client
from crmkit.postgres import PgDatabase, create_pool, ensure_database, migrate
from crmkit.settings import InfraSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def topic(infra: InfraSettings) -> str:
    """A fresh topic (3 partitions) and its DLQ for one test."""
    name = f"crm.test.{secrets.token_hex(4)}.v1"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1), NewTopic(f"{name}.dlq", 1, 1)])
    finally:
        await admin.close()
    return name


@pytest.fixture
async def producer(infra: InfraSettings) -> AsyncIterator[Producer]:
    producer = Producer(infra, client_id="crmkit-tests")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
async def pg(infra: InfraSettings) -> AsyncIterator[PgDatabase]:
    name = f"{infra.database_prefix}crmkit"
    await ensure_database(infra.postgres_dsn, name)
    pool = await create_pool(infra.postgres_dsn_for(name))
    await migrate(pool)
    await pool.execute("CREATE TABLE IF NOT EXISTS effects (id text PRIMARY KEY, n int NOT NULL)")
    yield PgDatabase(pool)
    await pool.close()


@pytest.fixture
async def clean_pg(pg: PgDatabase) -> PgDatabase:
    await pg.pool.execute("TRUNCATE outbox, outbox_dead, processed_events, effects")
    return pg


@pytest.fixture(scope="session")
async def mongo(infra: InfraSettings) -> AsyncIterator[MongoDatabase]:
    client = create_client(infra.mongo_uri)
    db = MongoDatabase(client, f"{infra.database_prefix}crmkit")
    yield db
    await client.close()


async def read_all(infra: InfraSettings, topic: str, count: int, timeout: float = 20.0
                   ) -> list:  # type: ignore[type-arg]
    """Read ``count`` records of ``topic`` from the start (no consumer group)."""
    import time

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list = []  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for items in batch.values():
                records.extend(items)
    finally:
        await consumer.stop()
    return records
