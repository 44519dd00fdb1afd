"""Outbound messages through the providers' HTTP send APIs: WhatsApp Cloud API, Messenger and
Instagram (Meta's Send API), Telegram's Bot API, and SMS in Twilio's Messages API format.

Each delivery sends from the account configured for the request's workspace, at a
configurable base URL (the real one by default). Errors map onto ``DeliveryFailed``: a 4xx
but 408 and 429 is permanent, with the provider's own error text; 408, 429, a 5xx or no
answer at all is transient, and the worker retries it. A request that timed out after the
provider took it is sent again: these APIs have no idempotency key, so delivery is
at-least-once (the stored interaction is still one, as the request id is the key).

Provider message ids, as stored (``Sent.provider_message_id``, from which the interaction id
is derived, so that the provider's delivery statuses find it):

| channel | id |
| --- | --- |
| whatsapp | the wamid (``messages[0].id``) |
| messenger, instagram | the message id (``message_id``) |
| telegram | ``<chat id>:<message id>`` (Telegram's message ids are only unique per chat) |
| sms | the Twilio message SID (``sid``) |
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr, model_validator

from crm_ingest.domain.whatsapp import PHONE_NUMBER_ID
from crm_ingest.outbound.base import DeliveryFailed, OutboundRequest, Sent

MAX_ERROR_CHARS = 500
_E164 = r"^\+[1-9]\d{6,14}$"


class WhatsAppSender(BaseModel):
    """The business phone number a workspace's WhatsApp messages go out from."""

    phone_number_id: str = Field(pattern=PHONE_NUMBER_ID)
    # A system user's access token with the whatsapp_business_messaging permission.
    token: SecretStr


class PageSender(BaseModel):
    """The Facebook page (Messenger) or Instagram professional account a workspace sends from."""

    # The page access token; with it, ``me`` in the Send API is the page.
    token: SecretStr
    # The page's (or Instagram account's) id, kept as the sender of the stored interaction.
    page_id: str = Field(default="", pattern=r"^\d{0,32}$")


class TelegramBot(BaseModel):
    """The bot a workspace's Telegram messages go out from."""

    token: SecretStr

    @model_validator(mode="after")
    def _token_shape(self) -> TelegramBot:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]{20,}", self.token.get_secret_value()):
            raise ValueError("a Telegram bot token is <bot id>:<secret>, as BotFather gives it")
        return self


class TwilioSender(BaseModel):
    """The Twilio account, and the number or messaging service, a workspace's SMS go out from."""

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr
    from_number: str = Field(default="", pattern=rf"{_E164}|^$")
    messaging_service_sid: str = Field(default="", pattern=r"^MG[0-9a-fA-F]{32}$|^$")

    @model_validator(mode="after")
    def _one_sender(self) -> TwilioSender:
        if bool(self.from_number) == bool(self.messaging_service_sid):
            raise ValueError("give an SMS sender either from_number or messaging_service_sid")
        return self


