"""Campaigns' REST API under /v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from crm_campaigns.service import CampaignsService
from crmkit.auth import Principal, require
from crmkit.problems import NotFound
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["campaigns"])

Reader = Annotated[Principal, Depends(require("campaigns:read"))]


class EngagementOut(BaseModel):
    contact_id: UUID
    interaction_count: int
    last_interaction_at: datetime


@router.get("/contacts/{contact_id}/engagement", response_model=EngagementOut)
async def contact_engagement(
    contact_id: UUID, caller: Reader,
    service: Annotated[CampaignsService, Depends(state("service", CampaignsService))],
) -> EngagementOut:
    found = await service.contact_engagement(caller.workspace_id, str(contact_id))
    if found is None:
        raise NotFound("engagement for this contact")
    return EngagementOut(contact_id=UUID(found.contact_id), interaction_count=found.interaction_count,
                         last_interaction_at=found.last_interaction_at)
