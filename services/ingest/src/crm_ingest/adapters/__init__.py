"""Email in, the ways that are not a plain HTTP request: the SMTP listener, the IMAP pollers,
and the signed inbound-parse webhook's per-source rate limits. Each one verifies and
size-limits a message, appends it to the raw topic through ``IngestService.accept_email``
and answers once the broker has it."""

from __future__ import annotations

import asyncio
from types import TracebackType

from crm_ingest.adapters.imap import ImapPoller
from crm_ingest.adapters.smtp import SmtpListener
from crm_ingest.channel_config import EmailSource
from crm_ingest.service import IngestService
from crm_ingest.settings import Settings
from crm_ingest.store.mailboxes import MailboxStates
from crmkit.mongo import MongoDatabase
from crmkit.ratelimit import RateLimiter

__all__ = ["EmailIn", "ImapPoller", "SmtpListener"]


class EmailIn:
    """The process's email adapters: made with the settings, started once the service is
    there, stopped (as an async context manager) before the producer and the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sources: dict[str, EmailSource] = dict(settings.email_sources)
        self.limits = {name: RateLimiter(source.rate_per_second, source.burst)
                       for name, source in self.sources.items()}
        self.smtp: SmtpListener | None = None
        self.pollers: list[ImapPoller] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, service: IngestService, database: MongoDatabase) -> None:
        settings = self.settings
        if settings.smtp_inbound_addresses:
            self.smtp = SmtpListener(
                service, host=settings.smtp_host, port=settings.smtp_port,
                addresses=settings.smtp_inbound_addresses, max_bytes=settings.smtp_limit,
                rate_per_second=settings.smtp_rate_per_second, burst=settings.smtp_burst)
            await self.smtp.start()
        states = MailboxStates(database)
        for mailbox in settings.imap_mailboxes:
            poller = ImapPoller(mailbox, service, states, settings.max_email_bytes)
            self.pollers.append(poller)
            self._tasks.append(asyncio.create_task(poller.run(), name=f"imap poller {len(self.pollers)}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.smtp is not None:
            await self.smtp.stop()

    async def __aenter__(self) -> EmailIn:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
