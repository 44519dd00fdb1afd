"""The HTTP providers' send calls: what each request looks like, and how answers map to outcomes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from crm_ingest.outbound.base import DeliveryFailed, OutboundRequest
from crm_ingest.outbound.providers import (
    MetaSendDelivery,
    PageSender,
    SmsDelivery,
    TelegramBot,
    TelegramDelivery,
    TwilioSender,
    WhatsAppDelivery,
    WhatsAppSender,
    telegram_message_number,
)
from crm_ingest.settings import Settings
from crmkit.settings import InfraSettings

BOT_TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKllMMnn"
SID = "AC" + "0" * 32


def request(channel: str, recipient: str, **changes: object) -> OutboundRequest:
    values: dict[str, object] = {"id": "r-1", "workspace_id": "ws-1", "contact_id": "c-1", "channel": channel,
                                 "recipient_kind": channel, "recipient": recipient, "text": "Hello there"}
    values.update(changes)
    return OutboundRequest(**values)  # type: ignore[arg-type]


class Provider:
    """A provider stand-in: records requests, answers with ``answer``."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def client(self) -> httpx.AsyncClient:
        def handle(req: httpx.Request) -> httpx.Response:
            self.requests.append(req)
            return self.answer(req)

        return httpx.AsyncClient(transport=httpx.MockTransport(handle))

    def json(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


def answer(status: int, body: object) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(status, json=body)


def whatsapp(provider: Provider) -> WhatsAppDelivery:
    sender = WhatsAppSender(phone_number_id="106540352242922", token=SecretStr("wa-token"))
    return WhatsAppDelivery(provider.client(), "https://graph.test/", "v23.0", {"ws-1": sender})


async def test_whatsapp_sends_a_text_to_the_number_and_keeps_the_wamid() -> None:
    provider = Provider(answer(200, {"messaging_product": "whatsapp", "contacts": [{"wa_id": "15551234567"}],
                                     "messages": [{"id": "wamid.HBgL123"}]}))
    sent = await whatsapp(provider).send(request("whatsapp", "+15551234567", in_reply_to="wamid.IN1"))
    sent_request = provider.requests[0]
    assert sent_request.method == "POST"
    assert str(sent_request.url) == "https://graph.test/v23.0/106540352242922/messages"
    assert sent_request.headers["Authorization"] == "Bearer wa-token"
    assert provider.json() == {"messaging_product": "whatsapp", "recipient_type": "individual",
                               "to": "15551234567", "type": "text",
                               "text": {"body": "Hello there", "preview_url": False},
                               "context": {"message_id": "wamid.IN1"}}
    assert sent.provider_message_id == "wamid.HBgL123"
    assert sent.metadata == {"phone_number_id": "106540352242922"}


async def test_a_message_that_answers_nothing_has_no_context() -> None:
    provider = Provider(answer(200, {"messages": [{"id": "wamid.X"}]}))
    await whatsapp(provider).send(request("whatsapp", "+15551234567"))
    assert "context" not in provider.json()


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
async def test_messenger_and_instagram_reply_through_the_send_api_with_the_page_token(channel: str) -> None:
    provider = Provider(answer(200, {"recipient_id": "2468", "message_id": "m_abc"}))
    delivery = MetaSendDelivery(channel, provider.client(), "https://graph.test", "v23.0",
                                {"ws-1": PageSender(token=SecretStr("page-token"), page_id="1357")})
    sent = await delivery.send(request(channel, "2468"))
    assert str(provider.requests[0].url) == "https://graph.test/v23.0/me/messages"
    assert provider.requests[0].headers["Authorization"] == "Bearer page-token"
    assert provider.json() == {"recipient": {"id": "2468"}, "messaging_type": "RESPONSE",
                               "message": {"text": "Hello there"}}
    assert (sent.provider_message_id, sent.sender) == ("m_abc", "1357")


def telegram(provider: Provider) -> TelegramDelivery:
    bot = TelegramBot(token=SecretStr(BOT_TOKEN))
    return TelegramDelivery(provider.client(), "https://telegram.test", {"ws-1": bot})


async def test_telegram_sends_to_the_chat_and_ids_the_message_within_it() -> None:
    provider = Provider(answer(200, {"ok": True, "result": {"message_id": 77, "chat": {"id": 4242}}}))
    sent = await telegram(provider).send(request("telegram", "4242", in_reply_to="4242:70"))
    assert str(provider.requests[0].url) == f"https://telegram.test/bot{BOT_TOKEN}/sendMessage"
    assert provider.json() == {"chat_id": "4242", "text": "Hello there",
                               "reply_parameters": {"message_id": 70, "allow_sending_without_reply": True}}
    assert sent.provider_message_id == "4242:77"


async def test_telegram_ignores_a_reply_to_that_is_not_a_message_number() -> None:
    provider = Provider(answer(200, {"ok": True, "result": {"message_id": 78, "chat": {"id": 4242}}}))
    await telegram(provider).send(request("telegram", "4242", in_reply_to="not-a-number"))
    assert "reply_parameters" not in provider.json()


def test_telegram_message_numbers_come_from_their_provider_ids() -> None:
    assert telegram_message_number("4242:70") == 70
    assert telegram_message_number("-100123:5") == 5
    assert telegram_message_number("70") == 70
    assert telegram_message_number("") is None


def sms(provider: Provider, **sender: str) -> SmsDelivery:
    account = TwilioSender(account_sid=SID, auth_token=SecretStr("twilio-token"),
                           **(sender or {"from_number": "+15550001111"}))
    return SmsDelivery(provider.client(), "https://twilio.test", {"ws-1": account})


async def test_sms_posts_a_form_with_basic_auth_in_twilios_format() -> None:
    provider = Provider(answer(201, {"sid": "SM123", "status": "queued"}))
    sent = await sms(provider).send(request("sms", "+15557654321"))
    sent_request = provider.requests[0]
    assert str(sent_request.url) == f"https://twilio.test/2010-04-01/Accounts/{SID}/Messages.json"
    assert sent_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent_request.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{SID}:twilio-token".encode()).decode()
    assert parse_qs(sent_request.content.decode()) == {
        "To": ["+15557654321"], "Body": ["Hello there"], "From": ["+15550001111"]}
    assert (sent.provider_message_id, sent.sender) == ("SM123", "+15550001111")


async def test_sms_through_a_messaging_service() -> None:
    provider = Provider(answer(201, {"sid": "SM124"}))
    await sms(provider, messaging_service_sid="MG" + "1" * 32).send(request("sms", "+15557654321"))
    form = parse_qs(provider.requests[0].content.decode())
    assert form["MessagingServiceSid"] == ["MG" + "1" * 32]
    assert "From" not in form


async def test_sms_asks_twilio_to_post_statuses_to_ingests_public_webhook() -> None:
    provider = Provider(answer(201, {"sid": "SM125"}))
    account = TwilioSender(account_sid=SID, auth_token=SecretStr("twilio-token"), from_number="+15550001111")
    delivery = SmsDelivery(provider.client(), "https://twilio.test", {"ws-1": account},
                           "https://crm.acme.example/v1/channels/sms/webhook")
    await delivery.send(request("sms", "+15557654321"))
    form = parse_qs(provider.requests[0].content.decode())
    assert form["StatusCallback"] == ["https://crm.acme.example/v1/channels/sms/webhook"]


def test_an_sms_sender_needs_exactly_one_of_a_number_and_a_service() -> None:
    with pytest.raises(ValidationError):
        TwilioSender(account_sid=SID, auth_token=SecretStr("t"))
    with pytest.raises(ValidationError):
        TwilioSender(account_sid=SID, auth_token=SecretStr("t"), from_number="+15550001111",
                     messaging_service_sid="MG" + "1" * 32)


META_ERROR = {"error": {"message": "(#131030) Recipient phone number not in allowed list", "code": 131030,
                        "type": "OAuthException", "error_data": {"details": "Add it to the list"}}}


@pytest.mark.parametrize(("status", "body", "permanent", "reason"), [
    (400, META_ERROR, True,
     "WhatsApp answered 400: 131030: (#131030) Recipient phone number not in allowed list "
     "Add it to the list"),
    (401, {"error": {"message": "Invalid OAuth access token.", "code": 190}}, True,
     "WhatsApp answered 401: 190: Invalid OAuth access token."),
    (404, "not json", True, "WhatsApp answered 404: not json"),
    (408, {}, False, "WhatsApp answered 408: {}"),
    (429, {"error": {"message": "Too many messages", "code": 130429}}, False,
     "WhatsApp answered 429: 130429: Too many messages"),
    (500, {"error": {"message": "Unknown error", "code": 1}}, False,
     "WhatsApp answered 500: 1: Unknown error"),
    (503, None, False, "WhatsApp answered 503: Service Unavailable"),
])
async def test_whatsapp_errors_are_permanent_for_4xx_and_transient_for_408_429_and_5xx(
    status: int, body: object, permanent: bool, reason: str,
) -> None:
    provider = Provider(lambda _: httpx.Response(status, text=body) if isinstance(body, str)
                        else httpx.Response(status, json=body))
    with pytest.raises(DeliveryFailed) as failed:
        await whatsapp(provider).send(request("whatsapp", "+15551234567"))
    assert (failed.value.permanent, failed.value.reason) == (permanent, reason)


async def test_telegram_and_twilio_errors_carry_their_own_words() -> None:
    blocked = Provider(answer(403, {"ok": False, "error_code": 403,
                                    "description": "Forbidden: bot was blocked by the user"}))
    with pytest.raises(DeliveryFailed) as failed:
        await telegram(blocked).send(request("telegram", "4242"))
    assert failed.value.permanent
    assert failed.value.reason == "Telegram answered 403: Forbidden: bot was blocked by the user"
    assert BOT_TOKEN not in failed.value.reason
    invalid = Provider(answer(400, {"code": 21211, "message": "The 'To' number is not valid."}))
    with pytest.raises(DeliveryFailed) as failed:
        await sms(invalid).send(request("sms", "+15557654321"))
    assert failed.value.permanent
    assert failed.value.reason == "SMS provider answered 400: 21211: The 'To' number is not valid."


async def test_no_answer_is_transient_and_names_no_url() -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    with pytest.raises(DeliveryFailed) as failed:
        await telegram(Provider(refuse)).send(request("telegram", "4242"))
    assert not failed.value.permanent
    assert failed.value.reason == "Telegram unreachable: ConnectError"


@pytest.mark.parametrize("body", [{"messages": []}, {"ok": True}, ["not", "an", "object"]])
async def test_a_success_without_a_message_id_is_not_sent_again(body: object) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await whatsapp(Provider(answer(200, body))).send(request("whatsapp", "+15551234567"))
    assert failed.value.permanent


async def test_a_workspace_without_a_sender_fails_for_good_without_a_call() -> None:
    provider = Provider(answer(200, {"messages": [{"id": "wamid.X"}]}))
    with pytest.raises(DeliveryFailed) as failed:
        await whatsapp(provider).send(request("whatsapp", "+15551234567", workspace_id="ws-other"))
    assert failed.value.permanent
    assert failed.value.reason == "no WhatsApp sender configured for this workspace"
    assert provider.requests == []


def test_sender_settings_are_checked_at_start() -> None:
    with pytest.raises(ValidationError):
        TelegramBot(token=SecretStr("not-a-token"))
    with pytest.raises(ValidationError):
        WhatsAppSender(phone_number_id="+1555", token=SecretStr("t"))
    infra = InfraSettings(jwt_secret=SecretStr("x" * 48))
    with pytest.raises(ValidationError, match="INGEST_EMAIL_FROM"):
        Settings(infra=infra, email_from={"ws-1": "not an address"})
    with pytest.raises(ValidationError, match="go together"):
        Settings(infra=infra, smtp_username="relay-user")
    with pytest.raises(ValidationError, match="must be an https URL"):
        Settings(infra=infra.model_copy(update={"environment": "prod"}),
                 telegram_api_url="http://telegram.test")
    settings = Settings(infra=infra, email_from={"ws-1": "Acme <help@acme.example>"},
                        whatsapp_send={"ws-1": {"phone_number_id": "1065", "token": "t"}})
    assert settings.whatsapp_send["ws-1"].phone_number_id == "1065"
