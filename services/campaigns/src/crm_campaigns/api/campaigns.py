"""Email campaigns over HTTP: drafts, and the actions that send, pause, resume and cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crm_campaigns.domain.model import Campaign
from crm_campaigns.service.campaigns import MAX_PAGE, Campaigns, draft_of
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["campaigns"])

Reader = Annotated[Principal, Depends(require("campaigns:read"))]
Writer = Annotated[Principal, Depends(require("campaigns:write"))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Service = Annotated[Campaigns, Depends(state("campaigns", Campaigns))]


class AudienceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segments: list[UUID] = Field(min_length=1, max_length=20, description="contacts' segment ids")
    exclude: list[UUID] = Field(default_factory=list, max_length=20,
                                description="members of these segments are left out")


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(max_length=5, examples=["21:00"])
    end: str = Field(max_length=5, examples=["08:00"])
    time_zone: str = Field(max_length=64, examples=["Europe/Paris"],
                           description="used for contacts without a time_zone custom field")


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    template_id: UUID
    audience: AudienceIn
    schedule_at: AwareDatetime | None = None
    throttle_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    quiet_hours: QuietHoursIn | None = None


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule_at: AwareDatetime | None = None


class AudienceOut(BaseModel):
    segments: list[str]
    exclude: list[str]


class CampaignOut(BaseModel):
    id: UUID
    name: str
    template_id: UUID
    audience: AudienceOut
    status: str
    schedule_at: datetime | None
    throttle_per_minute: int | None
    quiet_hours: QuietHoursIn | None
    version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: dict[str, int] | None = Field(
        default=None, description="sends per status: queued, sent, delivered, bounced, failed, suppressed")

    @classmethod
    def of(cls, c: Campaign, progress: dict[str, int] | None = None) -> CampaignOut:
        q = c.quiet_hours
        return cls(id=UUID(c.id), name=c.name, template_id=UUID(c.template_id),
                   audience=AudienceOut(segments=list(c.audience.segments), exclude=list(c.audience.exclude)),
                   status=c.status, schedule_at=c.schedule_at, throttle_per_minute=c.throttle_per_minute,
                   quiet_hours=QuietHoursIn(start=q.start, end=q.end, time_zone=q.time_zone) if q else None,
                   version=c.version, created_at=c.created_at, updated_at=c.updated_at,
                   started_at=c.started_at, finished_at=c.finished_at, progress=progress)


class CampaignPageOut(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None


def _draft(body: CampaignIn) -> dict[str, object]:
    data = body.model_dump()
    data["template_id"] = str(body.template_id)
    data["audience"] = {"segments": [str(s) for s in body.audience.segments],
                        "exclude": [str(s) for s in body.audience.exclude]}
    return data


@router.post("/campaigns", response_model=CampaignOut, status_code=201)
async def create_campaign(body: CampaignIn, caller: Writer, campaigns: Service,
                          response: Response) -> CampaignOut:
    """A draft. 422 for an unknown template or segment, a schedule in the past, bad quiet hours."""
    campaign = await campaigns.create(caller.workspace_id, draft_of(_draft(body)))
    response.headers["ETag"] = etag(campaign.version)
    return CampaignOut.of(campaign)


@router.get("/campaigns", response_model=CampaignPageOut)
async def list_campaigns(caller: Reader, campaigns: Service,
                         cursor: Annotated[str | None, Query(max_length=100)] = None,
                         limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> CampaignPageOut:
    items = await campaigns.list(caller.workspace_id, limit, cursor)
    return CampaignPageOut(items=[CampaignOut.of(c) for c in items],
                           next_cursor=items[-1].id if len(items) == limit else None)


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut)
async def get_campaign(campaign_id: UUID, caller: Reader, campaigns: Service,
                       response: Response) -> CampaignOut:
    """The campaign with its progress: how many sends are in each status."""
    campaign = await campaigns.get(caller.workspace_id, str(campaign_id))
    progress = await campaigns.progress(caller.workspace_id, campaign.id)
    response.headers["ETag"] = etag(campaign.version)
    return CampaignOut.of(campaign, progress)


@router.put("/campaigns/{campaign_id}", response_model=CampaignOut)
async def update_campaign(campaign_id: UUID, body: CampaignIn, caller: Writer, campaigns: Service,
                          response: Response, if_match: IfMatch = None) -> CampaignOut:
    """A draft only. `If-Match` required (428 without, 412 when stale)."""
    version = expected_version(if_match)
    campaign = await campaigns.update(caller.workspace_id, str(campaign_id), draft_of(_draft(body)), version)
    response.headers["ETag"] = etag(campaign.version)
    return CampaignOut.of(campaign)


@router.delete("/campaigns/{campaign_id}", status_code=204)
async def delete_campaign(campaign_id: UUID, caller: Writer, campaigns: Service) -> Response:
    """A draft, cancelled or sent campaign (its sends stay for reports)."""
    await campaigns.delete(caller.workspace_id, str(campaign_id))
    return Response(status_code=204)


async def _act(campaigns: Campaigns, caller: Principal, campaign_id: UUID, action: str, response: Response,
               schedule_at: datetime | None = None) -> CampaignOut:
    campaign = await campaigns.act(caller.workspace_id, str(campaign_id), action, schedule_at)
    response.headers["ETag"] = etag(campaign.version)
    return CampaignOut.of(campaign)


@router.post("/campaigns/{campaign_id}/schedule", response_model=CampaignOut)
async def schedule_campaign(campaign_id: UUID, caller: Writer, campaigns: Service, response: Response,
                            body: ScheduleIn | None = None) -> CampaignOut:
    """Send at `schedule_at` (the body's, else the campaign's; in the future). 422 for an
    empty audience."""
    return await _act(campaigns, caller, campaign_id, "schedule", response,
                      body.schedule_at if body else None)


@router.post("/campaigns/{campaign_id}/send", response_model=CampaignOut)
async def send_campaign(campaign_id: UUID, caller: Writer, campaigns: Service,
                        response: Response) -> CampaignOut:
    """Start sending now. 422 for an empty audience."""
    return await _act(campaigns, caller, campaign_id, "send", response)


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignOut)
async def pause_campaign(campaign_id: UUID, caller: Writer, campaigns: Service,
                         response: Response) -> CampaignOut:
    """Stop sending after the current batch, until resumed."""
    return await _act(campaigns, caller, campaign_id, "pause", response)


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignOut)
async def resume_campaign(campaign_id: UUID, caller: Writer, campaigns: Service,
                          response: Response) -> CampaignOut:
    return await _act(campaigns, caller, campaign_id, "resume", response)


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel_campaign(campaign_id: UUID, caller: Writer, campaigns: Service,
                          response: Response) -> CampaignOut:
    """Stop for good after the current batch; sends made stay."""
    return await _act(campaigns, caller, campaign_id, "cancel", response)
