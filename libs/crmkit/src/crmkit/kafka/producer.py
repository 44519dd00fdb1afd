"""The one Kafka producer of a process: acks=all, idempotence as a setting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from crmkit.kafka.connection import connection_options
from crmkit.kafka.envelope import Event
from crmkit.kafka.retry import dead_letter_headers
from crmkit.settings import InfraSettings
from crmkit.telemetry import context_from_headers
from crmkit.topics import dlq

_tracer = trace.get_tracer("crmkit.kafka")


class Producer:
    def __init__(self, settings: InfraSettings, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            **connection_options(settings),
            client_id=client_id,
            acks="all",
            enable_idempotence=settings.kafka_enable_idempotence,
            linger_ms=5,
            request_timeout_ms=15000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> asyncio.Future[object]:
        """Queue one record; the returned future resolves when the broker acknowledged it."""
        future: asyncio.Future[object] = await self._producer.send(
            topic, value=value, key=key, headers=list(headers)
        )
        return future

    async def send_event(self, event: Event) -> asyncio.Future[object]:
        """Queue one event in the trace it carries; the future resolves on the broker's ack.
        Raises MessageSizeTooLargeError at once for an event larger than a request may be."""
        env = event.envelope
        with _tracer.start_as_current_span(
            f"{event.topic} publish",
            kind=SpanKind.PRODUCER,
            context=context_from_headers(env.trace) if env.trace else None,
            attributes={"messaging.system": "kafka", "messaging.destination.name": event.topic,
                        "messaging.message.id": env.id, "cloudevents.event_type": env.type},
        ):
            return await self.send_raw(event.topic, event.key.encode(), env.data, env.headers())

    async def publish(self, events: Sequence[Event]) -> None:
        """Send events in order and wait until the broker has every one of them."""
        futures = [await self.send_event(event) for event in events]
        if futures:
            await asyncio.gather(*futures)

    async def dead_letter(self, event: Event, reason: str, **where: object) -> None:
        """Send ``event`` straight to its topic's dead-letter topic, with ``reason`` and
        ``where`` in the headers a consumer runner writes, and wait for the broker: for input
        that can never be handled, found before it reaches its topic."""
        headers = dead_letter_headers(event.envelope.headers(), reason, event.topic, **where)
        future = await self.send_raw(dlq(event.topic), event.key.encode(), event.envelope.data, headers)
        await future

    async def ping(self) -> None:
        """Readiness: the broker answers a metadata request."""
        await self._producer.client.fetch_all_metadata()
