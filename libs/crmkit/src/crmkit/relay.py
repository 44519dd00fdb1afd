"""The outbox relay loop shared by the PostgreSQL and MongoDB outboxes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from aiokafka.errors import MessageSizeTooLargeError
from opentelemetry import metrics

from crmkit.kafka.envelope import EnvelopeError, Event
from crmkit.kafka.producer import Producer

log = logging.getLogger(__name__)
_published = metrics.get_meter("crmkit.outbox").create_counter(
    "crm.outbox.published", unit="{event}", description="Events the outbox relay published")


Row = TypeVar("Row")


async def send_all(producer: Producer, rows: Sequence[Row], to_event: Callable[[Row], Event]
                   ) -> list[tuple[Row, str]]:
    """Send every row's event in order and wait for the broker. Returns the rows whose event
    can never be sent (not a valid event, or larger than the broker takes), with the reason:
    the caller sets them aside so that they never block the events behind them. Any other
    failure raises, and the whole batch is tried again."""
    queued: list[tuple[Row, asyncio.Future[object]]] = []
    unsendable: list[tuple[Row, str]] = []
    for row in rows:
        try:
            queued.append((row, await producer.send_event(to_event(row))))
        except (EnvelopeError, MessageSizeTooLargeError) as exc:
            unsendable.append((row, f"{type(exc).__name__}: {exc}"[:1000]))
    results = await asyncio.gather(*(future for _, future in queued), return_exceptions=True)
    for (row, _), result in zip(queued, results, strict=True):
        if isinstance(result, MessageSizeTooLargeError):  # the broker's own limit
            unsendable.append((row, f"{type(result).__name__}: {result}"[:1000]))
        elif isinstance(result, BaseException):
            raise result
    for _, reason in unsendable:
        log.error("outbox event set aside: it can never be published", extra={"reason": reason})
    return unsendable


class OutboxRelay(ABC):
    """Publishes what the outbox holds: at once when woken by a commit in this process,
    otherwise every ``poll_interval`` (commits of other replicas, events left by a crash)."""

    def __init__(self, batch_size: int = 500, poll_interval: float = 0.5) -> None:
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.published = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    @abstractmethod
    async def publish_batch(self) -> int:
        """Publish the oldest events, wait for the broker, delete them; return how many."""

    async def release(self) -> None:  # noqa: B027 - most relays hold nothing to give back
        """Give back what this relay holds (a lease) once it has stopped, so that another
        replica's relay takes over at once rather than when the lease runs out."""

    async def run(self) -> None:
        while True:
            try:
                sent = await self.publish_batch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("outbox relay failed; retrying", exc_info=True)
                sent = 0
                await asyncio.sleep(1)
            self.published += sent
            if sent:
                _published.add(sent, {"relay": type(self).__name__})
            if sent == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
