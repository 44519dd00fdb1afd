"""The IMAP poller: new mail of one mailbox folder onto the raw topic, by UID.

The sync state (the folder's UIDVALIDITY and the last UID handled) lives in MongoDB and moves
on only after the broker has a message, one message at a time: a restart, a crash or a
network failure resumes after the last message the broker took, and never imports one twice.
When the server changes the folder's UIDVALIDITY (the old UIDs mean nothing any more), the
whole folder is imported again; that stores nothing new, as an interaction's id is derived
from the Message-ID (or, without one, from the unchanged bytes).

The poller only reads (``SELECT`` and ``BODY.PEEK[]``): flags, folders and messages stay as
they are. It waits with IDLE when the server has it, else sleeps ``poll_seconds``. A lease on
the state document lets one replica at a time poll a mailbox. A broken mailbox (refused login,
unreachable server) is logged and retried with backoff; it never stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aioimaplib  # type: ignore[import-untyped]
from aiokafka.errors import MessageSizeTooLargeError
from opentelemetry import metrics

from crm_ingest.channel_config import ImapMailbox
from crm_ingest.service import IngestService
from crm_ingest.store.mailboxes import MailboxState, MailboxStates

log = logging.getLogger(__name__)
_meter = metrics.get_meter("crm_ingest")
_imported = _meter.create_counter(
    "crm.ingest.email.imap.imported", unit="{message}",
    description="Messages the IMAP pollers appended to the raw topic")
_skipped = _meter.create_counter(
    "crm.ingest.email.imap.skipped", unit="{message}",
    description="Messages the IMAP pollers passed over for good, by reason: too_large")
_failures = _meter.create_counter(
    "crm.ingest.email.imap.failures", unit="{failure}",
    description="Failed IMAP syncs (refused login, unreachable server, ...), retried with backoff")

SOURCE = "email-imap"
TIMEOUT_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 900.0
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_FETCHED = re.compile(rb"\bUID (\d+)\b.*\bRFC822\.SIZE (\d+)|\bRFC822\.SIZE (\d+)\b.*\bUID (\d+)\b")


class ImapError(Exception):
    """The server refused a step (login, STARTTLS, SELECT, FETCH)."""


@dataclass(frozen=True)
class SyncResult:
    imported: int
    skipped: int
    uidvalidity: int
    last_uid: int


def _process_owner() -> str:
    # Stable across a restart in the same pod (same hostname, usually pid 1), so that a
    # restarted process takes its own lease back at once.
    return f"{socket.gethostname()}:{os.getpid()}"


class ImapPoller:
    def __init__(self, mailbox: ImapMailbox, service: IngestService, states: MailboxStates,
                 max_bytes: int, *, owner: str | None = None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.mailbox = mailbox
        self.service = service
        self.states = states
        self.max_bytes = max_bytes
        self.owner = owner or _process_owner()
        self.timeout = timeout
        # Long enough for a wait and a sync; every message imported renews it.
        self.lease_seconds = 2 * mailbox.poll_seconds + 60
        self._where = {"workspace_id": mailbox.workspace_id, "host": mailbox.host,
                       "folder": mailbox.folder}

    async def run(self) -> None:
        """Sync, wait (IDLE or sleep), sync again, until cancelled; errors back off."""
        # aioimaplib logs what it receives (message contents) at DEBUG, and unknown lines at INFO.
        logging.getLogger("aioimaplib").setLevel(logging.WARNING)
        failures = 0
        try:
            while True:
                try:
                    state = await self._claim()
                    if state is None:  # another replica polls this mailbox
                        await asyncio.sleep(self.mailbox.poll_seconds)
                        continue
                    async with self._session() as client:
                        while state is not None:
                            await self._sync(client, state)
                            failures = 0
                            await self._wait(client)
                            state = await self._claim()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    # Jitter keeps pollers of one broken server from retrying in step.
                    jitter = random.uniform(0.8, 1.2)  # noqa: S311 - not a secret
                    delay = min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** (failures - 1)) * jitter
                    _failures.add(1, {"error": type(exc).__name__})
                    log.warning("IMAP mailbox sync failed; retrying later",
                                extra={**self._where, "error": _describe(exc),
                                       "retry_in_seconds": round(delay, 1)})
                    await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.states.release(self.mailbox.key, self.owner), 5)

    async def sync_once(self) -> SyncResult | None:
        """One sync on a connection of its own; None while another owner holds the lease."""
        state = await self._claim()
        if state is None:
            return None
        async with self._session() as client:
            return await self._sync(client, state)

    async def release(self) -> None:
        await self.states.release(self.mailbox.key, self.owner)

    async def _claim(self) -> MailboxState | None:
        return await self.states.claim(self.mailbox.key, self.mailbox.workspace_id, self.owner,
                                       self.lease_seconds)

    async def _sync(self, client: Any, state: MailboxState) -> SyncResult:
        response = await client.select(_quoted(self.mailbox.folder))
        if response.result != "OK":
            raise ImapError("SELECT refused")
        uidvalidity = _first_int(_UIDVALIDITY, response.lines)
        if uidvalidity is None:
            raise ImapError("SELECT answered without UIDVALIDITY")
        uidnext = _first_int(_UIDNEXT, response.lines)
        last_uid = state.last_uid
        if state.uidvalidity != uidvalidity:
            if state.uidvalidity:
                log.warning("IMAP folder UIDVALIDITY changed: importing it again (stores nothing twice)",
                            extra=self._where)
            last_uid = uidnext - 1 if (self.mailbox.skip_existing and not state.uidvalidity
                                       and uidnext) else 0
            if not await self._advance(uidvalidity, last_uid):
                return SyncResult(0, 0, uidvalidity, last_uid)
        if uidnext is not None and uidnext <= last_uid + 1:
            return SyncResult(0, 0, uidvalidity, last_uid)  # nothing new
        imported = skipped = 0
        for uid, size in await self._new_messages(client, last_uid):
            raw = None if size > self.max_bytes else await self._fetch(client, uid)
            if raw is None:
                skipped += 1  # too large (or gone since listed): never importable
                if size > self.max_bytes:
                    _skipped.add(1, {"reason": "too_large"})
                    log.warning("IMAP message over the size limit passed over",
                                extra={**self._where, "uid": uid, "size": size})
            else:
                try:
                    await self.service.accept_email(self.mailbox.workspace_id, raw, SOURCE)
                except MessageSizeTooLargeError:
                    skipped += 1
                    _skipped.add(1, {"reason": "too_large"})
                    log.warning("IMAP message larger than the event stream takes passed over",
                                extra={**self._where, "uid": uid, "size": size})
                else:
                    imported += 1
                    _imported.add(1)
            last_uid = uid
            if not await self._advance(uidvalidity, last_uid):
                break
        return SyncResult(imported, skipped, uidvalidity, last_uid)

    async def _advance(self, uidvalidity: int, last_uid: int) -> bool:
        kept = await self.states.advance(self.mailbox.key, self.owner, MailboxState(uidvalidity, last_uid),
                                         self.lease_seconds)
        if not kept:
            log.warning("IMAP mailbox lease lost to another poller; stopping this sync", extra=self._where)
        return kept

    async def _new_messages(self, client: Any, last_uid: int) -> list[tuple[int, int]]:
        """(UID, size) of the messages after ``last_uid``, oldest first."""
        response = await client.uid("fetch", f"{last_uid + 1}:*", "(UID RFC822.SIZE)")
        if response.result != "OK":
            raise ImapError("UID FETCH of the new messages refused")
        found: dict[int, int] = {}
        for line in response.lines:
            match = _FETCHED.search(bytes(line))
            if match:
                uid, size = (match[1], match[2]) if match[1] else (match[4], match[3])
                # "n:*" also names the last message when every UID is below n.
                if int(uid) > last_uid:
                    found[int(uid)] = int(size)
        return sorted(found.items())

    async def _fetch(self, client: Any, uid: int) -> bytes | None:
        response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
        if response.result != "OK":
            raise ImapError("UID FETCH of a message refused")
        for line in response.lines:
            if isinstance(line, bytearray):  # aioimaplib hands the literal (the message) so
                return bytes(line)
        return None  # expunged since it was listed

    async def _wait(self, client: Any) -> None:
        seconds = self.mailbox.poll_seconds
        if not (self.mailbox.idle and client.has_capability("IDLE")):
            await asyncio.sleep(seconds)
            return
        idle = await client.idle_start(timeout=seconds)
        try:
            # Returns on the server's first news (new mail, flags) or when the timeout ends IDLE.
            await client.wait_server_push(timeout=seconds + self.timeout)
        finally:
            client.idle_done()
            await asyncio.wait_for(idle, self.timeout)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        client = await self._connect()
        try:
            yield client
        finally:
            await _close(client, self.timeout)

    async def _connect(self) -> Any:
        mailbox = self.mailbox
        context = None
        if mailbox.tls != "none":
            context = ssl.create_default_context(cafile=mailbox.ca_file)
        if mailbox.tls == "tls":
            client = aioimaplib.IMAP4_SSL(mailbox.host, mailbox.port_number, timeout=self.timeout,
                                          ssl_context=context)
        else:
            client = aioimaplib.IMAP4(mailbox.host, mailbox.port_number, timeout=self.timeout)
        try:
            await client.wait_hello_from_server()
            if context is not None and mailbox.tls == "starttls":
                await _starttls(client, context, mailbox.host, self.timeout)
            response = await client.login(_quoted(mailbox.username), mailbox.password.get_secret_value())
            if response.result != "OK":
                raise ImapError("login refused")
        except BaseException:
            await _close(client, self.timeout)
            raise
        return client


async def _starttls(client: Any, context: ssl.SSLContext, host: str, timeout: float) -> None:
    """Upgrade the connection before anything else is sent (aioimaplib has no STARTTLS)."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError("the server does not offer STARTTLS")
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    response = await asyncio.wait_for(protocol.execute(command), timeout)
    if response.result != "OK":
        raise ImapError("STARTTLS refused")
    loop = asyncio.get_running_loop()
    protocol.transport = await asyncio.wait_for(
        loop.start_tls(protocol.transport, protocol, context, server_hostname=host), timeout)
    # What the server offered before TLS may have changed (and must not be trusted).
    await asyncio.wait_for(protocol.capability(), timeout)


async def _close(client: Any, timeout: float) -> None:
    protocol = client.protocol
    with contextlib.suppress(Exception):
        if protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED):
            await asyncio.wait_for(client.logout(), min(timeout, 5.0))
    if protocol.transport is not None:
        protocol.transport.close()


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _first_int(pattern: re.Pattern[bytes], lines: list[Any]) -> int | None:
    for line in lines:
        match = pattern.search(bytes(line))
        if match:
            return int(match[1])
    return None


def _describe(exc: Exception) -> str:
    """What a log may say about a failure: our own reasons and network errors, else the type."""
    if isinstance(exc, (ImapError, OSError)):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
