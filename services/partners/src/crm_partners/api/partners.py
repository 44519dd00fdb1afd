"""Partners, their API keys, subscriptions and Kafka users under /v1.

A workspace admin (``partners:admin``) manages everything here; a partner's own API key with
``subscriptions:write`` manages its own subscriptions. Another workspace's ids, and for a
partner another partner's, answer 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crm_partners.api.auth import caller
from crm_partners.api.caller import PARTNER_SCOPES, Caller
from crm_partners.domain.accounts import (
    ApiKey,
    Delivery,
    Partner,
    PartnerStatus,
    Subscription,
    SubscriptionStatus,
)
from crm_partners.service.accounts import Accounts, invalid
from crmkit.etags import etag, expected_version
from crmkit.fields import FieldError
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["partners"])

MAX_PAGE = 200
Admin = Annotated[Caller, Depends(caller("partners:admin"))]
# A workspace admin, or a partner acting on its own subscriptions.
Manager = Annotated[Caller, Depends(caller("partners:admin", partner_scope="subscriptions:write"))]
Service = Annotated[Accounts, Depends(state("accounts", Accounts))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


# --- partners ---


class PartnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200, description="Unique in the workspace")
    description: str = Field(default="", max_length=2000)


class PartnerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    status: PartnerStatus | None = Field(default=None, description="suspended: its keys stop working and "
                                                                   "its Kafka user loses its ACLs")


class PartnerOut(BaseModel):
    id: UUID
    name: str
    description: str
    status: PartnerStatus
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, partner: Partner) -> PartnerOut:
        return cls(id=partner.id, name=partner.name, description=partner.description, status=partner.status,
                   version=partner.version, created_at=partner.created_at, updated_at=partner.updated_at)


class PartnerPageOut(BaseModel):
    items: list[PartnerOut]
    next_cursor: str | None


def _shown(partner: Partner, response: Response) -> PartnerOut:
    response.headers["ETag"] = etag(partner.version)
    return PartnerOut.of(partner)


@router.post("/partners", response_model=PartnerOut, status_code=201,
             responses={409: {"description": "The workspace has a partner of this name"}})
async def create_partner(body: PartnerIn, who: Admin, accounts: Service, response: Response) -> PartnerOut:
    return _shown(await accounts.create_partner(who.workspace_id, body.name, body.description), response)


@router.get("/partners", response_model=PartnerPageOut)
async def list_partners(who: Admin, accounts: Service, cursor: Cursor = None,
                        limit: Limit = 50) -> PartnerPageOut:
    """Oldest first."""
    items, next_cursor = await accounts.partners(who.workspace_id, cursor, limit)
    return PartnerPageOut(items=[PartnerOut.of(p) for p in items], next_cursor=next_cursor)


@router.get("/partners/{partner_id}", response_model=PartnerOut)
async def get_partner(partner_id: UUID, who: Admin, accounts: Service, response: Response) -> PartnerOut:
    return _shown(await accounts.partner(who.workspace_id, partner_id), response)


@router.patch("/partners/{partner_id}", response_model=PartnerOut,
              responses={412: {"description": "If-Match is not the current version"},
                         428: {"description": "If-Match is missing"}})
async def update_partner(partner_id: UUID, body: PartnerUpdate, who: Admin, accounts: Service,
                         response: Response, if_match: IfMatch = None) -> PartnerOut:
    """Rename, describe, suspend or reactivate; send the ETag you read in If-Match."""
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "description", "status"):
        if name in changes and changes[name] is None:
            raise invalid(FieldError(name, "cannot be null"))
    partner = await accounts.update_partner(who.workspace_id, partner_id, changes, expected_version(if_match))
    return _shown(partner, response)


@router.delete("/partners/{partner_id}", status_code=204)
async def delete_partner(partner_id: UUID, who: Admin, accounts: Service) -> Response:
    """Removes the partner, its keys, subscriptions and pending deliveries."""
    await accounts.delete_partner(who.workspace_id, partner_id)
    return Response(status_code=204)


# --- API keys ---


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="default", max_length=200)
    scopes: list[str] = Field(max_length=len(PARTNER_SCOPES),
                              description="Some of " + ", ".join(sorted(PARTNER_SCOPES)))
    expires_at: AwareDatetime | None = Field(default=None, description="Never, if left out")


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400,
                               description="How long the old key keeps working (or until it expires, "
                                           "if sooner)")


class KeyOut(BaseModel):
    id: UUID
    partner_id: UUID
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute")

    @classmethod
    def of(cls, key: ApiKey, now: datetime) -> KeyOut:
        status: Literal["active", "expired", "revoked"] = (
            "revoked" if key.revoked_at is not None else "active" if key.usable(now) else "expired")
        return cls(id=key.id, partner_id=key.partner_id, name=key.name, prefix=key.prefix,
                   scopes=list(key.scopes), status=status, created_at=key.created_at,
                   expires_at=key.expires_at, revoked_at=key.revoked_at, last_used_at=key.last_used_at)


class KeyCreatedOut(KeyOut):
    key: str = Field(description="The secret, shown this once: send it in X-API-Key")


class RotatedOut(KeyCreatedOut):
    previous: KeyOut = Field(description="The rotated key, with the end of its grace as expires_at")


class KeyPageOut(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None


def _created(key: ApiKey, secret: str) -> dict[str, Any]:
    return {**KeyOut.of(key, datetime.now(UTC)).model_dump(), "key": secret}


@router.post("/partners/{partner_id}/keys", response_model=KeyCreatedOut, status_code=201,
             responses={409: {"description": "The partner has too many usable keys"}})
async def create_key(partner_id: UUID, body: KeyIn, who: Admin, accounts: Service) -> KeyCreatedOut:
    key, secret = await accounts.create_key(who.workspace_id, partner_id, body.name, body.scopes,
                                            body.expires_at)
    return KeyCreatedOut(**_created(key, secret))


@router.get("/partners/{partner_id}/keys", response_model=KeyPageOut)
async def list_keys(partner_id: UUID, who: Admin, accounts: Service, cursor: Cursor = None,
                    limit: Limit = 50) -> KeyPageOut:
    """Every key, revoked and expired ones too, oldest first; never their secrets."""
    items, next_cursor = await accounts.keys(who.workspace_id, partner_id, cursor, limit)
    now = datetime.now(UTC)
    return KeyPageOut(items=[KeyOut.of(k, now) for k in items], next_cursor=next_cursor)


@router.post("/partners/{partner_id}/keys/{key_id}/rotate", response_model=RotatedOut, status_code=201,
             responses={409: {"description": "The key is revoked or expired"}})
async def rotate_key(partner_id: UUID, key_id: UUID, who: Admin, accounts: Service,
                     body: RotateIn | None = None) -> RotatedOut:
    """A new key with the same name and scopes; the old one works until the grace ends."""
    grace = timedelta(seconds=(body or RotateIn()).grace_seconds)
    key, secret, previous = await accounts.rotate_key(who.workspace_id, partner_id, key_id, grace)
    return RotatedOut(**_created(key, secret), previous=KeyOut.of(previous, datetime.now(UTC)))


@router.delete("/partners/{partner_id}/keys/{key_id}", status_code=204)
async def revoke_key(partner_id: UUID, key_id: UUID, who: Admin, accounts: Service) -> Response:
    """The key stops working at once."""
    await accounts.revoke_key(who.workspace_id, partner_id, key_id)
    return Response(status_code=204)


# --- subscriptions ---


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    event_types: list[Annotated[str, Field(max_length=200)]] = Field(
        max_length=50,
        description="Public event types from the event catalogue, e.g. crm.pipeline.deal.won.v1")
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description="Equality on top-level fields of the events' public data; a list is any-of: "
                    '{"pipeline_id": "..."}. A condition applies to the chosen types that publish its field')
    delivery: Delivery = Field(description="webhook: signed POSTs to url; kafka: the partner's Kafka user "
                                           "reads the public topics; pull: GET /v1/events")
    url: str | None = Field(default=None, max_length=2000, description="For webhook delivery: where to POST")


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    event_types: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None, max_length=50)
    filters: dict[str, Any] | None = None
    url: str | None = Field(default=None, max_length=2000)
    status: SubscriptionStatus | None = None


class SubscriptionOut(BaseModel):
    id: UUID
    partner_id: UUID
    name: str
    event_types: list[str]
    filters: dict[str, Any]
    delivery: Delivery
    url: str | None
    status: SubscriptionStatus
    disabled_reason: str | None
    version: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, sub: Subscription) -> SubscriptionOut:
        return cls(id=sub.id, partner_id=sub.partner_id, name=sub.name, event_types=list(sub.event_types),
                   filters=sub.filters, delivery=sub.delivery, url=sub.url, status=sub.status,
                   disabled_reason=sub.disabled_reason, version=sub.version, created_at=sub.created_at,
                   updated_at=sub.updated_at)


class SubscriptionCreatedOut(SubscriptionOut):
    secret: str | None = Field(description="For webhook delivery: the signing secret (whsec_...), shown "
                                           "this once")


class SubscriptionPageOut(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None


def _shown_subscription(sub: Subscription, response: Response) -> SubscriptionOut:
    response.headers["ETag"] = etag(sub.version)
    return SubscriptionOut.of(sub)


@router.post("/partners/{partner_id}/subscriptions", response_model=SubscriptionCreatedOut, status_code=201)
async def create_subscription(partner_id: UUID, body: SubscriptionIn, who: Manager, accounts: Service,
                              response: Response) -> SubscriptionCreatedOut:
    sub, secret = await accounts.create_subscription(who, partner_id, body.name, body.event_types,
                                                     body.filters, body.delivery, body.url)
    return SubscriptionCreatedOut(**_shown_subscription(sub, response).model_dump(), secret=secret)


@router.get("/partners/{partner_id}/subscriptions", response_model=SubscriptionPageOut)
async def list_subscriptions(partner_id: UUID, who: Manager, accounts: Service, cursor: Cursor = None,
                             limit: Limit = 50) -> SubscriptionPageOut:
    """Oldest first."""
    items, next_cursor = await accounts.subscriptions(who, partner_id, cursor, limit)
    return SubscriptionPageOut(items=[SubscriptionOut.of(s) for s in items], next_cursor=next_cursor)


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
async def get_subscription(subscription_id: UUID, who: Manager, accounts: Service,
                           response: Response) -> SubscriptionOut:
    return _shown_subscription(await accounts.subscription(who, subscription_id), response)


@router.patch("/subscriptions/{subscription_id}", response_model=SubscriptionOut,
              responses={412: {"description": "If-Match is not the current version"},
                         428: {"description": "If-Match is missing"}})
async def update_subscription(subscription_id: UUID, body: SubscriptionUpdate, who: Manager,
                              accounts: Service, response: Response,
                              if_match: IfMatch = None) -> SubscriptionOut:
    """Change the name, event types, filters, URL (webhook) or status; send the ETag in If-Match.
    Enabling a subscription its endpoint had disabled (410) starts its deliveries again."""
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "event_types", "filters", "url", "status"):
        if name in changes and changes[name] is None:
            raise invalid(FieldError(name, "cannot be null"))
    sub = await accounts.update_subscription(who, subscription_id, changes, expected_version(if_match))
    return _shown_subscription(sub, response)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: UUID, who: Manager, accounts: Service) -> Response:
    """Removes it with its secrets and deliveries."""
    await accounts.delete_subscription(who, subscription_id)
    return Response(status_code=204)


# --- Kafka users ---


@router.get("/partners/{partner_id}/kafka-user",
            summary="The partner's Strimzi KafkaUser (JSON, which is also YAML)")
async def get_kafka_user(partner_id: UUID, who: Admin, accounts: Service) -> dict[str, Any]:
    """SCRAM-SHA-512 credentials with Read and Describe on the public topics of its enabled
    kafka subscriptions and Read on its consumer groups ``partner.<partner id>.*``; no ACL
    while it is suspended. ``python -m crm_partners.kafka_users`` writes them for a workspace."""
    return await accounts.kafka_user(who.workspace_id, partner_id)
