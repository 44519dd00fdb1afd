"""Journeys over HTTP: CRUD, activate/deactivate, runs (``campaigns:read`` / ``campaigns:write``).

A journey body: ``{name, trigger {kind, segment_id?, stage?}, start, steps {name: step},
exit_on [...]}`` — see ``domain/journeys.py`` for the step kinds. Bad steps answer 422 naming
each (``steps.<name>.<field>``)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Header, Query, Response

from crm_campaigns.domain.errors import InvalidFields, NotFound, VersionMismatch
from crm_campaigns.service.journeys import JourneysService, public_journey, public_run
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version, stale
from crmkit.problems import NotFound as NotFoundProblem
from crmkit.problems import Problem
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["journeys"])
Reader = Annotated[Principal, Depends(require("campaigns:read"))]
Writer = Annotated[Principal, Depends(require("campaigns:write"))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Journeys = Annotated[JourneysService, Depends(state("journeys", JourneysService))]
JourneyBody = Annotated[dict[str, Any], Body(description="name, trigger, start, steps, exit_on")]
Cursor = Annotated[str | None, Query(max_length=100)]
Limit = Annotated[int, Query(ge=1, le=200)]
T = TypeVar("T")


async def _call(work: Awaitable[T]) -> T:
    try:
        return await work
    except InvalidFields as exc:
        raise Problem(422, "validation", "The request is not valid",
                      errors=[e.as_dict() for e in exc.errors]) from exc
    except NotFound as exc:
        raise NotFoundProblem(exc.what) from exc
    except VersionMismatch as exc:
        raise stale(exc.current) from exc


def _out(doc: dict[str, Any], response: Response) -> dict[str, Any]:
    response.headers["ETag"] = etag(doc["version"])
    return public_journey(doc)


@router.post("/journeys", status_code=201)
async def create_journey(body: JourneyBody, caller: Writer, journeys: Journeys,
                         response: Response) -> dict[str, Any]:
    """A new journey, inactive until activated."""
    return _out(await _call(journeys.create(caller.workspace_id, body)), response)


@router.get("/journeys")
async def list_journeys(caller: Reader, journeys: Journeys, cursor: Cursor = None,
                        limit: Limit = 50) -> dict[str, Any]:
    docs = await journeys.list_journeys(caller.workspace_id, limit, cursor)
    return {"items": [public_journey(d) for d in docs],
            "next_cursor": docs[-1]["_id"] if len(docs) == limit else None}


@router.get("/journeys/{journey_id}")
async def get_journey(journey_id: str, caller: Reader, journeys: Journeys,
                      response: Response) -> dict[str, Any]:
    return _out(await _call(journeys.get(caller.workspace_id, journey_id)), response)


@router.put("/journeys/{journey_id}")
async def replace_journey(journey_id: str, body: JourneyBody, caller: Writer, journeys: Journeys,
                          response: Response, if_match: IfMatch = None) -> dict[str, Any]:
    version = expected_version(if_match) if if_match else None
    return _out(await _call(journeys.replace(caller.workspace_id, journey_id, body, version)), response)


@router.delete("/journeys/{journey_id}", status_code=204)
async def delete_journey(journey_id: str, caller: Writer, journeys: Journeys) -> Response:
    """Deletes the journey; its running runs exit."""
    await _call(journeys.delete(caller.workspace_id, journey_id))
    return Response(status_code=204)


@router.post("/journeys/{journey_id}/activate")
async def activate_journey(journey_id: str, caller: Writer, journeys: Journeys,
                           response: Response) -> dict[str, Any]:
    """From now on, the trigger starts runs."""
    return _out(await _call(journeys.set_active(caller.workspace_id, journey_id, True)), response)


@router.post("/journeys/{journey_id}/deactivate")
async def deactivate_journey(journey_id: str, caller: Writer, journeys: Journeys,
                             response: Response) -> dict[str, Any]:
    """No new runs; the running ones exit."""
    return _out(await _call(journeys.set_active(caller.workspace_id, journey_id, False)), response)


@router.get("/journeys/{journey_id}/runs")
async def journey_runs(journey_id: str, caller: Reader, journeys: Journeys, cursor: Cursor = None,
                       limit: Limit = 50) -> dict[str, Any]:
    """Each contact's run: state active|done|exited, current step, next_at, exit_reason."""
    docs = await _call(journeys.runs(caller.workspace_id, journey_id, limit, cursor))
    return {"items": [public_run(d) for d in docs],
            "next_cursor": docs[-1]["_id"] if len(docs) == limit else None}
