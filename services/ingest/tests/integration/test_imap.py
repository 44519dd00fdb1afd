"""The IMAP poller against a real dovecot: UID-based sync state in MongoDB, each message
imported once, across restarts and a changed UIDVALIDITY."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from crm_ingest.adapters import EmailIn, ImapPoller
from crm_ingest.adapters.imap import ImapError
from crm_ingest.channel_config import ImapMailbox
from crm_ingest.domain.interaction import interaction_id
from crm_ingest.service import IngestService
from crm_ingest.store.mailboxes import MailboxStates
from crmkit.ids import uuid7
from crmkit.testing import eventually, free_port

from .conftest import WORKSPACE, Platform
from .dovecot import Dovecot, running_dovecot

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def account(dovecot: Dovecot) -> tuple[str, str]:
    """A mailbox of the test's own."""
    return f"user-{uuid7().hex[-12:]}", dovecot.password


def mailbox_for(dovecot: Dovecot, account: tuple[str, str], **changes: Any) -> ImapMailbox:
    fields: dict[str, Any] = {"host": dovecot.host, "port": dovecot.port, "tls": "none",
                              "username": account[0], "password": account[1], "workspace_id": WORKSPACE,
                              "poll_seconds": 1, **changes}
    return ImapMailbox.model_validate(fields)


def poller(platform: Platform, mailbox: ImapMailbox, **options: Any) -> ImapPoller:
    service: IngestService = platform.ingest_app.state.service
    return ImapPoller(mailbox, service, MailboxStates(service.db), options.pop("max_bytes", LIMIT), **options)


def email(message_id: str, body: str = "Body text") -> bytes:
    return (f"From: Mail Box <boxed@example.com>\r\nTo: support@acme.example\r\nSubject: Polled\r\n"
            f"Message-ID: <{message_id}>\r\n\r\n{body}\r\n").encode()


def message_ids(count: int) -> list[str]:
    return [f"{uuid7()}@example.com" for _ in range(count)]


async def test_each_message_is_imported_once_and_a_new_poller_resumes_from_the_stored_state(
        platform: Platform, dovecot: Dovecot, account: tuple[str, str]) -> None:
    first = message_ids(3)
    await dovecot.append(*account, *(email(m) for m in first))
    mailbox = mailbox_for(dovecot, account)
    result = await poller(platform, mailbox).sync_once()
    assert result is not None
    assert (result.imported, result.skipped, result.last_uid) == (3, 0, 3)
    for message_id in first:
        item = await platform.wait_stored(message_id)
        assert (item["sender"], item["subject"]) == ("boxed@example.com", "Polled")
    again = await poller(platform, mailbox).sync_once()
    assert again is not None
    assert again.imported == 0
    # A restart: a new poller (another process) knows only what MongoDB says.
    later = message_ids(2)
    await dovecot.append(*account, *(email(m) for m in later))
    restarted = poller(platform, mailbox, owner="another-process")
    await poller(platform, mailbox).release()
    resumed = await restarted.sync_once()
    assert resumed is not None
    assert (resumed.imported, resumed.last_uid) == (2, 5)
    for message_id in later:
        await platform.wait_stored(message_id)


async def test_a_changed_uidvalidity_imports_the_folder_again_without_duplicate_interactions(
        platform: Platform, dovecot: Dovecot, account: tuple[str, str]) -> None:
    ids = message_ids(2)
    await dovecot.append(*account, *(email(m) for m in ids))
    mailbox = mailbox_for(dovecot, account)
    assert (await poller(platform, mailbox).sync_once()).imported == 2  # type: ignore[union-attr]
    for message_id in ids:
        await platform.wait_stored(message_id)
    consumer = platform.ingest_app.state.runtime.consumers[0]
    handled_before = consumer.processed
    dovecot.set_uidvalidity(account[0], 4242)
    again = await poller(platform, mailbox).sync_once()
    assert again is not None
    assert (again.imported, again.uidvalidity) == (2, 4242)

    async def both_handled() -> bool:
        return bool(consumer.processed >= handled_before + 2)

    await eventually(both_handled, what="the re-imported messages handled")
    interactions = platform.ingest_app.state.service.db.db.interactions
    for message_id in ids:
        iid = interaction_id(WORKSPACE, "email", message_id)
        assert await interactions.count_documents({"workspace_id": WORKSPACE, "_id": iid}) == 1


