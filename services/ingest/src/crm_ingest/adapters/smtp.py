"""The SMTP listener: mail for the configured inbound addresses, received as the last hop
behind the organisation's MTA (MX-style: no AUTH, no TLS of its own; see the README).

Each refusal is one an MTA understands: 550 for a recipient no workspace is mapped to (the
allow-list), 552 for a message over the size limit (advertised as ``SIZE`` in the EHLO
answer), 451 while a workspace is over its rate or the broker does not take the message (the
MTA keeps it and retries later). A message is answered 250 only once the broker has its raw
record, once for each workspace one of its recipients belongs to.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiosmtpd.smtp import SMTP, Envelope, Session
from opentelemetry import metrics

from crm_ingest.service import IngestService
from crmkit.ratelimit import RateLimiter

log = logging.getLogger(__name__)
_meter = metrics.get_meter("crm_ingest")
_accepted = _meter.create_counter(
    "crm.ingest.email.smtp.accepted", unit="{message}",
    description="Messages the SMTP listener appended to the raw topic (one per workspace)")
_refused = _meter.create_counter(
    "crm.ingest.email.smtp.refused", unit="{command}",
    description="SMTP commands refused, by reason: recipient, too_many_recipients, rate, "
                "too_large, unavailable")

SOURCE = "email-smtp"
MAX_RECIPIENTS = 100
# aiosmtpd logs every sender and recipient address at INFO on this logger: personal data.
_AIOSMTPD_LOGGER = "mail.log"

ACCEPTED = "250 2.0.0 OK: queued"
UNKNOWN_RECIPIENT = "550 5.1.1 No such recipient here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
RATE_LIMITED = "451 4.7.1 Too much mail for this recipient now, try again later"
TOO_LARGE = "552 5.3.4 Message too big"
UNAVAILABLE = "451 4.3.0 Temporary failure, try again later"


class InboundAddresses:
    """Which workspace a recipient address belongs to: its exact address first, then its
    domain (keys ``"@<domain>"``); addresses and domains compare case-insensitively."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = {key.lower(): workspace for key, workspace in mapping.items()}

    def workspace_for(self, address: str) -> str | None:
        address = address.strip().lower()
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or any(c <= " " or c == "\x7f" for c in address):
            return None  # spaces and control characters (a bare LF) have no place in a recipient
        return self._mapping.get(address) or self._mapping.get(f"@{domain}")

    def by_workspace(self, recipients: Iterable[str]) -> dict[str, list[str]]:
        """The accepted recipients of a message, grouped by their workspace."""
        grouped: dict[str, list[str]] = {}
        for recipient in recipients:
            workspace = self.workspace_for(recipient)
            if workspace is not None:
                grouped.setdefault(workspace, []).append(recipient)
        return grouped


def delivered_copy(content: bytes, recipients: Iterable[str]) -> bytes:
    """The message as stored for one workspace: a ``Delivered-To`` header per recipient of
    that workspace on top (Bcc recipients appear nowhere else). No ``Received`` header with a
    time is added, so that a retried delivery of a message without a Message-ID is the same
    bytes, hence the same derived interaction id."""
    headers = b"".join(f"Delivered-To: {address}\r\n".encode() for address in sorted(set(recipients)))
    return headers + content


class SmtpHandler:
    """aiosmtpd's handler: the allow-list at RCPT, the broker at the end of DATA."""

    def __init__(self, service: IngestService, addresses: InboundAddresses, limiter: RateLimiter) -> None:
        self.service = service
        self.addresses = addresses
        self.limiter = limiter

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        workspace = self.addresses.workspace_for(address)
        if workspace is None:
            _refused.add(1, {"reason": "recipient"})
            return UNKNOWN_RECIPIENT
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            _refused.add(1, {"reason": "too_many_recipients"})
            return TOO_MANY_RECIPIENTS
        # One token per message and workspace, taken when its first recipient is accepted.
        if workspace not in self.addresses.by_workspace(envelope.rcpt_tos):
            wait = self.limiter.wait_time(workspace)
            if wait > 0:
                _refused.add(1, {"reason": "rate"})
                return RATE_LIMITED
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        grouped = self.addresses.by_workspace(envelope.rcpt_tos)
        try:
            for workspace, recipients in sorted(grouped.items()):
                await self.service.accept_email(workspace, delivered_copy(content, recipients), SOURCE)
                _accepted.add(1)
        except MessageSizeTooLargeError:
            _refused.add(1, {"reason": "too_large"})
            return TOO_LARGE
        except Exception as exc:
            # Nothing is lost: the MTA keeps the message and retries. A workspace that did get
            # it before the failure gets it again, which stores nothing new (same Message-ID).
            _refused.add(1, {"reason": "unavailable"})
            log.warning("SMTP message not taken by the broker; answered 451",
                        extra={"error": type(exc).__name__})
            return UNAVAILABLE
        return ACCEPTED

    async def handle_exception(self, error: Exception) -> str:
        """Anything unexpected is a temporary failure, without the details a 500 would give."""
        log.error("SMTP session failed", exc_info=error)
        _refused.add(1, {"reason": "unavailable"})
        return UNAVAILABLE


class _Session(SMTP):
    # RFC 5321 caps a line at 1000 octets, but badly wrapped mail is still mail: refusing it
    # (aiosmtpd's 500) would bounce a customer's message, so longer lines are taken too.
    line_length_limit = 64 * 1024


class SmtpListener:
    """The SMTP server on the service's event loop, started and stopped by its lifespan."""

    def __init__(self, service: IngestService, *, host: str, port: int, addresses: Mapping[str, str],
                 max_bytes: int, rate_per_second: float, burst: int) -> None:
        self.host = host
        self.port = port
        self.max_bytes = max_bytes
        self.handler = SmtpHandler(service, InboundAddresses(addresses), RateLimiter(rate_per_second, burst))
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _session(self) -> SMTP:
        protocol = _Session(self.handler, data_size_limit=self.max_bytes, enable_SMTPUTF8=True,
                        hostname=socket.gethostname(), ident="CRM ingest")
        self._sessions.add(protocol)
        return protocol

    async def start(self) -> None:
        logging.getLogger(_AIOSMTPD_LOGGER).setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._session, self.host, self.port)
        sockets: Any = self._server.sockets
        self.port = int(sockets[0].getsockname()[1])
        log.info("SMTP listener started", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        """Stop listening and drop open sessions: a message not answered yet is retried by its
        MTA, so nothing is lost."""
        if self._server is None:
            return
        self._server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await self._server.wait_closed()
        self._server = None
