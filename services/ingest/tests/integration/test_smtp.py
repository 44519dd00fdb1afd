"""The SMTP listener, driven by real SMTP clients, from the SMTP dialogue to the stored interaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from crm_ingest.adapters import SmtpListener
from crm_ingest.domain.interaction import interaction_id
from crm_ingest.service import IngestService
from crmkit.ids import uuid7
from crmkit.kafka import Producer
from crmkit.testing import bearer, eventually, token_for

from .conftest import Platform

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024  # the platform's INGEST_MAX_EMAIL_BYTES, hence the SMTP limit


def email(message_id: str, to: str = "support@acme.example", sender: str = "someone@example.com",
          body: str = "Body text") -> bytes:
    return (f"From: Some One <{sender}>\r\nTo: {to}\r\nSubject: By SMTP\r\n"
            f"Message-ID: <{message_id}>\r\n\r\n{body}\r\n").encode()


def port_of(platform: Platform) -> int:
    return int(platform.ingest_app.state.settings.smtp_port)


async def send(port: int, message: bytes, recipients: list[str],
               sender: str = "someone@example.com") -> tuple[dict[str, object], str]:
    return await aiosmtplib.send(message, sender=sender, recipients=recipients,
                                 hostname="127.0.0.1", port=port, timeout=30)


@pytest.fixture
async def listener(platform: Platform) -> AsyncIterator[SmtpListener]:
    """A listener of the test's own, on a free port, with a burst of one message per workspace."""
    smtp = SmtpListener(platform.ingest_app.state.service, host="127.0.0.1", port=0,
                        addresses={"support@acme.example": "ws-ingest"}, max_bytes=LIMIT,
                        rate_per_second=0.01, burst=1)
    await smtp.start()
    yield smtp
    await smtp.stop()


async def test_accepted_mail_becomes_an_interaction_of_the_recipients_workspace(platform: Platform) -> None:
    message_id = f"{uuid7()}@example.com"
    long_line = "a line longer than RFC 5321 allows " * 100
    errors, answer = await send(port_of(platform), email(message_id, body=long_line),
                                ["support@acme.example"])
    assert errors == {}
    assert answer.startswith("2.0.0 OK")
    item = await platform.wait_stored(message_id)
    assert (item["sender"], item["subject"]) == ("someone@example.com", "By SMTP")
    assert item["text"].strip() == long_line.strip()


async def test_a_whole_domain_can_be_mapped_to_a_workspace(platform: Platform) -> None:
    message_id = f"{uuid7()}@example.com"
    await send(port_of(platform), email(message_id, to="Billing@Help.Acme.Example"),
               ["Billing@Help.Acme.Example"])
    await platform.wait_stored(message_id)


async def test_a_recipient_outside_the_allow_list_is_refused_with_550(platform: Platform) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(port_of(platform), email(f"{uuid7()}@x", to="someone@elsewhere.example"),
                   ["someone@elsewhere.example"])
    assert [r.code for r in refused.value.recipients] == [550]
    # One good recipient is enough for the message to be taken; the other one is refused.
    message_id = f"{uuid7()}@example.com"
    errors, _ = await send(port_of(platform), email(message_id),
                           ["nobody@acme.example", "support@acme.example"])
    assert errors["nobody@acme.example"][0] == 550  # type: ignore[index]
    await platform.wait_stored(message_id)


async def test_a_message_over_the_limit_is_refused_with_552_whether_announced_or_not(
        platform: Platform) -> None:
    big = email(f"{uuid7()}@x", body=("x" * 76 + "\r\n") * (LIMIT // 76))
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port_of(platform), timeout=30)
    async with client:
        await client.ehlo()
        assert client.supports_extension("size")
        assert int(client.esmtp_extensions["size"]) == LIMIT
        # Announced with SIZE= (as MTAs do): refused at MAIL FROM.
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as announced:
            await client.mail("someone@example.com", options=[f"SIZE={len(big)}"])
        assert announced.value.code == 552
        await client.rset()
        # Not announced: read to its end, then refused.
        await client.mail("someone@example.com")
        await client.rcpt("support@acme.example")
        with pytest.raises(aiosmtplib.SMTPDataError) as sent:
            await client.data(big)
        assert sent.value.code == 552


async def test_a_message_to_two_workspaces_is_accepted_once_for_each(platform: Platform) -> None:
    message_id = f"{uuid7()}@example.com"
    both = ["support@acme.example", "sales@other.example"]
    errors, _ = await send(port_of(platform), email(message_id, to=", ".join(both)), both)
    assert errors == {}
    await platform.wait_stored(message_id)
    other = token_for(platform.infra, "ws-ingest-other")
    theirs = interaction_id("ws-ingest-other", "email", message_id)

    async def stored_in_the_other_workspace() -> bool:
        response = await platform.ingest.get(f"/v1/interactions/{theirs}", headers=bearer(other))
        return response.status_code == 200

    await eventually(stored_in_the_other_workspace, what="the copy of the other workspace")


async def test_a_workspace_over_its_rate_gets_a_temporary_451(platform: Platform,
                                                              listener: SmtpListener) -> None:
    first = f"{uuid7()}@example.com"
    await send(listener.port, email(first), ["support@acme.example"])
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(listener.port, email(f"{uuid7()}@example.com"), ["support@acme.example"])
    assert [r.code for r in refused.value.recipients] == [451]
    await platform.wait_stored(first)


async def test_while_the_broker_does_not_take_the_message_the_answer_is_a_temporary_451(
        platform: Platform) -> None:
    service: IngestService = platform.ingest_app.state.service
    producer = Producer(platform.infra, client_id="tests-stopped")
    await producer.start()
    await producer.stop()  # every publish fails from now on, as with the broker gone
    smtp = SmtpListener(IngestService(service.db, producer, service.contacts), host="127.0.0.1", port=0,
                        addresses={"support@acme.example": "ws-ingest"}, max_bytes=LIMIT,
                        rate_per_second=10, burst=10)
    await smtp.start()
    try:
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await send(smtp.port, email(f"{uuid7()}@example.com"), ["support@acme.example"])
        assert failed.value.code == 451
    finally:
        await smtp.stop()
