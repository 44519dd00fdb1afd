"""The consumer runner: at-least-once delivery made effectively-once by idempotent handlers.

- Offsets are committed only after a record's effect (manual commits).
- A failing record is retried with backoff; one that keeps failing, or can never succeed,
  goes to ``<topic>.dlq`` with the error in its headers, and the partition moves on.
- A dependency that is down (a transient error) is waited for: the record is never dropped.
- Partitions are handled concurrently, each in order. A topic may have a batch handler that
  applies a whole fetched batch of one partition at once (one call to a peer, one
  transaction); when the batch fails, its records are handled one by one, so a poison record
  is isolated and dead-lettered while the others go through.
- Rebalance-safe: a revoked partition's processed offsets are committed before it is given
  up, and a batch in progress finishes first (the lock below).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from crmkit.kafka.connection import connection_options
from crmkit.kafka.envelope import Envelope
from crmkit.kafka.producer import Producer
from crmkit.kafka.retry import DeadLetter, RetryPolicy, dead_letter_headers, is_transient
from crmkit.settings import InfraSettings
from crmkit.telemetry import context_from_headers
from crmkit.topics import dlq

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("crmkit.kafka")
_meter = metrics.get_meter("crmkit.kafka")
_records = _meter.create_counter(
    "crm.consumer.records", unit="{record}",
    description="Records a consumer finished with, by outcome (processed or dead_lettered)")
_handle_seconds = _meter.create_histogram(
    "crm.consumer.handle.duration", unit="s", description="Time to handle one record, retries included")

Handler = Callable[[Envelope], Awaitable[None]]
BatchHandler = Callable[[Sequence[Envelope]], Awaitable[None]]
Record: TypeAlias = ConsumerRecord[bytes, bytes]


@contextmanager
def record_span(envelope: Envelope, topic: str) -> Iterator[Span]:
    """A CONSUMER span in the trace the event carries: batch handlers open one per record
    around the work (and the events) that record causes, so its trace goes on."""
    with _tracer.start_as_current_span(
        f"{topic} process",
        kind=SpanKind.CONSUMER,
        context=context_from_headers(envelope.trace),
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                    "messaging.message.id": envelope.id},
    ) as span:
        yield span


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.runner.lock:  # wait for the batch in progress
            try:
                await self.runner.commit_processed(revoked)
            finally:
                # Whatever the commit did, these offsets are not ours to commit any more.
                for tp in revoked:
                    self.runner._pending.pop(tp, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.runner.assigned.set()


class ConsumerRunner:
    def __init__(
        self,
        *,
        settings: InfraSettings,
        group_id: str,
        handlers: Mapping[str, Handler],
        producer: Producer,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        policy: RetryPolicy | None = None,
        max_records: int | None = None,
        client_id: str | None = None,
    ) -> None:
        self.group_id = group_id
        self.handlers = dict(handlers)
        self.batch_handlers = dict(batch_handlers or {})
        self.producer = producer
        self.policy = policy or RetryPolicy()
        self.max_records = max_records or settings.kafka_max_poll_records
        self.lock = asyncio.Lock()
        self.assigned = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.processed = 0
        self.dead_lettered = 0
        self._consumer = AIOKafkaConsumer(
            **connection_options(settings),
            group_id=group_id,
            client_id=client_id or group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            # The default max_poll_interval (5 min) is kept: a handler waiting out a longer
            # outage makes the consumer rejoin, and its records are delivered again, which
            # idempotent handlers absorb. (A larger value slows every group join on tansu.)
        )

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe(list(self.handlers), listener=_Rebalance(self))
        self._task = asyncio.create_task(self._run(), name=f"consumer {self.group_id}")

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping.set()
        try:
            if self._task is not None:
                await asyncio.wait({self._task}, timeout=grace)
                if not self._task.done():
                    self._task.cancel()
                results = await asyncio.gather(self._task, return_exceptions=True)
                if isinstance(results[0], Exception):
                    log.error("the consumer loop had failed", exc_info=results[0],
                              extra={"group": self.group_id})
            await self.commit_processed(None)
        finally:
            await self._consumer.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def commit_processed(self, partitions: set[TopicPartition] | None) -> None:
        assigned = self._consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._pending.items()
            if (partitions is None or tp in partitions) and tp in assigned
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception:
            # The records will be delivered again; handlers are idempotent.
            log.warning("offset commit failed", extra={"group": self.group_id}, exc_info=True)
            return
        for tp in offsets:
            self._pending.pop(tp, None)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=self.max_records)
            except Exception:
                log.warning("fetch failed; retrying", extra={"group": self.group_id}, exc_info=True)
                await asyncio.sleep(1)
                continue
            if not batches:
                continue
            async with self.lock:
                await asyncio.gather(*(self._handle_partition(tp, records)
                                       for tp, records in batches.items()))
                await self.commit_processed(set(batches))

    async def _handle_partition(self, tp: TopicPartition, records: list[Record]) -> None:
        batch_handler = self.batch_handlers.get(tp.topic)
        if batch_handler is not None and len(records) > 1 and await self._handle_batch(
                batch_handler, tp, records):
            return
        for record in records:
            if self._stopping.is_set() or not await self._handle(record):
                return  # stopping (perhaps while waiting out a dependency): not processed
            self._pending[tp] = record.offset + 1

    async def _handle_batch(self, handler: BatchHandler, tp: TopicPartition, records: list[Record]) -> bool:
        """Apply the batch at once; False (nothing applied) sends it down the one-by-one path."""
        started = time.perf_counter()
        try:
            envelopes = [Envelope.from_record(list(r.headers or ()), r.value) for r in records]
        except Exception:
            return False
        links = [Link(span.get_span_context())
                 for span in (trace.get_current_span(context_from_headers(e.trace)) for e in envelopes)
                 if span.get_span_context().is_valid]
        attempt = 0
        while True:
            attempt += 1
            with _tracer.start_as_current_span(
                f"{tp.topic} process batch", kind=SpanKind.CONSUMER, links=links,
                attributes={"messaging.system": "kafka", "messaging.destination.name": tp.topic,
                            "messaging.batch.message_count": len(records)},
            ) as span:
                try:
                    await handler(envelopes)
                    break
                except Exception as exc:
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    error = exc
            # A conflict or a blip: the batch again. Anything else: one record at a time.
            if (is_transient(error) and attempt < self.policy.max_attempts
                    and not self._stopping.is_set()):
                await asyncio.sleep(self.policy.backoff(attempt))
                continue
            log.info("batch failed; handling its records one by one",
                     extra={"group": self.group_id, "topic": tp.topic, "records": len(records),
                            "error": type(error).__name__})
            return False
        self.processed += len(records)
        labels = {"group": self.group_id, "topic": tp.topic}
        _records.add(len(records), {**labels, "outcome": "processed"})
        _handle_seconds.record((time.perf_counter() - started) / len(records), labels)
        self._pending[tp] = records[-1].offset + 1
        return True

    async def _handle(self, record: Record) -> bool:
        """Handle one record until it succeeded or was dead-lettered; False if stopped first."""
        attempt = 0
        started = time.perf_counter()
        labels = {"group": self.group_id, "topic": record.topic}
        while True:
            attempt += 1
            try:
                await self._process(record)
                self.processed += 1
                _records.add(1, {**labels, "outcome": "processed"})
                _handle_seconds.record(time.perf_counter() - started, labels)
                return True
            except Exception as error:
                decision = self.policy.decide(attempt, error)
                if isinstance(decision, DeadLetter):
                    await self._dead_letter(record, decision.reason, attempt)
                    _records.add(1, {**labels, "outcome": "dead_lettered"})
                    return True
                log.warning(
                    "handler failed; retrying",
                    extra={"group": self.group_id, "topic": record.topic, "attempt": attempt,
                           "error": type(error).__name__, "delay": decision.delay},
                )
                try:
                    await asyncio.wait_for(self._stopping.wait(), decision.delay)
                    return False
                except TimeoutError:
                    continue

    async def _process(self, record: Record) -> None:
        headers = list(record.headers or ())
        trace_headers = {k: v.decode(errors="replace") for k, v in headers
                         if k in ("traceparent", "tracestate")}
        with _tracer.start_as_current_span(
            f"{record.topic} process",
            kind=SpanKind.CONSUMER,
            context=context_from_headers(trace_headers),
            attributes={"messaging.system": "kafka", "messaging.destination.name": record.topic,
                        "messaging.consumer.group.name": self.group_id,
                        "messaging.kafka.offset": record.offset},
        ) as span:
            try:
                envelope = Envelope.from_record(headers, record.value)
                span.set_attribute("messaging.message.id", envelope.id)
                await self.handlers[record.topic](envelope)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    async def _dead_letter(self, record: Record, reason: str, attempts: int) -> None:
        headers = dead_letter_headers(record.headers or (), reason, record.topic,
                                      partition=record.partition, offset=record.offset,
                                      group=self.group_id, attempts=attempts)
        # Waits for the broker: the offset is committed only once the DLQ has the record.
        value = record.value or b""
        while True:
            try:
                future = await self.producer.send_raw(dlq(record.topic), record.key, value, headers)
                await future
                break
            except MessageSizeTooLargeError:
                # The headers say where the record is; its value stays on the source topic.
                value = b""
                headers.append(("dlq_value_omitted", b"too large for the dead-letter topic"))
            except Exception:
                log.warning("DLQ write failed; retrying", exc_info=True)
                await asyncio.sleep(1)
        self.dead_lettered += 1
        # The reason may quote personal data (an address a relay refused, a field's value): it
        # is kept in the dead letter's headers; the log names only its kind.
        log.error(
            "record dead-lettered",
            extra={"group": self.group_id, "topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "reason_kind": reason.split(":", 1)[0][:80]},
        )
