"""The Messenger, Instagram, Telegram and SMS (Twilio) webhooks, from the provider's signed
request to the interaction on the right contact, and what each refuses."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from crm_ingest import channel_routing
from crm_ingest.domain.interaction import interaction_id
from crm_ingest.domain.twilio import sign as twilio_sign
from crm_ingest.domain.whatsapp import sign
from crm_ingest.main import create_app as create_ingest
from crm_ingest.settings import Settings as IngestSettings
from crmkit.ids import uuid7
from crmkit.settings import InfraSettings
from crmkit.testing import bearer, eventually
from crmkit.topics import INGEST_RAW, dlq

from .conftest import (
    INSTAGRAM_ACCOUNT,
    MESSENGER_PAGE,
    META_SECRETS,
    META_VERIFY_TOKEN,
    SMS_NUMBER,
    TELEGRAM_THROTTLED_BOT,
    TWILIO_TOKEN,
    WHATSAPP_PHONE_ID,
    WORKSPACE,
    Platform,
)

pytestmark = pytest.mark.integration
LIMIT = 16 * 1024  # the platform's INGEST_MAX_<channel>_BYTES


def digits(n: int) -> str:
    return "".join(random.choices("0123456789", k=n))


def mid() -> str:
    return f"m_{uuid7().hex}"


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def meta_delivery(channel: str, *events: dict[str, Any], account: str | None = None) -> bytes:
    account = account or (MESSENGER_PAGE if channel == "messenger" else INSTAGRAM_ACCOUNT)
    obj = "page" if channel == "messenger" else "instagram"
    return json.dumps({"object": obj, "entry": [{"id": account, "time": now_ms(),
                                                 "messaging": list(events)}]}).encode()


def meta_event(person: str, body: dict[str, Any], account: str = MESSENGER_PAGE) -> dict[str, Any]:
    return {"sender": {"id": person}, "recipient": {"id": account}, "timestamp": now_ms(), **body}


def telegram_update(chat_id: int, number: int, **message: Any) -> bytes:
    sender = {"id": chat_id, "is_bot": False, "first_name": "Grace", "last_name": "Hopper"}
    return json.dumps({"update_id": random.randrange(1, 10**9), "message": {
        "message_id": number, "from": sender, "chat": {"id": chat_id, "type": "private"},
        "date": int(datetime.now(UTC).timestamp()), **message}}).encode()


def sms(sender: str, sid: str, body: str = "Hello by SMS", to: str = SMS_NUMBER) -> list[tuple[str, str]]:
    return [("ToCountry", "US"), ("SmsMessageSid", sid), ("NumMedia", "0"), ("SmsSid", sid),
            ("SmsStatus", "received"), ("Body", body), ("To", to), ("NumSegments", "1"),
            ("MessageSid", sid), ("AccountSid", "AC" + "0" * 32), ("From", sender),
            ("ApiVersion", "2010-04-01")]


async def identities_of(platform: Platform, contact_id: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = (await platform.contacts.get(
        f"/v1/contacts/{contact_id}", headers=bearer(platform.token))).json()["identities"]
    return found


def stored(platform: Platform, channel: str, message_id: str) -> Any:
    """How many interactions the provider's message is (a coroutine)."""
    interactions = platform.ingest_app.state.service.db.db.interactions
    return interactions.count_documents({"_id": interaction_id(WORKSPACE, channel, message_id)})


class Counted:
    """Stands in for an OpenTelemetry counter: what was added, with which attributes."""

    def __init__(self) -> None:
        self.points: list[tuple[int, dict[str, Any]]] = []

    def add(self, amount: int, attributes: dict[str, Any] | None = None) -> None:
        self.points.append((amount, dict(attributes or {})))


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> Counted:
    counted = Counted()
    monkeypatch.setattr(channel_routing, "_refused", counted)
    return counted


