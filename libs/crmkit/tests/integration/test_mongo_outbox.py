"""The MongoDB unit of work and outbox against the real server and broker."""

from __future__ import annotations

import pytest

from crm.common.v1 import common_pb2
from crmkit.kafka import Envelope, Producer, make_event
from crmkit.mongo import MongoDatabase, MongoOutboxRelay
from crmkit.settings import InfraSettings

from .conftest import read_all

pytestmark = pytest.mark.integration


@pytest.fixture
async def clean_mongo(mongo: MongoDatabase) -> MongoDatabase:
    for name in ("outbox", "outbox_dead", "processed_events", "things", "locks"):
        await mongo.db[name].delete_many({})
    return mongo


async def test_state_outbox_and_processed_ids_commit_together(
    clean_mongo: MongoDatabase, producer: Producer, infra: InfraSettings, topic: str
) -> None:
    async with clean_mongo.unit_of_work() as uow:
        assert await uow.claim("test", "event-1")
        await uow.db.things.insert_one({"_id": "t1"}, session=uow.session)
        uow.add(make_event(topic=topic, type="crm.test.v1", source="/t", workspace="ws",
                           subject="t1", payload=common_pb2.PageInfo(next_cursor="x")))
    async with clean_mongo.unit_of_work() as uow:
        assert not await uow.claim("test", "event-1")
    relay = MongoOutboxRelay(clean_mongo, producer)
    assert await relay.publish_batch() == 1
    assert await clean_mongo.db.outbox.count_documents({}) == 0
    [record] = await read_all(infra, topic, 1)
    envelope = Envelope.from_record(record.headers, record.value)
    assert envelope.subject == "t1"
    assert record.key == b"ws:t1"


async def test_an_aborted_unit_of_work_leaves_no_trace(clean_mongo: MongoDatabase, topic: str) -> None:
    with pytest.raises(RuntimeError):
        async with clean_mongo.unit_of_work() as uow:
            await uow.claim("test", "event-2")
            await uow.db.things.insert_one({"_id": "t2"}, session=uow.session)
            uow.add(make_event(topic=topic, type="crm.test.v1", source="/t", workspace="ws",
                               subject="t2", payload=common_pb2.PageInfo()))
            raise RuntimeError("the use case failed")
    assert await clean_mongo.db.things.count_documents({"_id": "t2"}) == 0
    assert await clean_mongo.db.outbox.count_documents({}) == 0
    assert await clean_mongo.db.processed_events.count_documents({"_id": "test:event-2"}) == 0


async def test_a_second_relay_waits_while_the_first_holds_the_lease(
    clean_mongo: MongoDatabase, producer: Producer, topic: str
) -> None:
    async with clean_mongo.unit_of_work() as uow:
        uow.add(make_event(topic=topic, type="crm.test.v1", source="/t", workspace="ws",
                           subject="t3", payload=common_pb2.PageInfo()))
    first, second = MongoOutboxRelay(clean_mongo, producer), MongoOutboxRelay(clean_mongo, producer)
    assert await first._hold_lease()
    assert await second.publish_batch() == 0
    assert await first.publish_batch() == 1


async def test_a_stopped_relay_gives_its_lease_back_at_once(
    clean_mongo: MongoDatabase, producer: Producer, topic: str
) -> None:
    first, second = MongoOutboxRelay(clean_mongo, producer), MongoOutboxRelay(clean_mongo, producer)
    assert await first._hold_lease()
    await second.release()  # not its lease: nothing changes
    assert not await second._hold_lease()
    await first.release()  # a replica shutting down
    async with clean_mongo.unit_of_work() as uow:
        uow.add(make_event(topic=topic, type="crm.test.v1", source="/t", workspace="ws",
                           subject="t4", payload=common_pb2.PageInfo()))
    assert await second.publish_batch() == 1  # the next replica takes over without waiting


async def test_an_event_the_broker_can_never_take_is_set_aside(
    clean_mongo: MongoDatabase, producer: Producer, topic: str
) -> None:
    async with clean_mongo.unit_of_work() as uow:
        uow.add(make_event(topic=topic, type="crm.test.v1", source="/t", workspace="ws", subject="big",
                           payload=common_pb2.PageInfo(next_cursor="x" * (2 * 1024 * 1024))))
        uow.add(make_event(topic=topic, type="crm.test.v1", source="/t", workspace="ws", subject="ok",
                           payload=common_pb2.PageInfo()))
    assert await MongoOutboxRelay(clean_mongo, producer).publish_batch() == 1
    assert await clean_mongo.db.outbox.count_documents({}) == 0
    dead = await clean_mongo.db.outbox_dead.find_one({"key": "ws:big"})
    assert dead is not None
    assert dead["reason"].startswith("MessageSizeTooLargeError")
