"""Outbound delivery end to end: OutboundMessages on crm.outbound.v1 reach a local SMTP relay and
a local stand-in for Meta, Telegram and Twilio; what was sent is stored and reported on
crm.interactions.v1, failures for good are reported and dead-lettered, outages are waited for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest

from crm.ingest.v1 import events_pb2
from crm_ingest.domain.events import DELIVERY_UPDATED, INTERACTION_RECORDED
from crm_ingest.domain.interaction import interaction_id
from crm_ingest.outbound.base import DeliveryFailed, OutboundRequest, Sent
from crm_ingest.outbound.email import EmailDelivery, SmtpRelay, message_id_for
from crm_ingest.outbound.worker import OutboundService, Requested
from crm_ingest.wire import outbound_requested
from crmkit.ids import uuid7
from crmkit.kafka import Envelope, PermanentError, TransientError
from crmkit.testing import eventually, publish
from crmkit.topics import INTERACTIONS, OUTBOUND, dlq

from .conftest import WORKSPACE, Platform
from .sinks import (
    BOT_TOKEN,
    PAGE_ID,
    SMTP_PORT,
    TWILIO_FROM,
    TWILIO_SID,
    WHATSAPP_SENDER_ID,
    Providers,
    SmtpSink,
    TopicReader,
    running_providers,
)

pytestmark = pytest.mark.integration

KINDS = {"email": "email", "whatsapp": "whatsapp", "messenger": "messenger", "instagram": "instagram",
         "telegram": "telegram", "sms": "phone", "commerce": "email"}


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    relay = SmtpSink()
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
async def providers() -> AsyncIterator[Providers]:
    async with running_providers() as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
async def interactions(platform: Platform) -> AsyncIterator[TopicReader]:
    reader = TopicReader(platform.infra, INTERACTIONS)
    await reader.start()
    yield reader
    await reader.stop()


@pytest.fixture(scope="module")
async def dead_letters(platform: Platform) -> AsyncIterator[TopicReader]:
    reader = TopicReader(platform.infra, dlq(OUTBOUND))
    await reader.start()
    yield reader
    await reader.stop()


def outbound(channel: str, recipient: str, **fields: Any) -> OutboundRequest:
    values: dict[str, Any] = {
        "id": f"reply-{uuid7()}", "workspace_id": WORKSPACE, "contact_id": str(uuid7()), "channel": channel,
        "recipient_kind": KINDS[channel], "recipient": recipient, "text": "Your order has shipped.",
        "origin": "ticketing", "reference": f"ticket-{uuid7()}"}
    values.update(fields)
    return OutboundRequest(**values)


async def request(platform: Platform, *requests: OutboundRequest) -> list[str]:
    """Publish the requests as a requester does; their event ids."""
    events = [outbound_requested(r) for r in requests]
    await publish(platform.infra, events)
    return [e.envelope.id for e in events]


def update_of(envelope: Envelope) -> events_pb2.DeliveryUpdated | None:
    if envelope.type != DELIVERY_UPDATED:
        return None
    return events_pb2.DeliveryUpdated.FromString(envelope.data)


async def updates(reader: TopicReader, outbound_id: str, count: int = 1) -> list[events_pb2.DeliveryUpdated]:
    def match(envelope: Envelope, _: dict[str, bytes]) -> bool:
        update = update_of(envelope)
        return update is not None and update.outbound_id == outbound_id

    found = await reader.wait_for(match, count=count, what=f"DeliveryUpdated for {outbound_id}")
    return [events_pb2.DeliveryUpdated.FromString(e.data) for e, _ in found]


async def recorded(reader: TopicReader, iid: str) -> events_pb2.InteractionRecorded:
    def match(envelope: Envelope, _: dict[str, bytes]) -> bool:
        return envelope.type == INTERACTION_RECORDED and events_pb2.InteractionRecorded.FromString(
            envelope.data).interaction.id == iid

    found = await reader.wait_for(match, what=f"InteractionRecorded {iid}")
    return events_pb2.InteractionRecorded.FromString(found[0][0].data)


async def dead_lettered(reader: TopicReader, event_id: str) -> dict[str, bytes]:
    found = await reader.wait_for(lambda e, _: e.id == event_id, what=f"{event_id} in the DLQ")
    return found[0][1]


def parsed(content: bytes) -> Message:
    return message_from_bytes(content, policy=policy.default)


async def outbound_state(platform: Platform, req: OutboundRequest) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await platform.ingest_app.state.outbound.db.db.outbound.find_one(
        {"workspace_id": req.workspace_id, "request_id": req.id})
    return doc


async def test_an_email_reply_reaches_the_relay_threaded_and_is_stored_and_reported(
    platform: Platform, sink: SmtpSink, interactions: TopicReader,
) -> None:
    to, cc = f"ada-{uuid7().hex[:8]}@example.com", "ops@example.com"
    req = outbound("email", to, cc=(cc,), subject="Re: Where is my order?", html="<p>Shipped.</p>",
                   in_reply_to="q2@mail.example.com", references=("q1@mail.example.com",),
                   headers={"List-Unsubscribe": "<https://acme.example/u/1>",
                            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    await request(platform, req)
    [update] = await updates(interactions, req.id)
    message_id = message_id_for(WORKSPACE, req.id, "acme.example")
    iid = interaction_id(WORKSPACE, "email", message_id)
    assert (update.status, update.interaction_id, update.contact_id) == ("sent", iid, req.contact_id)
    assert (update.origin, update.reference, update.error) == ("ticketing", req.reference, "")

    [mail] = sink.with_message_id(message_id)
    assert mail.sender == "support@acme.example"
    assert sorted(mail.recipients) == sorted([to, cc])
    email = parsed(mail.content)
    assert email["From"] == "Acme Support <support@acme.example>"
    assert (email["To"], email["Cc"], email["Subject"]) == (to, cc, "Re: Where is my order?")
    assert email["Message-ID"] == f"<{message_id}>"
    assert email["In-Reply-To"] == "<q2@mail.example.com>"
    assert email["References"] == "<q1@mail.example.com> <q2@mail.example.com>"
    assert email["List-Unsubscribe"] == "<https://acme.example/u/1>"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["Date"]

    event = await recorded(interactions, iid)
    assert event.interaction.direction == 2  # DIRECTION_OUTBOUND
    assert event.interaction.outbound_id == req.id
    stored = await platform.wait_stored(message_id, "email")
    assert stored["direction"] == "outbound"
    assert stored["contact_id"] == req.contact_id
    assert stored["sender"] == "support@acme.example"
    assert stored["recipients"] == [to, cc]
    assert (stored["message_id"], stored["in_reply_to"]) == (message_id, "q2@mail.example.com")
    assert stored["outbound_id"] == req.id
    assert stored["has_html"] is True


async def test_the_same_request_twice_is_delivered_once(
    platform: Platform, sink: SmtpSink, interactions: TopicReader,
) -> None:
    req = outbound("email", f"twice-{uuid7().hex[:8]}@example.com", subject="Once")
    consumer = platform.ingest_app.state.runtime.consumers[0]
    before = consumer.processed
    await request(platform, req, req)  # two events, one request id

    async def both_handled() -> bool:
        return bool(consumer.processed >= before + 2)

    await eventually(both_handled, what="both copies handled")
    assert len(sink.with_message_id(message_id_for(WORKSPACE, req.id, "acme.example"))) == 1
    await updates(interactions, req.id)
    await interactions.settle()
    assert len(await updates(interactions, req.id)) == 1
    state = await outbound_state(platform, req)
    assert state is not None
    assert (state["state"], state["attempts"]) == ("sent", 1)


async def test_each_provider_is_called_in_its_own_shape_and_what_it_took_is_stored(
    platform: Platform, providers: Providers, interactions: TopicReader,
) -> None:
    chat = str(700000 + uuid7().int % 100000)
    requests = {
        "whatsapp": outbound("whatsapp", "+15551230001", in_reply_to="wamid.INBOUND1"),
        "messenger": outbound("messenger", "24680001"),
        "instagram": outbound("instagram", "13570001"),
        "telegram": outbound("telegram", chat, in_reply_to=f"{chat}:5"),
        "sms": outbound("sms", "+15557650001"),
    }
    await request(platform, *requests.values())
    sent = {channel: (await updates(interactions, r.id))[0] for channel, r in requests.items()}
    assert {u.status for u in sent.values()} == {"sent"}

    [whatsapp] = providers.to("+15551230001".removeprefix("+"))
    assert whatsapp.path == f"/v23.0/{WHATSAPP_SENDER_ID}/messages"
    assert whatsapp.headers["authorization"] == "Bearer wa-token"
    assert whatsapp.body == {"messaging_product": "whatsapp", "recipient_type": "individual",
                             "to": "15551230001", "type": "text",
                             "text": {"body": "Your order has shipped.", "preview_url": False},
                             "context": {"message_id": "wamid.INBOUND1"}}
    [messenger] = providers.to("24680001")
    assert (messenger.channel, messenger.path) == ("messenger", "/v23.0/me/messages")
    assert messenger.body == {"recipient": {"id": "24680001"}, "messaging_type": "RESPONSE",
                              "message": {"text": "Your order has shipped."}}
    [instagram] = providers.to("13570001")
    assert instagram.headers["authorization"] == "Bearer ig-token"
    [telegram] = providers.to(chat)
    assert telegram.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert telegram.body == {"chat_id": chat, "text": "Your order has shipped.",
                             "reply_parameters": {"message_id": 5, "allow_sending_without_reply": True}}
    [sms] = providers.to("+15557650001")
    assert sms.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    # Twilio posts the message's statuses to ingest's SMS webhook, at its public URL.
    assert sms.body == {"To": "+15557650001", "From": TWILIO_FROM, "Body": "Your order has shipped.",
                        "StatusCallback": "https://crm.example.com/v1/channels/sms/webhook"}
    assert sms.headers["authorization"].startswith("Basic ")

    # Each stored under the provider's id, where the provider's delivery statuses will find it.
    telegram_item = await recorded(interactions, sent["telegram"].interaction_id)
    assert telegram_item.interaction.thread.message_id.startswith(f"{chat}:")
    for channel, update in sent.items():
        item = (await recorded(interactions, update.interaction_id)).interaction
        assert update.interaction_id == interaction_id(WORKSPACE, channel, item.thread.message_id)
        assert item.outbound_id == requests[channel].id
    messenger_item = (await recorded(interactions, sent["messenger"].interaction_id)).interaction
    assert messenger_item.sender.value == PAGE_ID


async def test_a_provider_refusal_is_reported_failed_and_dead_lettered_with_its_reason(
    platform: Platform, providers: Providers, interactions: TopicReader, dead_letters: TopicReader,
) -> None:
    providers.failures["15551230400"] = [400]
    req = outbound("whatsapp", "+15551230400")
    [event_id] = await request(platform, req)
    [update] = await updates(interactions, req.id)
    reason = "WhatsApp answered 400: 100: (#100) Invalid parameter"
    assert (update.status, update.error, update.interaction_id) == ("failed", reason, "")
    assert (update.origin, update.reference) == ("ticketing", req.reference)
    headers = await dead_lettered(dead_letters, event_id)
    assert headers["dlq_reason"] == f"PermanentError: {reason}".encode()
    assert headers["dlq_topic"] == OUTBOUND.encode()
    assert len(providers.to("15551230400")) == 1  # never retried
    state = await outbound_state(platform, req)
    assert state is not None
    assert (state["state"], state["last_error"]) == ("failed", reason)


@pytest.mark.parametrize(("channel", "recipient", "reason"), [
    ("email", "reject-me@example.com", "the relay refused every recipient: 550 5.1.1 No such user here"),
    ("commerce", "someone@example.com", "no delivery configured for channel commerce"),
    ("sms", "+15557650002", "no SMS provider sender configured for this workspace"),
], ids=["smtp-550", "no-delivery", "no-sender"])
async def test_what_can_never_be_sent_fails_for_good(
    platform: Platform, sink: SmtpSink, interactions: TopicReader, dead_letters: TopicReader,
    channel: str, recipient: str, reason: str,
) -> None:
    req = outbound(channel, recipient, workspace_id="ws-ingest-unconfigured") if channel == "sms" else (
        outbound(channel, recipient))
    [event_id] = await request(platform, req)
    [update] = await updates(interactions, req.id)
    assert (update.status, update.error) == ("failed", reason)
    assert (await dead_lettered(dead_letters, event_id))["dlq_reason"] == f"PermanentError: {reason}".encode()


async def test_a_provider_outage_is_retried_and_the_message_delivered_once(
    platform: Platform, providers: Providers, interactions: TopicReader,
) -> None:
    providers.failures["+15557650503"] = [503, 429]
    req = outbound("sms", "+15557650503")
    await request(platform, req)
    [update] = await updates(interactions, req.id)
    assert update.status == "sent"
    assert len(providers.to("+15557650503")) == 3
    await interactions.settle()
    assert len(await updates(interactions, req.id)) == 1
    state = await outbound_state(platform, req)
    assert state is not None
    assert (state["state"], state["attempts"]) == ("sent", 3)


async def test_a_relay_that_is_down_is_waited_for_then_delivered(
    platform: Platform, sink: SmtpSink, interactions: TopicReader,
) -> None:
    sink.stop()
    req = outbound("email", f"patient-{uuid7().hex[:8]}@example.com", subject="Eventually")
    try:
        await request(platform, req)

        async def retried() -> bool:
            state = await outbound_state(platform, req)
            return state is not None and state["attempts"] >= 2

        await eventually(retried, what="attempts while the relay is down")
        state = await outbound_state(platform, req)
        assert state is not None
        assert state["state"] == "pending"
        assert state["last_error"] == "SMTP relay unreachable: SMTPConnectError"
    finally:
        sink.start()
    [update] = await updates(interactions, req.id)
    assert update.status == "sent"
    assert len(sink.with_message_id(message_id_for(WORKSPACE, req.id, "acme.example"))) == 1


async def test_an_email_sent_again_after_a_crash_is_the_same_message_and_interaction(
    platform: Platform, sink: SmtpSink, interactions: TopicReader,
) -> None:
    req = outbound("email", f"crash-{uuid7().hex[:8]}@example.com", subject="Sent before the crash")
    # The relay took it, then the worker died before recording it: the record comes again.
    relay = EmailDelivery(SmtpRelay("127.0.0.1", SMTP_PORT, tls="none", timeout=5),
                          {WORKSPACE: "Acme Support <support@acme.example>"})
    first = await relay.send(req)
    await request(platform, req)
    [update] = await updates(interactions, req.id)
    assert update.interaction_id == interaction_id(WORKSPACE, "email", first.provider_message_id)
    copies = sink.with_message_id(first.provider_message_id)
    assert len(copies) == 2  # the person's mail client shows one: the same Message-ID
    stored = await platform.wait_stored(first.provider_message_id, "email")
    assert stored["outbound_id"] == req.id


class Down:
    channel = "sms"

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: OutboundRequest) -> Sent:
        self.calls += 1
        raise DeliveryFailed("SMS provider answered 503: Service Unavailable", permanent=False)


async def test_a_transient_failure_gives_up_after_the_configured_time(
    platform: Platform, interactions: TopicReader,
) -> None:
    db = platform.ingest_app.state.outbound.db
    down = Down()
    req = outbound("sms", "+15557650999")
    patient = OutboundService(db, {"sms": down}, give_up_after=timedelta(hours=1))
    with pytest.raises(TransientError):
        await patient.deliver(Requested(req))
    impatient = OutboundService(db, {"sms": down}, give_up_after=timedelta(0))
    reason = "gave up after 2 attempts: SMS provider answered 503: Service Unavailable"
    with pytest.raises(PermanentError, match=reason):
        await impatient.deliver(Requested(req))
    [update] = await updates(interactions, req.id)
    assert (update.status, update.error) == ("failed", reason)
    # Failed is final: the same request again is dead-lettered, not sent nor reported again.
    with pytest.raises(PermanentError, match=reason):
        await patient.deliver(Requested(req))
    assert down.calls == 2
