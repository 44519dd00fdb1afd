"""MongoDB through PyMongo's async client: the unit of work with its outbox, and the relay.

A unit of work is a multi-document transaction (the server is a replica set): the state
change, the outbox documents and the processed-event ids commit together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from crmkit.kafka.envelope import Envelope, Event
from crmkit.kafka.producer import Producer
from crmkit.relay import OutboxRelay, send_all

log = logging.getLogger(__name__)
# Published outbox documents are deleted this many ids at a time: SecantusDB matches `$in`
# against every id of the list per candidate, so one delete of a whole batch grows with its
# square (measured: 1,040 deletes/s for lists of 500, 4,360/s for lists of 50).
_DELETE_CHUNK = 50

Document = dict[str, Any]


def create_client(uri: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000, uuidRepresentation="standard")


class MongoUnitOfWork:
    def __init__(self, db: AsyncDatabase[Document], session: AsyncClientSession) -> None:
        self.db = db
        self.session = session
        self.events: list[Event] = []

    def add(self, event: Event) -> None:
        self.events.append(event)

    async def claim(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` applies ``event_id``; False when it already did."""
        return bool(await self.claim_many(consumer, [event_id]))

    async def claim_many(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Record that ``consumer`` applies these events; return the ids it had not applied yet.
        A concurrent claim of the same id fails the transaction on the unique _id (retried)."""
        keys = {f"{consumer}:{event_id}": event_id for event_id in event_ids}
        done = {doc["_id"] async for doc in self.db.processed_events.find(
            {"_id": {"$in": list(keys)}}, {"_id": 1}, session=self.session)}
        fresh = [key for key in keys if key not in done]
        if fresh:
            now = datetime.now(UTC)
            await self.db.processed_events.insert_many(
                [{"_id": key, "processed_at": now} for key in fresh], session=self.session)
        return {keys[key] for key in fresh}

    async def _flush(self) -> None:
        if not self.events:
            return
        docs = [
            {
                "_id": ObjectId(),
                "topic": e.topic,
                "key": e.key,
                "headers": [[k, v] for k, v in e.envelope.headers()],
                "value": e.envelope.data,
                "created_at": datetime.now(UTC),
            }
            for e in self.events
        ]
        await self.db.outbox.insert_many(docs, ordered=True, session=self.session)


class MongoDatabase:
    def __init__(self, client: AsyncMongoClient[Document], name: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[name]
        self._on_commit: list[Callable[[], None]] = []

    def on_events_committed(self, callback: Callable[[], None]) -> None:
        self._on_commit.append(callback)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[MongoUnitOfWork]:
        async with self.client.start_session() as session:
            await session.start_transaction(
                read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
            )
            uow = MongoUnitOfWork(self.db, session)
            try:
                yield uow
                await uow._flush()
                await session.commit_transaction()
            except BaseException:
                if session.in_transaction:
                    await session.abort_transaction()
                raise
        if uow.events:
            for callback in self._on_commit:
                callback()

    async def processed(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these events ``consumer`` has applied already (outside a transaction: a
        hint for skipping work early; the unit of work's claim stays the guard)."""
        keys = {f"{consumer}:{event_id}": event_id for event_id in event_ids}
        return {keys[doc["_id"]] async for doc in self.db.processed_events.find(
            {"_id": {"$in": list(keys)}}, {"_id": 1})}

    async def ping(self) -> None:
        await self.client.admin.command("ping")


class MongoOutboxRelay(OutboxRelay):
    """Publishes outbox documents in _id order (ObjectIds grow within a process) and deletes
    them. One relay at a time per database holds a lease, so order per key survives replicas."""

    # Well above the producer's request timeout: a slow batch never outlives its lease.
    LEASE_SECONDS = 60

    def __init__(self, database: MongoDatabase, producer: Producer, batch_size: int = 500,
                 poll_interval: float = 0.5) -> None:
        super().__init__(batch_size, poll_interval)
        self.db = database.db
        self.producer = producer
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self)}"

    async def _hold_lease(self) -> bool:
        now = datetime.now(UTC)
        try:
            await self.db.locks.find_one_and_update(
                {"_id": "outbox-relay", "$or": [{"owner": self.owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": self.owner,
                          "expires_at": now + timedelta(seconds=self.LEASE_SECONDS)}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # another relay holds a live lease
        return True

    async def release(self) -> None:
        try:
            await self.db.locks.delete_one({"_id": "outbox-relay", "owner": self.owner})
        except PyMongoError:
            log.warning("the outbox relay's lease was not given back; it runs out by itself",
                        exc_info=True)

    async def publish_batch(self) -> int:
        if not await self._hold_lease():
            return 0
        docs = await self.db.outbox.find().sort("_id", ASCENDING).limit(self.batch_size).to_list()
        if not docs:
            return 0
        unsendable = await send_all(self.producer, docs, _doc_event)
        if unsendable:
            await self.db.outbox_dead.insert_many([{**doc, "reason": reason} for doc, reason in unsendable])
        ids = [d["_id"] for d in docs]
        for start in range(0, len(ids), _DELETE_CHUNK):
            await self.db.outbox.delete_many({"_id": {"$in": ids[start:start + _DELETE_CHUNK]}})
        return len(docs) - len(unsendable)


def _doc_event(doc: Document) -> Event:
    envelope = Envelope.from_record([(k, bytes(v)) for k, v in doc["headers"]], bytes(doc["value"]))
    return Event(topic=doc["topic"], key=doc["key"], envelope=envelope)

