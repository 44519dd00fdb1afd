"""A ticket's conversation over HTTP: agents' replies and internal notes, and every message."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.api.routes import TicketOut
from crm_ticketing.service.conversation import MAX_MESSAGES_PAGE, Conversation, Written
from crm_ticketing.store.messages import TicketMessage
from crmkit.auth import Principal, require
from crmkit.etags import etag
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["messages"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Writer = Annotated[Principal, Depends(require("tickets:write"))]
Service = Annotated[Conversation, Depends(state("conversation", Conversation))]


class MessageIn(BaseModel):
    """Checked by the conversation's rules, so that every bad field is named in one 422."""

    model_config = ConfigDict(extra="allow")

    body: Any = Field(default=None, json_schema_extra={"type": "string"}, description="The text (plain)")
    internal: Any = Field(default=False, json_schema_extra={"type": "boolean"},
                          description="An internal note: kept in the ticket, never sent")
    status: Any = Field(default=None, json_schema_extra={"type": "string"},
                        description="Move the ticket to this status with the message (as a PATCH would)")
    attachments: Any = Field(default=None, json_schema_extra={"type": "array", "items": {"type": "object"}},
                             description="Notes only: references {ref, filename, content_type, size}")
    after: Any = Field(default=None, json_schema_extra={"type": "string"},
                       description="The id of the last message you saw: 409 collision if others wrote since")
    force: Any = Field(default=False, json_schema_extra={"type": "boolean"},
                       description="Write despite a collision")


class AttachmentOut(BaseModel):
    ref: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None


class MessageOut(BaseModel):
    id: str
    direction: str
    author: str
    body: str
    occurred_at: datetime
    attachments: list[AttachmentOut]
    delivery_status: str | None
    delivery_error: str | None
    delivery_at: datetime | None
    macro_id: UUID | None

    @classmethod
    def of(cls, message: TicketMessage) -> MessageOut:
        return cls(id=message.id, direction=message.direction, author=message.author, body=message.body,
                   occurred_at=message.occurred_at,
                   attachments=[AttachmentOut(**a) for a in message.attachments],
                   delivery_status=message.delivery_status, delivery_error=message.delivery_error,
                   delivery_at=message.delivery_at, macro_id=message.macro_id)


class WrittenOut(BaseModel):
    message: MessageOut | None
    ticket: TicketOut

    @classmethod
    def of(cls, written: Written, response: Response) -> WrittenOut:
        response.headers["ETag"] = etag(written.ticket.version)
        return cls(message=MessageOut.of(written.message) if written.message else None,
                   ticket=TicketOut.of(written.ticket))


class MessagePageOut(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


@router.post("/tickets/{ticket_id}/messages", response_model=WrittenOut, status_code=201,
             responses={409: {"description": "collision: others wrote since `after` (listed in `messages`); "
                                             "or no-recipient"},
                        422: {"description": "Bad fields, or a status the ticket cannot go to"}})
async def add_message(ticket_id: UUID, body: MessageIn, caller: Writer, service: Service,
                      response: Response) -> WrittenOut:
    """Reply to the requester (sent on the ticket's channel through ingest; an email as
    `Re: <subject> [#token]`, threaded under the customer's latest message) or write an
    internal note; optionally move the ticket's status in the same transaction. A reply to a
    `new` ticket opens it."""
    written = await service.add_message(caller.workspace_id, caller.subject, ticket_id,
                                        body.model_dump(exclude_unset=True))
    return WrittenOut.of(written, response)


@router.get("/tickets/{ticket_id}/messages", response_model=MessagePageOut)
async def list_messages(
    ticket_id: UUID,
    caller: Reader,
    service: Service,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_MESSAGES_PAGE)] = 50,
) -> MessagePageOut:
    """The customer's messages, replies and notes, oldest first (in the order ticketing
    learnt them), with each reply's delivery status."""
    page = await service.messages(caller.workspace_id, ticket_id, cursor, limit)
    return MessagePageOut(items=[MessageOut.of(m) for m in page.items], next_cursor=page.next_cursor)
