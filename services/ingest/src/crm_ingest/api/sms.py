"""The SMS webhook, in Twilio's Messaging format: incoming messages and the status callbacks
of messages we sent, posted as forms and authenticated by X-Twilio-Signature (the account's
auth token over INGEST_SMS_PUBLIC_URL and the parameters). The workspace is the one our
number is mapped to (INGEST_SMS_NUMBERS), never the caller's word.
"""

from __future__ import annotations

from typing import Annotated

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from crm_ingest.api.deps import (
    STREAM_LIMIT,
    PayloadTooLarge,
    Webhooks,
    configured,
    read_limited,
)
from crm_ingest.channel_config import SmsChannel
from crm_ingest.channel_routing import RawItem
from crm_ingest.domain.twilio import NotTwilio, classify, parse_form, signature_valid
from crmkit.problems import Problem

router = APIRouter(prefix="/v1/channels/sms", tags=["sms"])
FORM = "application/x-www-form-urlencoded"
# What Twilio is answered: TwiML that sends no reply (replies go out through outbound).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


Channel = Annotated[SmsChannel, Depends(configured("SMS", lambda s: s.sms))]


@router.post(
    "/webhook",
    response_class=Response,
    responses={200: {"content": {"text/xml": {}}, "description": "an empty TwiML <Response/>"}},
    summary="Accept one incoming SMS or status callback from Twilio; it is processed asynchronously",
    openapi_extra={"requestBody": {"required": True, "content": {FORM: {"schema": {"type": "object"}}}}},
)
async def sms_webhook(request: Request, config: Channel, intake: Webhooks) -> Response:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"Twilio posts {FORM}")
    body = await read_limited(request, config.max_bytes)
    try:
        params = parse_form(body)
    except NotTwilio as exc:
        raise Problem(422, "not-twilio", "Not a Twilio request", str(exc)) from exc
    if not signature_valid(config.auth_token, config.public_url, params,
                           request.headers.get("x-twilio-signature")):
        raise intake.refused("sms", "signature", "X-Twilio-Signature is missing or does not sign this "
                                                 "request to INGEST_SMS_PUBLIC_URL")
    try:
        item = classify(params)
    except NotTwilio as exc:
        raise Problem(422, "not-twilio", "Not a Twilio request", str(exc)) from exc
    intake.throttle("sms", config.numbers, [item.number])
    try:
        # The form itself is the raw record: it is what Twilio signed.
        await intake.accept("sms", "twilio-webhook", FORM, config.numbers,
                            [RawItem(item.number, item.person, body)], "SMS number")
    except MessageSizeTooLargeError as exc:
        raise PayloadTooLarge(STREAM_LIMIT) from exc
    return Response(EMPTY_TWIML, media_type="text/xml")
