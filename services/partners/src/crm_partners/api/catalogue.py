"""The event catalogue under /v1: the AsyncAPI 3 document of the public topics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from crm_partners.api.auth import caller
from crm_partners.api.caller import Caller
from crm_partners.domain.catalogue import asyncapi

router = APIRouter(prefix="/v1", tags=["catalogue"])

Reader = Annotated[Caller, Depends(caller("events:read"))]


@router.get("/catalogue/asyncapi.json",
            summary="Every public topic and event type with its payload schema and an example (AsyncAPI 3.0)")
async def catalogue(_: Reader) -> dict[str, Any]:
    return asyncapi()
