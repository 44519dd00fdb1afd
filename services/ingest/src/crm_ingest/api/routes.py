"""Ingest's HTTP API: the inbound email endpoint and interaction reads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from crm_ingest.api.deps import STREAM_LIMIT, IngestSettings, PayloadTooLarge, Service, read_limited
from crmkit.auth import Principal, require
from crmkit.problems import NotFound, Problem

router = APIRouter(prefix="/v1", tags=["ingest"])

Writer = Annotated[Principal, Depends(require("interactions:write"))]
Reader = Annotated[Principal, Depends(require("interactions:read"))]
EMAIL_TYPES = ("message/rfc822", "text/plain", "application/octet-stream")


class Accepted(BaseModel):
    id: str
    status: str = "accepted"


class MediaOut(BaseModel):
    kind: str
    provider_id: str
    mime_type: str
    caption: str
    filename: str


class InteractionOut(BaseModel):
    id: str
    contact_id: str
    channel: str
    direction: str
    sender: str
    sender_name: str
    subject: str
    text: str
    message_id: str
    in_reply_to: str
    conversation_id: str
    media: list[MediaOut]
    occurred_at: datetime
    received_at: datetime


@router.post(
    "/channels/email/inbound",
    status_code=202,
    response_model=Accepted,
    summary="Accept one raw RFC 5322 message; it is processed asynchronously",
    openapi_extra={"requestBody": {"required": True, "content": {
        "message/rfc822": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def inbound_email(request: Request, caller: Writer, service: Service,
                        settings: IngestSettings) -> Accepted:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in EMAIL_TYPES:
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "send the raw message as message/rfc822")
    raw = await read_limited(request, settings.max_email_bytes)
    if not raw.strip():
        raise Problem(422, "empty-message", "Empty message", "the request body holds no message")
    try:
        raw_id = await service.accept_email(caller.workspace_id, raw, source="email-http")
    except MessageSizeTooLargeError as exc:
        raise PayloadTooLarge(STREAM_LIMIT) from exc
    return Accepted(id=raw_id)


@router.get("/interactions/{interaction_id}", response_model=InteractionOut)
async def get_interaction(
    interaction_id: Annotated[str, Path(max_length=64)], caller: Reader, service: Service
) -> InteractionOut:
    item = await service.get_interaction(caller.workspace_id, interaction_id)
    if item is None:
        raise NotFound("interaction")
    return InteractionOut(
        id=item.id, contact_id=item.contact_id, channel=item.channel, direction=item.direction,
        sender=item.sender, sender_name=item.sender_name, subject=item.subject, text=item.text,
        message_id=item.message_id, in_reply_to=item.in_reply_to, conversation_id=item.conversation_id,
        media=[MediaOut(kind=m.kind, provider_id=m.provider_id, mime_type=m.mime_type, caption=m.caption,
                        filename=m.filename) for m in item.media],
        occurred_at=item.occurred_at, received_at=item.received_at,
    )
