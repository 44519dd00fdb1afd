"""One service process's resources, started in order and stopped in reverse in one lifespan."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from crmkit.auth import Authenticator
from crmkit.grpc import GrpcServer, Register, ServiceCredentials, create_channel, start_server
from crmkit.kafka.consumer import ConsumerRunner
from crmkit.kafka.handlers import Handlers
from crmkit.kafka.producer import Producer
from crmkit.mongo import MongoDatabase, MongoOutboxRelay, create_client
from crmkit.postgres import PgDatabase, PgOutboxRelay, create_pool, ensure_database, migrate
from crmkit.relay import OutboxRelay
from crmkit.settings import ServiceSettings

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0


class Runtime:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.authenticator = Authenticator(settings.infra)
        self.credentials = ServiceCredentials(self.authenticator, settings.service_name)
        self._stack = AsyncExitStack()
        self._checks: dict[str, Any] = {}
        self._producer: Producer | None = None
        self.consumers: list[ConsumerRunner] = []
        self.relays: list[OutboxRelay] = []
        self.grpc_server: GrpcServer | None = None

    async def __aenter__(self) -> Runtime:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def check_ready(self) -> dict[str, str]:
        failures: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                await asyncio.wait_for(check(), READY_TIMEOUT)
            except Exception as exc:
                failures[name] = type(exc).__name__
        for consumer in self.consumers:
            if not consumer.running:
                failures[f"consumer {consumer.group_id}"] = "stopped"
            elif not consumer.assigned.is_set():
                failures[f"consumer {consumer.group_id}"] = "joining group"
        return failures

    async def postgres(self, migrations: Path) -> PgDatabase:
        infra = self.settings.infra
        await ensure_database(infra.postgres_dsn, self.settings.database_name)
        pool = await create_pool(infra.postgres_dsn_for(self.settings.database_name))
        self._stack.push_async_callback(pool.close)
        await migrate(pool, migrations)
        database = PgDatabase(pool)
        self._checks["postgres"] = database.ping
        return database

    async def mongo(self) -> MongoDatabase:
        client = create_client(self.settings.infra.mongo_uri)
        self._stack.push_async_callback(client.close)
        database = MongoDatabase(client, self.settings.database_name)
        self._checks["mongo"] = database.ping
        return database

    async def producer(self) -> Producer:
        if self._producer is None:
            producer = Producer(self.settings.infra, client_id=self.settings.service_name)
            await producer.start()
            self._stack.push_async_callback(producer.stop)
            self._producer = producer
            self._checks["kafka"] = producer.ping
        return self._producer

    async def outbox_relay(self, database: PgDatabase | MongoDatabase) -> OutboxRelay:
        producer = await self.producer()
        relay: OutboxRelay = (
            PgOutboxRelay(database.pool, producer) if isinstance(database, PgDatabase)
            else MongoOutboxRelay(database, producer)
        )
        database.on_events_committed(relay.wake)
        self._stack.push_async_callback(relay.release)  # once the relay below has stopped
        self._background(relay.run(), f"outbox relay {self.settings.service_name}")
        self.relays.append(relay)
        return relay

    async def consumer(self, handlers: dict[str, Handlers]) -> ConsumerRunner:
        """The service's consumer group, subscribed to the given topics."""
        runner = ConsumerRunner(
            settings=self.settings.infra,
            group_id=self.settings.consumer_group,
            handlers={topic: h.one for topic, h in handlers.items()},
            batch_handlers={topic: h.batch for topic, h in handlers.items()},
            producer=await self.producer(),
        )
        await runner.start()
        self._stack.push_async_callback(runner.stop, self.settings.shutdown_grace_seconds)
        self.consumers.append(runner)
        return runner

    async def serve_grpc(self, services: dict[str, Register]) -> GrpcServer:
        server = await start_server(self.settings.grpc_host, self.settings.grpc_port, services)
        self._stack.push_async_callback(server.stop, self.settings.shutdown_grace_seconds)
        self.grpc_server = server
        return server

    async def grpc_channel(self, target: str, idempotent_services: list[str],
                           max_receive_bytes: int | None = None) -> grpc.aio.Channel:
        channel = create_channel(target, idempotent_services, max_receive_bytes)
        self._stack.push_async_callback(channel.close)
        return channel

    def background(self, coro: Any, name: str) -> None:
        """Run ``coro`` (a loop that handles its own errors) until the process stops: it is
        cancelled and awaited on the way out, before what was started ahead of it closes."""
        self._background(coro, name)

    def _background(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._stack.push_async_callback(cancel)