async def test_a_message_over_the_limit_is_passed_over_for_good(
        platform: Platform, dovecot: Dovecot, account: tuple[str, str]) -> None:
    big, small = message_ids(2)
    await dovecot.append(*account, email(big, body="x" * 2048), email(small))
    mailbox = mailbox_for(dovecot, account)
    result = await poller(platform, mailbox, max_bytes=1024).sync_once()
    assert result is not None
    assert (result.imported, result.skipped, result.last_uid) == (1, 1, 2)
    await platform.wait_stored(small)
    assert (await platform.interaction(big)).status_code == 404


async def test_a_mailbox_leased_to_another_poller_is_left_alone(
        platform: Platform, dovecot: Dovecot, account: tuple[str, str]) -> None:
    mailbox = mailbox_for(dovecot, account)
    holder = poller(platform, mailbox, owner="replica-a")
    assert await holder.sync_once() is not None
    assert await poller(platform, mailbox, owner="replica-b").sync_once() is None
    await holder.release()
    assert await poller(platform, mailbox, owner="replica-b").sync_once() is not None


@pytest.mark.parametrize("tls", ["tls", "starttls"])
async def test_tls_and_starttls_connections_verify_the_server(
        platform: Platform, dovecot: Dovecot, account: tuple[str, str], tls: str) -> None:
    [message_id] = message_ids(1)
    await dovecot.append(*account, email(message_id))
    port = dovecot.tls_port if tls == "tls" else dovecot.port
    mailbox = mailbox_for(dovecot, account, tls=tls, port=port, ca_file=str(dovecot.ca_file))
    result = await poller(platform, mailbox).sync_once()
    assert result is not None
    assert result.imported == 1
    await platform.wait_stored(message_id)
    # Without the test CA, the self-signed certificate is refused.
    untrusted = mailbox_for(dovecot, account, tls=tls, port=port, workspace_id="ws-untrusted")
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        await poller(platform, untrusted).sync_once()


async def test_the_service_polls_its_mailboxes_and_new_mail_arrives_through_idle(
        platform: Platform, dovecot: Dovecot, account: tuple[str, str]) -> None:
    mailbox = mailbox_for(dovecot, account, poll_seconds=60)  # IDLE: no waiting for the next poll
    settings = platform.ingest_app.state.settings.model_copy(
        update={"imap_mailboxes": [mailbox], "smtp_inbound_addresses": {}})
    service: IngestService = platform.ingest_app.state.service
    async with EmailIn(settings) as email_in:
        await email_in.start(service, service.db)
        states = service.db.db.mailbox_state

        async def synced() -> bool:
            return await states.find_one({"_id": mailbox.key, "uidvalidity": {"$gt": 0}}) is not None

        await eventually(synced, timeout=10, what="the first sync")
        [message_id] = message_ids(1)
        await dovecot.append(*account, email(message_id))
        await eventually(lambda: _stored(platform, message_id), timeout=10, what="the message via IDLE")
    state = await states.find_one({"_id": mailbox.key})
    assert state is not None
    assert (state["last_uid"], state["owner"]) == (1, None)  # the lease is given up at stop


async def test_a_broken_mailbox_is_retried_with_backoff_and_never_stops_the_poller(
        platform: Platform, dovecot: Dovecot, account: tuple[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    # (Last in the module: dovecot delays the logins from an address after a refused one.)
    refused = mailbox_for(dovecot, account, password="not-the-password")
    with pytest.raises(ImapError, match="login refused"):
        await poller(platform, refused).sync_once()
    unreachable = mailbox_for(dovecot, account, port=free_port())
    task = asyncio.create_task(poller(platform, unreachable).run())
    try:
        with caplog.at_level(logging.WARNING, logger="crm_ingest.adapters.imap"):
            async def logged() -> bool:
                return any("sync failed" in r.getMessage() for r in caplog.records)

            await eventually(logged, timeout=10, what="the failure logged")
        assert not task.done()
        errors = [getattr(r, "error", "") for r in caplog.records]
        assert any(e.startswith("ConnectionRefusedError") for e in errors)
        assert all(dovecot.password not in e for e in errors)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _stored(platform: Platform, message_id: str) -> bool:
    return (await platform.interaction(message_id)).status_code == 200
