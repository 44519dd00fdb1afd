"""The WhatsApp Cloud API webhook: Meta's verification handshake and its signed deliveries.

There is no bearer token here, as Meta cannot send one: the X-Hub-Signature-256 HMAC of the
body with the app secret is the authentication, and the workspace comes from the business
phone number a message was sent to (INGEST_WHATSAPP_ACCOUNTS), never from the caller.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from crm_ingest.api.deps import STREAM_LIMIT, IngestSettings, PayloadTooLarge, Service, read_limited
from crm_ingest.domain.whatsapp import NotWhatsApp, signature_valid, split_webhook
from crm_ingest.settings import WhatsAppChannel
from crmkit.problems import Problem

router = APIRouter(prefix="/v1/channels/whatsapp", tags=["whatsapp"])


def whatsapp_channel(settings: IngestSettings) -> WhatsAppChannel:
    channel = settings.whatsapp
    if channel is None:
        raise Problem(404, "not-found", "Not found", "the WhatsApp channel is not configured")
    return channel


Channel = Annotated[WhatsAppChannel, Depends(whatsapp_channel)]


class WebhookAccepted(BaseModel):
    status: str = "accepted"
    accepted: int  # messages and statuses on their way to the worker
    dead_lettered: int  # for a business phone number no workspace is mapped to
    ignored: int  # changes of other webhook fields, and error-only changes


@router.get(
    "/webhook",
    response_class=PlainTextResponse,
    summary="Meta's verification handshake: hub.challenge back for the configured verify token",
)
async def verify_webhook(
    channel: Channel,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge", max_length=256)] = None,
) -> PlainTextResponse:
    if mode != "subscribe" or token is None or not hmac.compare_digest(
            token.encode(), channel.verify_token.encode()):
        raise Problem(403, "forbidden", "Forbidden", "hub.mode or hub.verify_token is not the expected one")
    if not challenge:
        raise Problem(422, "no-challenge", "No challenge", "hub.challenge is missing")
    return PlainTextResponse(challenge)


@router.post(
    "/webhook",
    response_model=WebhookAccepted,
    summary="Accept one signed delivery from Meta; its messages are processed asynchronously",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}}}}},
)
async def whatsapp_webhook(request: Request, channel: Channel, service: Service) -> WebhookAccepted:
    body = await read_limited(request, channel.max_bytes)
    if not signature_valid(channel.app_secret, body, request.headers.get("x-hub-signature-256")):
        raise Problem(401, "invalid-signature", "Invalid signature",
                      "X-Hub-Signature-256 is missing or is not the body's signature")
    try:
        delivery = split_webhook(body)
    except NotWhatsApp as exc:
        raise Problem(422, "not-whatsapp", "Not a WhatsApp webhook", str(exc)) from exc
    try:
        accepted = await service.accept_whatsapp(delivery.items)
    except MessageSizeTooLargeError as exc:
        raise PayloadTooLarge(STREAM_LIMIT) from exc
    return WebhookAccepted(accepted=accepted.accepted, dead_lettered=accepted.dead_lettered,
                           ignored=delivery.ignored)
