"""The commerce webhook: a store's orders and refunds, one event per request, signed with the
store's own secret (X-Crm-Timestamp and X-Crm-Signature, as domain/signing.py describes). The
workspace is the one the store of the URL is mapped to (INGEST_COMMERCE_STORES).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from crm_ingest.api.deps import (
    STREAM_LIMIT,
    PayloadTooLarge,
    Webhooks,
    configured,
    read_limited,
)
from crm_ingest.channel_config import CommerceChannel
from crm_ingest.channel_routing import RawItem
from crm_ingest.domain import signing
from crm_ingest.domain.commerce import STORE, NotCommerce, read_event, record
from crmkit.problems import Problem

router = APIRouter(prefix="/v1/channels/commerce", tags=["commerce"])


Channel = Annotated[CommerceChannel, Depends(configured("commerce", lambda s: s.commerce))]


class CommerceAccepted(BaseModel):
    status: Literal["accepted", "ignored"]  # ignored: an event type not taken here
    id: str | None  # the raw record's id


@router.post(
    "/{store}/webhook",
    status_code=202,
    response_model=CommerceAccepted,
    summary="Accept one signed order or refund event from a store; it is processed asynchronously",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}}}}},
)
async def commerce_webhook(request: Request, store: Annotated[str, Path(pattern=STORE)],
                           config: Channel, intake: Webhooks) -> CommerceAccepted:
    account = config.stores.get(store)
    if account is None:
        raise intake.unknown("commerce", "store")
    body = await read_limited(request, config.max_bytes)
    verdict = signing.verify(account.secrets, body, request.headers.get(signing.TIMESTAMP_HEADER),
                             request.headers.get(signing.SIGNATURE_HEADER), time.time())
    if verdict is signing.Verdict.STALE:
        raise intake.refused("commerce", "stale", f"{signing.TIMESTAMP_HEADER} is not within "
                                                  f"{signing.TOLERANCE_SECONDS} seconds of now")
    if verdict is not signing.Verdict.VALID:
        raise intake.refused("commerce", "signature", f"{signing.SIGNATURE_HEADER} is missing or is "
                                                      "not the request's signature")
    intake.throttle("commerce", config.stores, [store])
    try:
        found = read_event(body)
    except NotCommerce as exc:
        raise Problem(422, "invalid-commerce-event", "Invalid commerce event", str(exc)) from exc
    if found is None:
        return CommerceAccepted(status="ignored", id=None)
    event, data = found
    customer = event.customer.email.lower() if event.customer.email else event.customer.phone or ""
    try:
        routed = await intake.accept("commerce", "commerce-webhook", "application/json", config.stores,
                                     [RawItem(store, customer, record(store, data))], "commerce store")
    except MessageSizeTooLargeError as exc:
        raise PayloadTooLarge(STREAM_LIMIT) from exc
    return CommerceAccepted(status="accepted", id=routed.ids[0])
