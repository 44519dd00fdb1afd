"""The Telegram Bot API webhook: one URL per bot, each update authenticated by the secret
token given to setWebhook (X-Telegram-Bot-Api-Secret-Token). The workspace is the one the bot
of the URL is mapped to (INGEST_TELEGRAM_BOTS), never the caller's word.
"""

from __future__ import annotations

from typing import Annotated

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Path, Request

from crm_ingest.api.deps import (
    STREAM_LIMIT,
    PayloadTooLarge,
    Webhooks,
    configured,
    read_limited,
)
from crm_ingest.api.meta import WebhookAccepted
from crm_ingest.channel_config import TelegramChannel
from crm_ingest.channel_routing import RawItem
from crm_ingest.domain.telegram import BOT, NotTelegram, secret_valid, split_update
from crmkit.problems import Problem

router = APIRouter(prefix="/v1/channels/telegram", tags=["telegram"])


Channel = Annotated[TelegramChannel, Depends(configured("Telegram", lambda s: s.telegram))]


@router.post(
    "/{bot}/webhook",
    response_model=WebhookAccepted,
    summary="Accept one update from Telegram for a bot; it is processed asynchronously",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}}}}},
)
async def telegram_webhook(request: Request, bot: Annotated[str, Path(pattern=BOT)], config: Channel,
                           intake: Webhooks) -> WebhookAccepted:
    body = await read_limited(request, config.max_bytes)
    if not secret_valid(config.secret_token, request.headers.get("x-telegram-bot-api-secret-token")):
        raise intake.refused("telegram", "signature",
                             "X-Telegram-Bot-Api-Secret-Token is missing or is not the secret token")
    intake.throttle("telegram", config.bots, [bot])
    try:
        item = split_update(bot, body)
    except NotTelegram as exc:
        raise Problem(422, "not-telegram", "Not a Telegram update", str(exc)) from exc
    if item is None:
        return WebhookAccepted(accepted=0, dead_lettered=0, ignored=1)
    try:
        routed = await intake.accept("telegram", "telegram-webhook", "application/json", config.bots,
                                     [RawItem(bot, item.person, item.payload)], "Telegram bot")
    except MessageSizeTooLargeError as exc:
        raise PayloadTooLarge(STREAM_LIMIT) from exc
    return WebhookAccepted(accepted=routed.accepted, dead_lettered=routed.dead_lettered, ignored=0)
