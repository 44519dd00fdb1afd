"""A/B tests of campaigns over HTTP: ``PUT /v1/campaigns/{id}/variants`` (``campaigns:write``)
and ``GET /v1/campaigns/{id}/ab`` (``campaigns:read``). Errors map through ``api/errors.py``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from crm_campaigns.service.ab import AbTests
from crmkit.auth import Principal, require
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["a/b tests"])
Reader = Annotated[Principal, Depends(require("campaigns:read"))]
Writer = Annotated[Principal, Depends(require("campaigns:write"))]
Tests = Annotated[AbTests, Depends(state("ab_tests", AbTests))]
VariantsBody = Annotated[dict[str, Any], Body(
    description='{"variants": [{"name", "share_percent", "template_id" | "subject"}], '
                '"metric": "open" | "click", "decide_after": seconds}')]


@router.put("/campaigns/{campaign_id}/variants")
async def set_variants(campaign_id: str, body: VariantsBody, caller: Writer, tests: Tests) -> dict[str, Any]:
    """Make a draft or scheduled campaign an A/B test: each variant goes to its share of the
    audience first; after `decide_after` seconds the best unique open (or click) rate wins
    and the rest of the audience gets the winner."""
    return await tests.set_variants(caller.workspace_id, campaign_id, body)


@router.get("/campaigns/{campaign_id}/ab")
async def ab_results(campaign_id: str, caller: Reader, tests: Tests) -> dict[str, Any]:
    """Each variant's test sends, unique opens and clicks and rate; the winner once chosen."""
    return await tests.results(caller.workspace_id, campaign_id)