async def test_meta_verifies_each_webhook_with_the_verify_token(platform: Platform) -> None:
    for channel in ("messenger", "instagram"):
        query = {"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN, "hub.challenge": "8812"}
        ok = await platform.ingest.get(f"/v1/channels/{channel}/webhook", params=query)
        assert (ok.status_code, ok.text) == (200, "8812")
        wrong = await platform.ingest.get(f"/v1/channels/{channel}/webhook",
                                          params={**query, "hub.verify_token": "not-the-token"})
        assert wrong.status_code == 403
        assert "8812" not in wrong.text


async def test_a_messenger_message_delivered_twice_is_one_interaction_of_the_psids_contact(
        platform: Platform) -> None:
    psid, message_id = digits(16), mid()
    body = meta_delivery("messenger", meta_event(psid, {"message": {"mid": message_id,
                                                                    "text": "Hi from Messenger"}}))
    replies = [await platform.meta("messenger", body) for _ in range(2)]  # Meta retries a delivery
    assert [r.status_code for r in replies] == [200, 200]
    assert replies[0].json() == {"status": "accepted", "accepted": 1, "dead_lettered": 0, "ignored": 0}
    item = await platform.wait_stored(message_id, "messenger")
    assert (item["channel"], item["sender"], item["text"], item["conversation_id"]) == (
        "messenger", psid, "Hi from Messenger", f"{MESSENGER_PAGE}:{psid}")
    assert {"kind": "messenger", "value": psid} in await identities_of(platform, item["contact_id"])
    # The person's next message is keyed like the retried delivery, so it is handled after it.
    later = mid()
    await platform.meta("messenger", meta_delivery("messenger", meta_event(psid, {"message": {
        "mid": later, "text": "Still there?"}})))
    await platform.wait_stored(later, "messenger")
    assert await stored(platform, "messenger", message_id) == 1


async def test_an_instagram_message_with_a_photo_is_an_interaction_of_the_igsid(platform: Platform) -> None:
    igsid, message_id = digits(17), mid()
    photo = {"type": "image", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"}}
    body = meta_delivery("instagram", meta_event(igsid, {"message": {"mid": message_id, "text": "This one?",
                                                                     "attachments": [photo]}},
                                                 account=INSTAGRAM_ACCOUNT))
    assert (await platform.meta("instagram", body)).status_code == 200
    item = await platform.wait_stored(message_id, "instagram")
    assert (item["sender"], item["text"]) == (igsid, "This one?")
    assert item["media"][0]["provider_id"] == photo["payload"]["url"]
    assert {"kind": "instagram", "value": igsid} in await identities_of(platform, item["contact_id"])


async def test_a_telegram_message_and_a_reaction_to_it(platform: Platform) -> None:
    chat_id, number = int(digits(9)), 42
    response = await platform.telegram(telegram_update(chat_id, number, text="Hi from Telegram"))
    assert response.json()["accepted"] == 1
    item = await platform.wait_stored(f"{chat_id}:{number}", "telegram")
    assert (item["sender"], item["sender_name"], item["text"]) == (
        str(chat_id), "Grace Hopper", "Hi from Telegram")
    assert item["conversation_id"] == f"acme_support_bot:{chat_id}"
    assert item["metadata"]["chat_id"] == str(chat_id)
    assert {"kind": "telegram", "value": str(chat_id)} in await identities_of(platform, item["contact_id"])

    reaction = {"update_id": 1, "message_reaction": {
        "chat": {"id": chat_id, "type": "private"}, "message_id": number,
        "user": {"id": chat_id, "is_bot": False},
        "date": int(datetime.now(UTC).timestamp()), "old_reaction": [],
        "new_reaction": [{"type": "emoji", "emoji": "\U0001f44d"}]}}
    assert (await platform.telegram(json.dumps(reaction).encode())).json()["accepted"] == 1

    async def reacted() -> bool:
        return [r["emoji"] for r in (await platform.interaction(f"{chat_id}:{number}", "telegram")).json()
                ["reactions"]] == ["\U0001f44d"]

    await eventually(reacted, what="the reaction on the message")


async def test_an_sms_from_a_number_that_wrote_on_whatsapp_joins_that_contact(platform: Platform) -> None:
    number = "1555" + digits(7)
    wamid = f"wamid.{uuid7().hex}"
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": WHATSAPP_PHONE_ID},
             "contacts": [{"profile": {"name": "Ada"}, "wa_id": number}],
             "messages": [{"from": number, "id": wamid, "timestamp": str(int(datetime.now(UTC).timestamp())),
                           "type": "text", "text": {"body": "Hi on WhatsApp"}}]}
    whatsapp = {"object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}
    assert (await platform.whatsapp(json.dumps(whatsapp).encode())).status_code == 200
    on_whatsapp = await platform.wait_stored(wamid, "whatsapp")

    sid = f"SM{uuid7().hex}"
    response = await platform.sms(sms(f"+{number}", sid, "And now by SMS"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.endswith("<Response/>")
    item = await platform.wait_stored(sid, "sms")
    assert (item["channel"], item["sender"], item["text"]) == ("sms", f"+{number}", "And now by SMS")
    assert item["conversation_id"] == f"{SMS_NUMBER}:+{number}"
    assert item["contact_id"] == on_whatsapp["contact_id"]  # one person, whichever way they wrote


async def test_statuses_land_on_our_messages_and_never_become_interactions(platform: Platform) -> None:
    interactions = platform.ingest_app.state.service.db.db.interactions
    ours = {"messenger": mid(), "instagram": mid(), "sms": f"SM{uuid7().hex}"}
    for channel, message_id in ours.items():  # messages we sent, as the outbound worker stores them
        await interactions.insert_one({"_id": interaction_id(WORKSPACE, channel, message_id),
                                       "workspace_id": WORKSPACE, "channel": channel, "direction": "outbound",
                                       "message_id": message_id})
    psid, igsid, unknown = digits(16), digits(17), mid()
    messenger = await platform.meta("messenger", meta_delivery(
        "messenger",
        meta_event(psid, {"delivery": {"mids": [ours["messenger"], unknown], "watermark": now_ms()}}),
        meta_event(MESSENGER_PAGE, {"message": {"mid": ours["messenger"], "is_echo": True, "text": "Hello"}},
                   account=psid),
        meta_event(psid, {"read": {"watermark": now_ms()}})))
    assert messenger.json() == {"status": "accepted", "accepted": 3, "dead_lettered": 0, "ignored": 1}
    instagram = await platform.meta("instagram", meta_delivery(
        "instagram", meta_event(igsid, {"read": {"mid": ours["instagram"]}}, account=INSTAGRAM_ACCOUNT)))
    assert instagram.json()["accepted"] == 1
    status = [("MessageSid", ours["sms"]), ("MessageStatus", "undelivered"), ("ErrorCode", "30003"),
              ("From", SMS_NUMBER), ("To", "+16505550123"), ("AccountSid", "AC" + "0" * 32)]
    assert (await platform.sms(status)).status_code == 200

    expected = {"messenger": {"delivered_at", "sent_at"}, "instagram": {"read_at"},
                "sms": {"undelivered_at", "error_code"}}

    async def recorded() -> bool:
        for channel, message_id in ours.items():
            doc = await interactions.find_one({"_id": interaction_id(WORKSPACE, channel, message_id)})
            if doc is None or set(doc.get("delivery", {})) != expected[channel]:
                return False
        return True

    await eventually(recorded, what="the statuses on our messages")
    doc = await interactions.find_one({"_id": interaction_id(WORKSPACE, "sms", ours["sms"])})
    assert doc is not None
    assert doc["delivery"]["error_code"] == "30003"
    assert await interactions.count_documents({"workspace_id": WORKSPACE,
                                               "sender": {"$in": [psid, igsid]}}) == 0
    assert await stored(platform, "messenger", unknown) == 0


async def test_forged_requests_are_401_counted_and_never_stored(platform: Platform,
                                                                 refusals: Counted) -> None:
    psid, igsid, chat_id, sid = digits(16), digits(17), int(digits(9)), f"SM{uuid7().hex}"
    messenger_mid, instagram_mid = mid(), mid()
    messenger = meta_delivery("messenger", meta_event(psid, {"message": {"mid": messenger_mid, "text": "x"}}))
    instagram = meta_delivery("instagram", meta_event(igsid, {"message": {"mid": instagram_mid, "text": "x"}},
                                                      account=INSTAGRAM_ACCOUNT))
    params = sms("+16505550199", sid)
    responses = [
        await platform.meta("messenger", messenger, "sha256=" + "0" * 64),
        await platform.meta("messenger", messenger, ""),
        # Signed, but with the other channel's app secret.
        await platform.meta("instagram", instagram, sign(META_SECRETS["messenger"].encode(), instagram)),
        await platform.telegram(telegram_update(chat_id, 1, text="x"), secret="not-the-secret-token"),
        # Signed over the URL the request reached, not the public one Twilio was given.
        await platform.sms(params, twilio_sign(
            TWILIO_TOKEN.encode(), f"{platform.ingest.base_url}/v1/channels/sms/webhook", params)),
    ]
    assert [r.status_code for r in responses] == [401] * 5
    assert {r.json()["type"].rsplit("/", 1)[1] for r in responses} == {"invalid-signature"}
    assert [(n, a["reason"]) for n, a in refusals.points] == [(1, "signature")] * 5
    assert [a["channel"] for _, a in refusals.points] == [
        "messenger", "messenger", "instagram", "telegram", "sms"]
    for message_id, channel in ((messenger_mid, "messenger"), (instagram_mid, "instagram"),
                                (f"{chat_id}:1", "telegram"), (sid, "sms")):
        assert (await platform.interaction(message_id, channel)).status_code == 404


async def test_oversized_requests_are_413(platform: Platform) -> None:
    big = b"x" * (LIMIT + 1)
    responses = [await platform.meta("messenger", big), await platform.meta("instagram", big),
                 await platform.telegram(big),
                 await platform.sms([("MessageSid", "SM1"), ("Body", "x" * LIMIT)])]
    assert [r.status_code for r in responses] == [413] * 4


async def test_records_for_unmapped_accounts_are_dead_lettered_not_dropped(platform: Platform) -> None:
    message_id, chat_id, sid = mid(), int(digits(9)), f"SM{uuid7().hex}"
    consumer = AIOKafkaConsumer(dlq(INGEST_RAW), bootstrap_servers=platform.infra.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        messenger = await platform.meta("messenger", meta_delivery(
            "messenger", meta_event(digits(16), {"message": {"mid": message_id, "text": "x"}},
                                    account="999000111"), account="999000111"))
        telegram = await platform.telegram(telegram_update(chat_id, 7, text="x"), bot="unmapped_bot")
        text = await platform.sms(sms("+16505550111", sid, to="+14155550999"))
        assert [r.status_code for r in (messenger, telegram, text)] == [200, 200, 200]
        assert messenger.json()["dead_lettered"] == telegram.json()["dead_lettered"] == 1
        found: dict[bytes, dict[str, bytes]] = {}
        wanted = {message_id.encode(), f'"id":{chat_id}'.encode(), sid.encode()}

        async def dead_lettered() -> bool:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    found.update({key: dict(r.headers) for key in wanted if key in (r.value or b"")})
            return set(found) == wanted

        await eventually(dead_lettered, what="the records in the DLQ")
    finally:
        await consumer.stop()
    assert found[message_id.encode()]["dlq_reason"] == b"no workspace for Messenger Page id 999000111"
    assert found[f'"id":{chat_id}'.encode()]["dlq_reason"] == b"no workspace for Telegram bot unmapped_bot"
    assert found[sid.encode()]["dlq_reason"] == b"no workspace for SMS number +14155550999"
    assert found[sid.encode()]["dlq_source"] == b"twilio-webhook"


async def test_a_bot_over_its_rate_is_answered_429_with_retry_after(platform: Platform,
                                                                     refusals: Counted) -> None:
    ignored = json.dumps({"update_id": 5, "callback_query": {"id": "1"}}).encode()  # acknowledged, not kept
    first = [await platform.telegram(ignored, bot=TELEGRAM_THROTTLED_BOT) for _ in range(2)]
    assert [r.status_code for r in first] == [200, 200]
    refused = await platform.telegram(ignored, bot=TELEGRAM_THROTTLED_BOT)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["type"].endswith("too-many-requests")
    assert refusals.points == [(1, {"channel": "telegram", "reason": "throttled"})]
    forged = await platform.telegram(ignored, bot=TELEGRAM_THROTTLED_BOT, secret="wrong")
    assert forged.status_code == 401  # a forger cannot spend a bot's rate, nor learn about it


async def test_the_channels_are_not_there_until_they_are_configured(infra: InfraSettings) -> None:
    app = create_ingest(IngestSettings(infra=infra))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        for path in ("/v1/channels/messenger/webhook", "/v1/channels/instagram/webhook",
                     "/v1/channels/telegram/some_bot/webhook"):
            assert (await client.post(path, content=b"{}")).status_code == 404
        response = await client.post("/v1/channels/sms/webhook", content=b"MessageSid=SM1",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 404
        assert (await client.get("/v1/channels/messenger/webhook")).status_code == 404
