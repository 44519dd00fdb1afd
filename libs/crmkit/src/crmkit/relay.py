"""The outbox relay loop shared by the PostgreSQL and MongoDB outboxes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from opentelemetry import metrics

log = logging.getLogger(__name__)
_published = metrics.get_meter("crmkit.outbox").create_counter(
    "crm.outbox.published", unit="{event}", description="Events the outbox relay published")


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
