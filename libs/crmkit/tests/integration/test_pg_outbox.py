"""The PostgreSQL outbox against the real database and broker."""

from __future__ import annotations

from collections import defaultdict

import pytest

from crm.common.v1 import common_pb2
from crmkit.kafka import Envelope, Producer, make_event
from crmkit.postgres import PgDatabase, PgOutboxRelay, migrate
from crmkit.settings import InfraSettings

from .conftest import read_all

pytestmark = pytest.mark.integration


def money_event(topic: str, aggregate: str, amount: int):  # type: ignore[no-untyped-def]
    return make_event(topic=topic, type="crm.test.money.v1", source="/test", workspace="ws",
                      subject=aggregate, payload=common_pb2.Money(amount_minor=amount, currency="EUR"))


async def test_events_commit_with_the_state_change_and_are_published_in_order(
    clean_pg: PgDatabase, producer: Producer, infra: InfraSettings, topic: str
) -> None:
    for batch in range(4):
        async with clean_pg.unit_of_work() as uow:
            for aggregate in ("a", "b", "c"):
                uow.add(money_event(topic, aggregate, batch))
    relay = PgOutboxRelay(clean_pg.pool, producer, batch_size=5)
    while await relay.publish_batch():
        pass
    assert await clean_pg.pool.fetchval("SELECT count(*) FROM outbox") == 0
    records = await read_all(infra, topic, 12)
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        envelope = Envelope.from_record(record.headers, record.value)
        money = envelope.parse(common_pb2.Money)
        assert isinstance(money, common_pb2.Money)
        by_key[record.key].append(money.amount_minor)
    assert by_key == {b"ws:a": [0, 1, 2, 3], b"ws:b": [0, 1, 2, 3], b"ws:c": [0, 1, 2, 3]}


async def test_a_bulk_unit_of_work_is_written_with_copy_and_keeps_its_order(
    clean_pg: PgDatabase, producer: Producer, infra: InfraSettings, topic: str
) -> None:
    async with clean_pg.unit_of_work() as uow:
        for amount in range(500):  # past the COPY threshold
            uow.add(money_event(topic, "bulk", amount))
    relay = PgOutboxRelay(clean_pg.pool, producer, batch_size=200)
    while await relay.publish_batch():
        pass
    records = await read_all(infra, topic, 500)
    amounts = [Envelope.from_record(r.headers, r.value).parse(common_pb2.Money).amount_minor  # type: ignore[union-attr]
               for r in records]
    assert amounts == list(range(500))


async def test_a_rolled_back_transaction_publishes_nothing(clean_pg: PgDatabase, topic: str) -> None:
    with pytest.raises(RuntimeError):
        async with clean_pg.unit_of_work() as uow:
            await uow.conn.execute("INSERT INTO effects VALUES ('x', 1)")
            uow.add(money_event(topic, "a", 1))
            raise RuntimeError("the use case failed")
    assert await clean_pg.pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await clean_pg.pool.fetchval("SELECT count(*) FROM effects") == 0


class CrashAfterPublish(Producer):
    """The relay's process dies once the broker acknowledged the third event, before the
    rows are deleted."""

    acked = 0

    async def send_event(self, event):  # type: ignore[no-untyped-def]
        future = await super().send_event(event)
        await future
        self.acked += 1
        if self.acked == 3:
            raise SystemExit("killed")
        return future


async def test_a_relay_crash_after_publishing_loses_nothing_and_repeats_at_most_the_batch(
    clean_pg: PgDatabase, producer: Producer, infra: InfraSettings, topic: str
) -> None:
    async with clean_pg.unit_of_work() as uow:
        for n in range(3):
            uow.add(money_event(topic, "a", n))
    crashing = CrashAfterPublish(infra, client_id="crash")
    await crashing.start()
    try:
        with pytest.raises(SystemExit):
            await PgOutboxRelay(clean_pg.pool, crashing).publish_batch()
    finally:
        await crashing.stop()
    assert await clean_pg.pool.fetchval("SELECT count(*) FROM outbox") == 3
    assert await PgOutboxRelay(clean_pg.pool, producer).publish_batch() == 3
    records = await read_all(infra, topic, 6)
    ids = [Envelope.from_record(r.headers, r.value).id for r in records]
    assert len(ids) == 6
    assert len(set(ids)) == 3  # the same three events twice: consumers dedupe by ce_id


async def test_only_one_relay_publishes_at_a_time(clean_pg: PgDatabase, producer: Producer,
                                                  topic: str) -> None:
    async with clean_pg.unit_of_work() as uow:
        uow.add(money_event(topic, "a", 1))
    async with clean_pg.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x43524D52)
        assert await PgOutboxRelay(clean_pg.pool, producer).publish_batch() == 0
    assert await PgOutboxRelay(clean_pg.pool, producer).publish_batch() == 1


async def test_migrations_apply_once(clean_pg: PgDatabase) -> None:
    assert await migrate(clean_pg.pool) == []


async def test_an_event_the_broker_can_never_take_is_set_aside_and_blocks_nothing(
    clean_pg: PgDatabase, producer: Producer, infra: InfraSettings, topic: str
) -> None:
    huge = make_event(topic=topic, type="crm.test.blob.v1", source="/test", workspace="ws", subject="a",
                      payload=common_pb2.PageInfo(next_cursor="x" * (2 * 1024 * 1024)))
    async with clean_pg.unit_of_work() as uow:
        uow.add(money_event(topic, "a", 1))
        uow.add(huge)
        uow.add(money_event(topic, "a", 2))
    relay = PgOutboxRelay(clean_pg.pool, producer)
    assert await relay.publish_batch() == 2
    assert await clean_pg.pool.fetchval("SELECT count(*) FROM outbox") == 0
    dead = await clean_pg.pool.fetchrow("SELECT topic, reason FROM outbox_dead")
    assert dead["topic"] == topic
    assert dead["reason"].startswith("MessageSizeTooLargeError")
    records = await read_all(infra, topic, 2)
    amounts = [Envelope.from_record(r.headers, r.value).parse(common_pb2.Money) for r in records]
    assert [m.amount_minor for m in amounts if isinstance(m, common_pb2.Money)] == [1, 2]
