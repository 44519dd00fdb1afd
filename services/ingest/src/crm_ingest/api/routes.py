"""Ingest's HTTP API: the inbound email endpoint and interaction reads."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from crm_ingest.api.deps import STREAM_LIMIT, IngestSettings, PayloadTooLarge, Service, read_limited
from crm_ingest.store.interactions import StoredInteraction
from crmkit.auth import Principal, require
from crmkit.pagination import InvalidCursor
from crmkit.problems import NotFound, Problem

router = APIRouter(prefix="/v1", tags=["ingest"])

Writer = Annotated[Principal, Depends(require("interactions:write"))]
Reader = Annotated[Principal, Depends(require("interactions:read"))]
FileReader = Annotated[Principal, Depends(require("interactions:files"))]
RawReader = Annotated[Principal, Depends(require("interactions:raw"))]
ChannelName = Literal["email", "chat", "whatsapp", "messenger", "instagram", "telegram", "sms", "commerce"]
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


class AttachmentOut(BaseModel):
    index: int
    filename: str
    content_type: str
    size: int
    sha256: str
    stored: bool  # False: it was over the attachment limit, only described


class OrderItemOut(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price_minor: int


class OrderOut(BaseModel):
    order_id: str
    total_minor: int
    currency: str
    items: list[OrderItemOut]
    status: str


class ReactionOut(BaseModel):
    emoji: str
    at: datetime | None


class InteractionOut(BaseModel):
    id: str
    contact_id: str
    channel: str
    direction: str
    kind: str
    sender: str
    sender_name: str
    recipients: list[str]
    subject: str
    text: str
    quoted_text: str
    has_html: bool
    message_id: str
    in_reply_to: str
    references: list[str]
    conversation_id: str
    media: list[MediaOut]
    attachments: list[AttachmentOut]
    metadata: dict[str, str]
    order: OrderOut | None
    outbound_id: str
    # Provider statuses of a message we sent: "<status>_at" times, and "error_code".
    delivery: dict[str, Any]
    reactions: list[ReactionOut]
    occurred_at: datetime
    received_at: datetime

    @classmethod
    def of(cls, stored: StoredInteraction) -> InteractionOut:
        item = stored.interaction
        order = item.order
        return cls(
            id=item.id, contact_id=item.contact_id, channel=item.channel, direction=item.direction,
            kind=item.kind, sender=item.sender, sender_name=item.sender_name,
            recipients=list(item.recipients), subject=item.subject, text=item.text,
            quoted_text=item.quoted_text, has_html=item.has_html, message_id=item.message_id,
            in_reply_to=item.in_reply_to, references=list(item.references),
            conversation_id=item.conversation_id,
            media=[MediaOut(kind=m.kind, provider_id=m.provider_id, mime_type=m.mime_type,
                            caption=m.caption, filename=m.filename) for m in item.media],
            attachments=[AttachmentOut(**asdict(a)) for a in item.attachments],
            metadata=item.metadata,
            order=None if order is None else OrderOut(
                order_id=order.order_id, total_minor=order.total_minor, currency=order.currency,
                items=[OrderItemOut(**asdict(i)) for i in order.items], status=order.status),
            outbound_id=item.outbound_id, delivery=stored.delivery,
            reactions=[ReactionOut(emoji=r.get("emoji", ""), at=r.get("at")) for r in stored.reactions],
            occurred_at=item.occurred_at, received_at=item.received_at,
        )


class InteractionPageOut(BaseModel):
    items: list[InteractionOut]
    next_cursor: str | None


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


InteractionId = Annotated[str, Path(max_length=64)]


@router.get("/interactions", response_model=InteractionPageOut,
            summary="A contact's interactions on every channel, newest first (the timeline)")
async def list_interactions(
    caller: Reader, service: Service,
    contact_id: Annotated[str, Query(min_length=1, max_length=64)],
    channel: ChannelName | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InteractionPageOut:
    try:
        items, next_cursor = await service.timeline(caller.workspace_id, contact_id, cursor, limit, channel)
    except InvalidCursor as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", "the cursor is not one this API gave") from exc
    return InteractionPageOut(items=[InteractionOut.of(i) for i in items], next_cursor=next_cursor)


@router.get("/interactions/{interaction_id}", response_model=InteractionOut)
async def get_interaction(interaction_id: InteractionId, caller: Reader, service: Service) -> InteractionOut:
    item = await service.get_interaction(caller.workspace_id, interaction_id)
    if item is None:
        raise NotFound("interaction")
    return InteractionOut.of(item)


@router.get("/interactions/{interaction_id}/thread", response_model=list[InteractionOut],
            summary="The conversation an interaction belongs to, oldest first")
async def get_thread(interaction_id: InteractionId, caller: Reader, service: Service,
                     limit: Annotated[int, Query(ge=1, le=500)] = 200) -> list[InteractionOut]:
    items = await service.thread(caller.workspace_id, interaction_id, limit)
    if items is None:
        raise NotFound("interaction")
    return [InteractionOut.of(i) for i in items]


# The sanitised HTML is still shown in a sandbox: no scripts, no plugins, no requests but images.
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src cid: https:; style-src 'unsafe-inline'; "
                               "sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/interactions/{interaction_id}/html", response_class=HTMLResponse,
            summary="An email's HTML body, sanitised for display")
async def get_html(interaction_id: InteractionId, caller: Reader, service: Service) -> HTMLResponse:
    html = await service.html(caller.workspace_id, interaction_id)
    if not html:
        raise NotFound("HTML body")
    return HTMLResponse(html, headers=HTML_HEADERS)


_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}")


def _download(body: bytes, content_type: str, filename: str) -> Response:
    """A file to save, never to render in our origin. A sender's content type that is not a
    plain type/subtype (a header cannot carry it) is served as octet-stream."""
    media_type = content_type if _MEDIA_TYPE.fullmatch(content_type) else "application/octet-stream"
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })


@router.get("/interactions/{interaction_id}/attachments/{index}", response_class=Response,
            summary="Download an attachment stored with an interaction")
async def get_attachment(interaction_id: InteractionId, index: Annotated[int, Path(ge=0, le=1000)],
                         caller: FileReader, service: Service) -> Response:
    found = await service.attachment(caller.workspace_id, interaction_id, index)
    if found is None:
        raise NotFound("attachment")
    filename, content_type, data = found
    return _download(data, content_type, filename)


@router.get("/interactions/{interaction_id}/raw", response_class=Response,
            summary="The raw payload the provider sent (scope interactions:raw)")
async def get_raw(interaction_id: InteractionId, caller: RawReader, service: Service) -> Response:
    raw = await service.raw(caller.workspace_id, interaction_id)
    if raw is None:
        raise NotFound("raw payload")
    extension = "eml" if raw.channel == "email" else "json" if raw.content_type.endswith("json") else "bin"
    return _download(raw.payload, raw.content_type, f"{interaction_id}.{extension}")