def provider_client(timeout: float) -> httpx.AsyncClient:
    """The process's one HTTP client for every provider (made in the lifespan, closed with
    it). httpx logs every request's URL at INFO, and a Telegram URL holds the bot's token:
    its logger is kept at WARNING."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                             limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))


class _HttpDelivery:
    channel = ""
    provider = ""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")

    def _account(self, senders: Mapping[str, Any], request: OutboundRequest) -> Any:
        account = senders.get(request.workspace_id)
        if account is None:
            raise DeliveryFailed(f"no {self.provider} sender configured for this workspace", permanent=True)
        return account

    async def _post(self, url: str, **kwargs: Any) -> dict[str, Any]:
        """POST and return the JSON answer, or raise DeliveryFailed."""
        try:
            response = await self.http.post(url, **kwargs)
        except httpx.TransportError as exc:  # no answer (the URL may hold a secret: not shown)
            raise DeliveryFailed(f"{self.provider} unreachable: {type(exc).__name__}",
                                 permanent=False) from exc
        status = response.status_code
        if status >= 400:
            transient = status in (408, 429) or status >= 500
            raise DeliveryFailed(f"{self.provider} answered {status}: {_error_text(response)}",
                                 permanent=not transient)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # It may have been sent: not retried, so as not to send it twice.
            raise DeliveryFailed(f"{self.provider} answered {status} without a JSON object", permanent=True)
        return body

    def _missing_id(self) -> DeliveryFailed:
        return DeliveryFailed(f"{self.provider} answered without a message id", permanent=True)


class WhatsAppDelivery(_HttpDelivery):
    """``POST {base}/{version}/{phone_number_id}/messages`` (WhatsApp Cloud API), a text message;
    a reply quotes the message it answers (``context.message_id``, the wamid)."""

    channel = "whatsapp"
    provider = "WhatsApp"

    def __init__(self, http: httpx.AsyncClient, base_url: str, version: str,
                 senders: Mapping[str, WhatsAppSender]) -> None:
        super().__init__(http, base_url)
        self.version = version
        self.senders = dict(senders)

    async def send(self, message: OutboundRequest) -> Sent:
        account: WhatsAppSender = self._account(self.senders, message)
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "to": message.recipient.removeprefix("+"), "type": "text",
            "text": {"body": message.text, "preview_url": False},
        }
        if message.in_reply_to:
            payload["context"] = {"message_id": message.in_reply_to}
        body = await self._post(f"{self.base_url}/{self.version}/{account.phone_number_id}/messages",
                                json=payload, headers=_bearer(account.token))
        messages = body.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = first.get("id") if isinstance(first, dict) else None
        if not isinstance(wamid, str) or not wamid:
            raise self._missing_id()
        return Sent(wamid, datetime.now(UTC), metadata={"phone_number_id": account.phone_number_id})


class MetaSendDelivery(_HttpDelivery):
    """``POST {base}/{version}/me/messages`` (Meta's Send API) with the page's token: a text
    reply (``messaging_type`` RESPONSE) to a person's page-scoped (or Instagram-scoped) id.
    Meta lets a page answer within 24 hours of the person's last message; later, it refuses
    (a permanent failure)."""

    def __init__(self, channel: str, http: httpx.AsyncClient, base_url: str, version: str,
                 senders: Mapping[str, PageSender]) -> None:
        super().__init__(http, base_url)
        self.channel = channel
        self.provider = {"messenger": "Messenger", "instagram": "Instagram"}.get(channel, channel)
        self.version = version
        self.senders = dict(senders)

    async def send(self, message: OutboundRequest) -> Sent:
        account: PageSender = self._account(self.senders, message)
        payload = {"recipient": {"id": message.recipient}, "messaging_type": "RESPONSE",
                   "message": {"text": message.text}}
        body = await self._post(f"{self.base_url}/{self.version}/me/messages", json=payload,
                                headers=_bearer(account.token))
        mid = body.get("message_id")
        if not isinstance(mid, str) or not mid:
            raise self._missing_id()
        return Sent(mid, datetime.now(UTC), sender=account.page_id)


class TelegramDelivery(_HttpDelivery):
    """``POST {base}/bot{token}/sendMessage``: ``chat_id`` is the recipient. A reply quotes
    the message it answers when ``in_reply_to`` is ``<chat id>:<message id>`` (or a bare
    message id), and still goes out if that message is gone."""

    channel = "telegram"
    provider = "Telegram"

    def __init__(self, http: httpx.AsyncClient, base_url: str, senders: Mapping[str, TelegramBot]) -> None:
        super().__init__(http, base_url)
        self.senders = dict(senders)

    async def send(self, message: OutboundRequest) -> Sent:
        account: TelegramBot = self._account(self.senders, message)
        payload: dict[str, Any] = {"chat_id": message.recipient, "text": message.text}
        reply_to = telegram_message_number(message.in_reply_to)
        if reply_to is not None:
            payload["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        body = await self._post(f"{self.base_url}/bot{account.token.get_secret_value()}/sendMessage",
                                json=payload)
        result = body.get("result")
        if body.get("ok") is not True or not isinstance(result, dict):
            raise DeliveryFailed(f"Telegram refused the message: {_text(body.get('description'))}",
                                 permanent=True)
        number = result.get("message_id")
        chat = result.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        if not isinstance(number, int):
            raise self._missing_id()
        return Sent(telegram_message_id(chat_id if chat_id is not None else message.recipient, number),
                    datetime.now(UTC))


def telegram_message_id(chat_id: int | str, message_id: int) -> str:
    """A Telegram message's provider id: its number is unique only within its chat."""
    return f"{chat_id}:{message_id}"


def telegram_message_number(provider_id: str) -> int | None:
    """The message number of ``<chat id>:<message id>`` (or of a bare number); None otherwise."""
    number = provider_id.rpartition(":")[2]
    return int(number) if number.isdigit() else None


class SmsDelivery(_HttpDelivery):
    """``POST {base}/2010-04-01/Accounts/{sid}/Messages.json`` (Twilio's Messages API, form
    encoded, basic auth with the account SID and auth token): ``To``, ``Body``, and ``From``
    or ``MessagingServiceSid``."""

    channel = "sms"
    provider = "SMS provider"

    def __init__(self, http: httpx.AsyncClient, base_url: str, senders: Mapping[str, TwilioSender],
                 status_callback: str | None = None) -> None:
        super().__init__(http, base_url)
        self.senders = dict(senders)
        # Where Twilio posts the message's delivery statuses: ingest's SMS webhook, public URL.
        self.status_callback = status_callback

    async def send(self, message: OutboundRequest) -> Sent:
        account: TwilioSender = self._account(self.senders, message)
        form = {"To": message.recipient, "Body": message.text}
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        if account.messaging_service_sid:
            form["MessagingServiceSid"] = account.messaging_service_sid
        else:
            form["From"] = account.from_number
        body = await self._post(
            f"{self.base_url}/2010-04-01/Accounts/{account.account_sid}/Messages.json", data=form,
            auth=(account.account_sid, account.auth_token.get_secret_value()))
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise self._missing_id()
        return Sent(sid, datetime.now(UTC), sender=account.from_number)


def _bearer(token: SecretStr) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


def _error_text(response: httpx.Response) -> str:
    """The provider's own words for a refusal: Meta's ``error``, Telegram's ``description``,
    Twilio's ``code`` and ``message``; else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return _text(response.text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Meta
            details = error.get("error_data", {}).get("details") if isinstance(
                error.get("error_data"), dict) else None
            code = error.get("code")
            text = " ".join(_text(part) for part in (error.get("message"), details) if part)
            return _text(f"{code}: {text}" if code is not None else text)
        if "description" in body:  # Telegram
            return _text(body["description"])
        if "message" in body:  # Twilio
            code = body.get("code")
            return _text(f"{code}: {body['message']}" if code is not None else body["message"])
    return _text(response.text)


def _text(value: object) -> str:
    return " ".join(str(value or "").split())[:MAX_ERROR_CHARS]
