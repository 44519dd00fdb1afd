"""Pipeline's REST API under /v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from crm_pipeline.service import PipelineService
from crmkit.auth import Principal, require
from crmkit.problems import NotFound
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["pipeline"])

Reader = Annotated[Principal, Depends(require("pipeline:read"))]


class ActivityOut(BaseModel):
    contact_id: UUID
    interaction_count: int
    last_activity_at: datetime


@router.get("/contacts/{contact_id}/activity", response_model=ActivityOut)
async def contact_activity(
    contact_id: UUID, caller: Reader,
    service: Annotated[PipelineService, Depends(state("service", PipelineService))],
) -> ActivityOut:
    activity = await service.contact_activity(caller.workspace_id, contact_id)
    if activity is None:
        raise NotFound("activity for this contact")
    return ActivityOut(contact_id=activity.contact_id, interaction_count=activity.interaction_count,
                       last_activity_at=activity.last_activity_at)
