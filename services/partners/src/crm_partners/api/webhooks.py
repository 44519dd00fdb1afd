"""Webhook delivery over HTTP: a subscription's delivery log and DLQ, retries, replays, secret
rotation and re-enabling. A workspace admin sees every subscription of the workspace; a partner
(its API key) only its own: anything else answers 404, like something that does not exist."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_partners.api.auth import caller
from crm_partners.api.caller import Caller
from crm_partners.domain.signing import message_id
from crm_partners.service.deliveries import (
    DEFAULT_GRACE,
    MAX_GRACE,
    MAX_PAGE,
    Deliveries,
    DeliveryPage,
)
from crm_partners.store.deliveries import DeliveryRecord, DeliveryStatus
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["webhooks"])

# Reading a subscription's deliveries and sending them again are one partner scope.
Replayer = Annotated[Caller, Depends(caller("partners:admin", partner_scope="deliveries:replay"))]
Manager = Annotated[Caller, Depends(caller("partners:admin", partner_scope="subscriptions:write"))]
Service = Annotated[Deliveries, Depends(state("deliveries", Deliveries))]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Cursor = Annotated[str | None, Query(max_length=400)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None = Field(description="The endpoint's HTTP status; none when no answer came")
    latency_ms: int
    error: str | None = Field(description="Why it failed: HTTP status, timeout, refused address...")


class DeliveryOut(BaseModel):
    id: int
    subscription_id: UUID
    event_id: str
    event_type: str
    message_id: str = Field(description="The webhook-id header: the same across retries; a replay's own")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="When it is tried next, while pending")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    replay_id: UUID | None
    attempt_log: list[AttemptOut] = Field(description="Every attempt, oldest first")

    @classmethod
    def of(cls, d: DeliveryRecord) -> DeliveryOut:
        return cls(id=d.id, subscription_id=d.subscription_id, event_id=d.event_id, event_type=d.event_type,
                   message_id=message_id(d.event_id, d.replay_id), status=d.status,
                   attempts=d.attempts, next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                   last_status_code=d.last_status_code, last_error=d.last_error, created_at=d.created_at,
                   delivered_at=d.delivered_at, replay_id=d.replay_id,
                   attempt_log=[AttemptOut(attempted_at=a.attempted_at, status_code=a.status_code,
                                           latency_ms=a.latency_ms, error=a.error) for a in d.log])


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: DeliveryPage) -> DeliveryPageOut:
        return cls(items=[DeliveryOut.of(d) for d in page.items], next_cursor=page.next_cursor)


class RequeuedOut(BaseModel):
    requeued: int


class ReplayIn(BaseModel):
    """A time range of the events' times, or everything after one event of the feed."""

    model_config = ConfigDict(extra="forbid")

    from_time: datetime | None = Field(default=None, description="Inclusive, with its UTC offset")
    to_time: datetime | None = Field(default=None, description="Exclusive, with its UTC offset")
    after_event_id: str | None = Field(default=None, min_length=1, max_length=200)


class ReplayOut(BaseModel):
    id: UUID
    subscription_id: UUID
    deliveries: int = Field(description="New deliveries queued, in feed order")
    created_at: datetime


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(default=int(DEFAULT_GRACE.total_seconds()), ge=0,
                               le=int(MAX_GRACE.total_seconds()),
                               description="How long the secrets valid now keep signing")


class RotatedOut(BaseModel):
    secret: str = Field(description="The new signing secret (whsec_...), shown this once")
    previous_expires_at: datetime = Field(description="Until then every request carries both signatures")


@router.get("/subscriptions/{subscription_id}/deliveries", response_model=DeliveryPageOut)
async def list_deliveries(subscription_id: UUID, who: Replayer, deliveries: Service,
                          status: DeliveryStatus | None = None, cursor: Cursor = None,
                          limit: Limit = 50) -> DeliveryPageOut:
    """The delivery log, newest first, with every attempt's status code, latency and error."""
    return DeliveryPageOut.of(await deliveries.deliveries(who, subscription_id, status, cursor, limit))


@router.get("/subscriptions/{subscription_id}/dlq", response_model=DeliveryPageOut)
async def dead_letters(subscription_id: UUID, who: Replayer, deliveries: Service, cursor: Cursor = None,
                       limit: Limit = 50) -> DeliveryPageOut:
    """Deliveries given up after the retry window (the DLQ), newest first."""
    return DeliveryPageOut.of(await deliveries.deliveries(who, subscription_id, "dead", cursor, limit))


@router.post("/subscriptions/{subscription_id}/dlq/retry", response_model=RequeuedOut)
async def retry_dead_letters(subscription_id: UUID, who: Replayer, deliveries: Service) -> RequeuedOut:
    """Queues every dead delivery again, each with a new retry window."""
    return RequeuedOut(requeued=await deliveries.retry_dead(who, subscription_id))


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut)
async def get_delivery(delivery_id: DeliveryId, who: Replayer, deliveries: Service) -> DeliveryOut:
    return DeliveryOut.of(await deliveries.delivery(who, delivery_id))


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryOut,
             responses={409: {"description": "The delivery is pending already"}})
async def retry_delivery(delivery_id: DeliveryId, who: Replayer, deliveries: Service) -> DeliveryOut:
    """Sends a dead (or delivered) delivery again, with the same message id."""
    return DeliveryOut.of(await deliveries.retry(who, delivery_id))


@router.post("/subscriptions/{subscription_id}/replay", response_model=ReplayOut, status_code=202,
             responses={422: {"description": "A bad range or an unknown event id"}})
async def replay(subscription_id: UUID, body: ReplayIn, who: Replayer, deliveries: Service) -> ReplayOut:
    """Delivers again every stored event the subscription takes (its event types and filters as
    they are now) in ``[from_time, to_time)`` or after ``after_event_id``, in feed order, as
    new messages (``webhook-id`` ``<event id>.r<replay id>``)."""
    done = await deliveries.replay(who, subscription_id, from_time=body.from_time, to_time=body.to_time,
                                   after_event_id=body.after_event_id)
    return ReplayOut(id=done.id, subscription_id=done.subscription_id, deliveries=done.deliveries,
                     created_at=done.created_at)


@router.post("/subscriptions/{subscription_id}/secrets/rotate", response_model=RotatedOut, status_code=201)
async def rotate_secret(subscription_id: UUID, who: Manager, deliveries: Service,
                        body: RotateIn | None = None) -> RotatedOut:
    """A new signing secret. The secrets valid now keep signing for ``grace_seconds`` (24 hours
    unless told), so every request carries both signatures while the partner switches."""
    grace = timedelta(seconds=(body or RotateIn()).grace_seconds)
    rotated = await deliveries.rotate_secret(who, subscription_id, grace)
    return RotatedOut(secret=rotated.secret, previous_expires_at=rotated.previous_expires_at)


@router.post("/subscriptions/{subscription_id}/enable", status_code=204)
async def enable(subscription_id: UUID, who: Manager, deliveries: Service) -> Response:
    """Enables a disabled subscription (an endpoint that answered 410, say): its pending
    deliveries resume in order."""
    await deliveries.enable(who, subscription_id)
    return Response(status_code=204)
