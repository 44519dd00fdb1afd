"""The sender hands each batch's messages to the broker itself, after the batch's transaction
(real MongoDB; the broker is a stand-in that can fail): a batch committed but never
acknowledged is handed over again by the next pass under the same send ids, nobody gets a
second send, and a message the broker can never take fails its send instead of the campaign."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from crm.ingest.v1 import outbound_pb2
from crm_campaigns.domain.model import Audience, Campaign, Template
from crm_campaigns.service.sender import Sender
from crm_campaigns.store import campaigns as store
from crm_campaigns.store.templates import insert_template
from crm_campaigns.wire import Recipient
from crmkit.ids import uuid7
from crmkit.kafka import Event
from crmkit.kafka.producer import Producer
from crmkit.mongo import MongoDatabase, create_client
from crmkit.settings import InfraSettings

pytestmark = pytest.mark.integration


class Broker(Producer):
    """Takes ``capacity`` messages, then fails like a broker gone away; ``too_large`` are
    refused as a real broker refuses a record above its limit."""

    def __init__(self, capacity: int = 1_000_000, too_large: Sequence[str] = ()) -> None:
        self.capacity = capacity
        self.too_large = set(too_large)
        self.events: list[Event] = []

    async def send_event(self, event: Event) -> asyncio.Future[object]:
        message = event.envelope.parse(outbound_pb2.OutboundMessage)
        assert isinstance(message, outbound_pb2.OutboundMessage)
        if message.recipient.value in self.too_large:
            raise MessageSizeTooLargeError()
        if len(self.events) >= self.capacity:
            raise KafkaConnectionError()
        self.events.append(event)
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def ids(self) -> list[str]:
        found = []
        for event in self.events:
            message = event.envelope.parse(outbound_pb2.OutboundMessage)
            assert isinstance(message, outbound_pb2.OutboundMessage)
            found.append(message.id)
        return found


class People:
    """An audience of the given recipients, in contact id order."""

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        self.recipients = sorted(recipients, key=lambda r: r.contact_id)

    async def members(self, workspace_id: str, segments: Sequence[str], exclude: Sequence[str], *,
                      company_details: bool = True) -> AsyncGenerator[Recipient, None]:
        for recipient in self.recipients:
            yield recipient

    async def contact(self, workspace_id: str, contact_id: str) -> Recipient | None:
        return None


@pytest.fixture
async def database(infra: InfraSettings) -> AsyncIterator[MongoDatabase]:
    client = create_client(infra.mongo_uri)
    db = MongoDatabase(client, f"{infra.database_prefix}campaigns_hand_off")
    await store.prepare(db)
    try:
        yield db
    finally:
        await client.drop_database(db.db.name)
        await client.close()


def person(name: str) -> Recipient:
    return Recipient(contact_id=str(uuid7()), email=f"{name}@example.com", marketing_consent=True,
                     time_zone="", contact={"first_name": name})


async def sending_campaign(database: MongoDatabase, ws: str) -> str:
    now = datetime.now(UTC)
    template = Template(id=str(uuid7()), workspace_id=ws, name="t", subject="Hi {{ contact.first_name }}",
                        html="<p>Hi</p>", text="Hi", fields=(), version=1, created_at=now, updated_at=now)
    campaign = Campaign(id=str(uuid7()), workspace_id=ws, name="c", template_id=template.id,
                        audience=Audience(("segment",)), status="sending", schedule_at=None,
                        throttle_per_minute=None, quiet_hours=None, version=1, created_at=now, updated_at=now)
    async with database.unit_of_work() as uow:
        await insert_template(uow, template)
        await store.insert_campaign(uow, campaign)
    return campaign.id


async def sends_of(database: MongoDatabase, campaign_id: str) -> dict[str, dict[str, str]]:
    return {d["contact_id"]: d async for d in database.db.sends.find({"campaign_id": campaign_id})}


async def test_a_batch_committed_but_not_acknowledged_is_handed_over_again_once(
        database: MongoDatabase) -> None:
    ws = f"ws-{secrets.token_hex(4)}"
    people = People([person(f"p{i}") for i in range(5)])
    campaign_id = await sending_campaign(database, ws)
    # Batches of 2: the broker takes the first batch, then goes away during the second.
    failing = Broker(capacity=2)
    sender = Sender(database, people, failing, base_url="http://t.example", secret="s" * 40, batch_size=2)
    with pytest.raises(KafkaConnectionError):
        await sender.send_campaign(ws, campaign_id)
    sends = await sends_of(database, campaign_id)
    assert len(failing.events) == 2
    checkpoint = await store.get_checkpoint(database, campaign_id)
    first = people.recipients[1].contact_id
    assert checkpoint["handed"] == first
    # The second batch is committed, and the third may be too (it is committed while the
    # second is handed over): queued, not on the broker, and covered by the checkpoint.
    assert len(sends) in (4, 5)
    assert checkpoint["after"] == max(sends)
    unconfirmed = [send for contact_id, send in sends.items() if contact_id > first]
    assert all(send["status"] == "queued" for send in unconfirmed)
    assert not {send["_id"] for send in unconfirmed} & set(failing.ids())

    broker = Broker()
    sender = Sender(database, people, broker, base_url="http://t.example", secret="s" * 40, batch_size=2)
    await sender.send_campaign(ws, campaign_id)
    sends = await sends_of(database, campaign_id)
    assert sorted(sends) == [r.contact_id for r in people.recipients]  # one send each
    # The second batch again under its send ids, then the third; the first not again.
    batch_two = [sends[r.contact_id]["_id"] for r in people.recipients[2:4]]
    assert broker.ids() == [*batch_two, sends[people.recipients[4].contact_id]["_id"]]
    assert failing.ids() == [sends[r.contact_id]["_id"] for r in people.recipients[:2]]
    campaign = await store.get_campaign(database, ws, campaign_id)
    assert campaign is not None
    assert campaign.status == "sent"


@pytest.mark.parametrize("capacity", [1, 4, 7, 10])
async def test_wherever_the_broker_fails_the_next_pass_sends_everyone_once(
        database: MongoDatabase, capacity: int) -> None:
    """Batches overlap (one committed while the one before is handed over): wherever the
    broker goes away, the next pass hands over what was not acknowledged, and only that."""
    ws = f"ws-{secrets.token_hex(4)}"
    people = People([person(f"r{i}") for i in range(11)])
    campaign_id = await sending_campaign(database, ws)
    failing = Broker(capacity=capacity)
    sender = Sender(database, people, failing, base_url="http://t.example", secret="s" * 40, batch_size=2)
    with pytest.raises(KafkaConnectionError):
        await sender.send_campaign(ws, campaign_id)
    handed = (await store.get_checkpoint(database, campaign_id)).get("handed", "")

    broker = Broker()
    sender = Sender(database, people, broker, base_url="http://t.example", secret="s" * 40, batch_size=2)
    await sender.send_campaign(ws, campaign_id)
    sends = await sends_of(database, campaign_id)
    assert sorted(sends) == [r.contact_id for r in people.recipients]  # one send each
    by_id = {send["_id"]: contact_id for contact_id, send in sends.items()}
    assert set(failing.ids()) | set(broker.ids()) == set(by_id)  # everyone's message went out
    assert len(broker.ids()) == len(set(broker.ids()))
    assert all(by_id[send_id] > handed for send_id in broker.ids())  # nothing acknowledged again
    campaign = await store.get_campaign(database, ws, campaign_id)
    assert campaign is not None
    assert campaign.status == "sent"


async def test_a_message_the_broker_can_never_take_fails_its_send_not_the_campaign(
        database: MongoDatabase) -> None:
    ws = f"ws-{secrets.token_hex(4)}"
    people = People([person(f"q{i}") for i in range(3)])
    campaign_id = await sending_campaign(database, ws)
    broker = Broker(too_large=[people.recipients[1].email])
    sender = Sender(database, people, broker, base_url="http://t.example", secret="s" * 40, batch_size=2)
    await sender.send_campaign(ws, campaign_id)
    sends = await sends_of(database, campaign_id)
    assert {c: d["status"] for c, d in sends.items()} == {
        people.recipients[0].contact_id: "queued", people.recipients[1].contact_id: "failed",
        people.recipients[2].contact_id: "queued"}
    assert "MessageSizeTooLargeError" in sends[people.recipients[1].contact_id]["reason"]
    assert len(broker.events) == 2
    campaign = await store.get_campaign(database, ws, campaign_id)
    assert campaign is not None
    assert campaign.status == "sent"
