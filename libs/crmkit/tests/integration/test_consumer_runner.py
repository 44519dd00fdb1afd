"""The consumer runner against the real broker: DLQ, waiting out outages, crash safety."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from crm.common.v1 import common_pb2
from crmkit.kafka import (
    ConsumerRunner,
    Envelope,
    PermanentError,
    Producer,
    RetryPolicy,
    TransientError,
    make_event,
)
from crmkit.postgres import PgDatabase
from crmkit.settings import InfraSettings
from crmkit.testing import eventually

from .conftest import read_all

pytestmark = pytest.mark.integration


def event(topic: str, n: int, subject: str = "a"):  # type: ignore[no-untyped-def]
    return make_event(topic=topic, type="crm.test.money.v1", source="/test", workspace="ws",
                      subject=subject, payload=common_pb2.Money(amount_minor=n, currency="EUR"))


def runner(infra: InfraSettings, topic: str, handler, producer: Producer,  # type: ignore[no-untyped-def]
           group: str | None = None) -> ConsumerRunner:
    return ConsumerRunner(settings=infra, group_id=group or f"test-{secrets.token_hex(4)}",
                          handlers={topic: handler}, producer=producer,
                          policy=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.2))


async def test_a_poison_record_goes_to_the_dlq_with_its_reason_and_consumption_goes_on(
    infra: InfraSettings, producer: Producer, topic: str
) -> None:
    seen: list[int] = []

    async def handle(envelope: Envelope) -> None:
        money = envelope.parse(common_pb2.Money)
        assert isinstance(money, common_pb2.Money)
        if money.amount_minor == 2:
            raise PermanentError("amount 2 is not allowed")
        seen.append(money.amount_minor)

    await producer.publish([event(topic, n) for n in (1, 2, 3)])
    await producer.send_raw(topic, b"ws:a", b"not an event", [("foo", b"bar")])
    consumer = runner(infra, topic, handle, producer)
    await consumer.start()
    try:
        await eventually(lambda: _done(consumer, 4), what="four records handled")
    finally:
        await consumer.stop()
    assert seen == [1, 3]
    dead = await read_all(infra, f"{topic}.dlq", 2)
    reasons = sorted(dict(r.headers)["dlq_reason"].decode() for r in dead)
    assert reasons[0].startswith("EnvelopeError: missing CloudEvents headers")
    assert reasons[1] == "PermanentError: amount 2 is not allowed"
    assert all(dict(r.headers)["dlq_topic"].decode() == topic for r in dead)


async def _done(consumer: ConsumerRunner, n: int) -> bool:
    return consumer.processed + consumer.dead_lettered >= n


async def test_an_unexpected_error_is_retried_then_dead_lettered(
    infra: InfraSettings, producer: Producer, topic: str
) -> None:
    attempts = 0

    async def handle(envelope: Envelope) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("always fails")

    await producer.publish([event(topic, 1)])
    consumer = runner(infra, topic, handle, producer)
    await consumer.start()
    try:
        await eventually(lambda: _done(consumer, 1), what="the record dead-lettered")
    finally:
        await consumer.stop()
    assert attempts == 2
    [dead] = await read_all(infra, f"{topic}.dlq", 1)
    assert dict(dead.headers)["dlq_attempts"] == b"2"


async def test_a_dependency_outage_is_waited_out_and_nothing_is_dropped(
    infra: InfraSettings, producer: Producer, topic: str
) -> None:
    down_until = asyncio.get_running_loop().time() + 1.5
    handled: list[int] = []

    async def handle(envelope: Envelope) -> None:
        if asyncio.get_running_loop().time() < down_until:
            raise TransientError("contacts is down")
        money = envelope.parse(common_pb2.Money)
        assert isinstance(money, common_pb2.Money)
        handled.append(money.amount_minor)

    await producer.publish([event(topic, n) for n in range(5)])
    consumer = runner(infra, topic, handle, producer)
    await consumer.start()
    try:
        await eventually(lambda: _done(consumer, 5), what="all five handled")
    finally:
        await consumer.stop()
    assert handled == [0, 1, 2, 3, 4]
    assert consumer.dead_lettered == 0


class NoCommit(ConsumerRunner):
    """A process that dies after the effect committed but before the offset did."""

    async def commit_processed(self, partitions):  # type: ignore[no-untyped-def]
        return None


async def test_a_crash_between_effect_and_offset_commit_neither_loses_nor_doubles(
    infra: InfraSettings, producer: Producer, topic: str, clean_pg: PgDatabase
) -> None:
    async def handle(envelope: Envelope) -> None:
        async with clean_pg.unit_of_work() as uow:
            if not await uow.claim("test.effects", envelope.id):
                return
            await uow.conn.execute(
                "INSERT INTO effects VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = effects.n + 1",
                envelope.subject)

    await producer.publish([event(topic, n, subject=f"agg-{n}") for n in range(6)])
    group = f"test-{secrets.token_hex(4)}"
    first = NoCommit(settings=infra, group_id=group, handlers={topic: handle}, producer=producer)
    await first.start()
    await eventually(lambda: _done(first, 6), what="first pass")
    await first.stop()  # "crashes": no offsets were committed

    second = runner(infra, topic, handle, producer, group=group)
    await second.start()
    await eventually(lambda: _done(second, 6), what="the records delivered again")
    await second.stop()
    rows = await clean_pg.pool.fetch("SELECT id, n FROM effects ORDER BY id")
    assert [(r["id"], r["n"]) for r in rows] == [(f"agg-{n}", 1) for n in range(6)]


async def test_a_batch_is_applied_at_once_and_a_poison_record_in_it_is_isolated(
    infra: InfraSettings, producer: Producer, topic: str
) -> None:
    batches: list[list[int]] = []
    one_by_one: list[int] = []

    def amounts(envelopes: list[Envelope]) -> list[int]:
        found = [envelope.parse(common_pb2.Money) for envelope in envelopes]
        return [m.amount_minor for m in found if isinstance(m, common_pb2.Money)]

    async def handle_batch(envelopes: list[Envelope]) -> None:
        values = amounts(envelopes)
        if 13 in values:
            raise PermanentError("13 is not allowed")
        batches.append(values)

    async def handle_one(envelope: Envelope) -> None:
        [value] = amounts([envelope])
        if value == 13:
            raise PermanentError("13 is not allowed")
        one_by_one.append(value)

    # Published before the consumer starts, so the first fetch brings them as one batch.
    await producer.publish([event(topic, n) for n in range(10)])
    consumer = ConsumerRunner(settings=infra, group_id=f"test-{secrets.token_hex(4)}",
                              handlers={topic: handle_one}, batch_handlers={topic: handle_batch},
                              producer=producer, policy=RetryPolicy(max_attempts=2, base_delay=0.05))
    await consumer.start()
    try:
        await eventually(lambda: _done(consumer, 10), what="the first ten handled")
        await producer.publish([event(topic, 13), event(topic, 20), event(topic, 21)])
        await eventually(lambda: _done(consumer, 13), what="thirteen records handled")
    finally:
        await consumer.stop()
    assert [v for batch in batches for v in batch] == list(range(10))
    assert any(len(batch) > 1 for batch in batches)  # the fast path: one call for many records
    assert one_by_one == [20, 21]  # the poisoned batch, one by one, in order, without the poison
    assert consumer.dead_lettered == 1
    [dead] = await read_all(infra, f"{topic}.dlq", 1)
    assert dict(dead.headers)["dlq_reason"] == b"PermanentError: 13 is not allowed"
