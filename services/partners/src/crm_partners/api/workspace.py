"""The workspace's opt-in to public events under /v1: ``GET/PUT /v1/settings`` (partners:admin).

Nothing of a workspace is published, stored for replay or sent to partners until an admin
enables it here. A write names the version it changes in If-Match (``"0"`` for the first).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_partners.api.auth import caller
from crm_partners.api.caller import Caller
from crm_partners.domain.policy import DOMAINS
from crm_partners.service.projection import InvalidSettings, Projection, StaleSettings
from crm_partners.store.settings import WorkspaceSettings
from crmkit.etags import etag, expected_version, stale
from crmkit.problems import Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["workspace"])

Admin = Annotated[Caller, Depends(caller("partners:admin"))]
Service = Annotated[Projection, Depends(state("projection", Projection))]
IfMatch = Annotated[str | None, Header(max_length=100)]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    domains: list[str] = Field(default_factory=list, max_length=len(DOMAINS),
                               description=f"Public topics to publish, of {', '.join(DOMAINS)}; empty: all")


class SettingsOut(BaseModel):
    enabled: bool
    domains: list[str]
    available_domains: list[str]
    version: int
    updated_at: datetime | None


def _out(found: WorkspaceSettings | None, response: Response) -> SettingsOut:
    version = found.version if found else 0
    response.headers["ETag"] = etag(version)
    return SettingsOut(enabled=bool(found and found.enabled), domains=list(found.domains) if found else [],
                       available_domains=list(DOMAINS), version=version,
                       updated_at=found.updated_at if found else None)


@router.get("/settings", summary="The workspace's public events settings (version 0: never set)")
async def get_settings(who: Admin, service: Service, response: Response) -> SettingsOut:
    return _out(await service.workspace_settings(who.workspace_id), response)


@router.put("/settings", summary="Opt in to (or out of) public events; If-Match the current ETag",
            responses={412: {"description": "Changed since read"}, 428: {"description": "If-Match missing"}})
async def put_settings(body: SettingsIn, who: Admin, service: Service, response: Response,
                       if_match: IfMatch = None) -> SettingsOut:
    version = expected_version(if_match)
    try:
        written = await service.update_settings(who.workspace_id, body.enabled, body.domains, version)
    except InvalidSettings as exc:
        raise Problem(422, "validation", "The request is not valid",
                      errors=[{"field": "body.domains", "message": str(exc)}]) from exc
    except StaleSettings as exc:
        raise stale(exc.current) from exc
    return _out(written, response)
