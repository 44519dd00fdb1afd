"""Meta's webhooks, WhatsApp Cloud API, Messenger and Instagram: Meta's verification handshake
and its signed deliveries, one router per channel.

There is no bearer token here, as Meta cannot send one: the X-Hub-Signature-256 HMAC of the
body with the app secret is the authentication, and the workspace comes from the business
phone number, Page or Instagram account an event is for (INGEST_WHATSAPP_ACCOUNTS,
INGEST_MESSENGER_PAGES, INGEST_INSTAGRAM_ACCOUNTS), never from the caller.

The routers are made by one factory, so their annotations are evaluated where they are
written (no ``from __future__ import annotations``): FastAPI must see the local dependencies.
"""

import hmac
from collections.abc import Callable
from typing import Annotated, Literal

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from crm_ingest.api.deps import STREAM_LIMIT, PayloadTooLarge, Webhooks, configured, read_limited
from crm_ingest.channel_config import MetaChannel
from crm_ingest.channel_routing import RawItem
from crm_ingest.domain.messenger import NotMessaging, split_messaging
from crm_ingest.domain.meta import signature_valid
from crm_ingest.domain.whatsapp import NotWhatsApp, split_webhook
from crm_ingest.settings import Settings
from crmkit.problems import Problem

MetaName = Literal["whatsapp", "messenger", "instagram"]
# (name, what an account is called, the channel's settings)
_CHANNELS: dict[str, tuple[str, str, Callable[[Settings], MetaChannel | None]]] = {
    "whatsapp": ("WhatsApp", "phone_number_id", lambda s: s.whatsapp),
    "messenger": ("Messenger", "Page id", lambda s: s.messenger),
    "instagram": ("Instagram", "Instagram account id", lambda s: s.instagram),
}


class WebhookAccepted(BaseModel):
    status: str = "accepted"
    accepted: int  # messages, statuses and reactions on their way to the worker
    dead_lettered: int  # for an account no workspace is mapped to
    ignored: int  # changes of other webhook fields, error-only changes, events not taken


def split(channel: MetaName, body: bytes) -> tuple[list[RawItem], int]:
    """One raw record per message, status and reaction of a delivery (by the account it is
    for and the person it is from), and how many changes were ignored. ValueError for a body
    that is not such a delivery."""
    if channel == "whatsapp":
        delivery = split_webhook(body)
        return [RawItem(i.phone_number_id, i.wa_id, i.payload) for i in delivery.items], delivery.ignored
    messaging = split_messaging(channel, body)
    return [RawItem(i.account_id, i.person, i.payload) for i in messaging.items], messaging.ignored


def meta_router(channel: MetaName) -> APIRouter:
    name, account_name, channel_settings = _CHANNELS[channel]
    router = APIRouter(prefix=f"/v1/channels/{channel}", tags=[channel])

    Channel = Annotated[MetaChannel, Depends(configured(name, channel_settings))]

    @router.get(
        "/webhook",
        response_class=PlainTextResponse,
        summary="Meta's verification handshake: hub.challenge back for the configured verify token",
    )
    async def verify_webhook(
        config: Channel,
        mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge", max_length=256)] = None,
    ) -> PlainTextResponse:
        if mode != "subscribe" or token is None or not hmac.compare_digest(
                token.encode(), config.verify_token.encode()):
            raise Problem(403, "forbidden", "Forbidden",
                          "hub.mode or hub.verify_token is not the expected one")
        if not challenge:
            raise Problem(422, "no-challenge", "No challenge", "hub.challenge is missing")
        return PlainTextResponse(challenge)

    @router.post(
        "/webhook",
        response_model=WebhookAccepted,
        summary=f"Accept one signed {name} delivery from Meta; its events are processed asynchronously",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}}}}},
    )
    async def webhook(request: Request, config: Channel, intake: Webhooks) -> WebhookAccepted:
        body = await read_limited(request, config.max_bytes)
        if not signature_valid(config.app_secret, body, request.headers.get("x-hub-signature-256")):
            raise intake.refused(channel, "signature",
                                 "X-Hub-Signature-256 is missing or is not the body's signature")
        try:
            items, ignored = split(channel, body)
        except (NotWhatsApp, NotMessaging) as exc:
            raise Problem(422, f"not-{channel}", f"Not a {name} webhook", str(exc)) from exc
        intake.throttle(channel, config.accounts, (item.account for item in items))
        try:
            routed = await intake.accept(channel, f"{channel}-webhook", "application/json",
                                         config.accounts, items, f"{name} {account_name}")
        except MessageSizeTooLargeError as exc:
            raise PayloadTooLarge(STREAM_LIMIT) from exc
        return WebhookAccepted(accepted=routed.accepted, dead_lettered=routed.dead_lettered,
                               ignored=ignored)

    return router


whatsapp_router = meta_router("whatsapp")
messenger_router = meta_router("messenger")
instagram_router = meta_router("instagram")
