"""Campaign reports over HTTP (``campaigns:read``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from crm_campaigns.domain.errors import InvalidFields, NotFound
from crm_campaigns.service.reports import ReportsService
from crmkit.auth import Principal, require
from crmkit.problems import NotFound as NotFoundProblem
from crmkit.problems import Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["reports"])
Reader = Annotated[Principal, Depends(require("campaigns:read"))]
Reports = Annotated[ReportsService, Depends(state("campaign_reports", ReportsService))]


@router.get("/campaigns/{campaign_id}/report")
async def campaign_report(campaign_id: str, caller: Reader, reports: Reports,
                          interval: Annotated[str, Query(max_length=8)] = "day") -> dict[str, Any]:
    """Per variant: sent, delivered, bounced, failed, suppressed, opened (unique/total; bot
    opens apart), clicked (unique/total), unsubscribed, conversions (deals won and orders
    within the window after a click, by last touch) with their revenue per currency; and human
    opens, clicks and unsubscribes per `interval` (`hour` or `day`, UTC buckets)."""
    try:
        return await reports.campaign_report(caller.workspace_id, campaign_id, interval)
    except InvalidFields as exc:
        raise Problem(422, "validation", "The request is not valid",
                      errors=[e.as_dict() for e in exc.errors]) from exc
    except NotFound as exc:
        raise NotFoundProblem(exc.what) from exc
