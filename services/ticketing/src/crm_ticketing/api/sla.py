"""SLA over HTTP: business-hours calendars and policies (scope ``sla:admin`` to write), a
ticket's clocks, and the compliance report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.service.sla import MAX_PAGE, Compliance, SlaAdmin, TargetStatus
from crm_ticketing.store.sla import CalendarRow, PolicyRow
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["sla"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Admin = Annotated[Principal, Depends(require("sla:admin"))]
Sla = Annotated[SlaAdmin, Depends(state("sla", SlaAdmin))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
MAX_SECONDS = 2**31 - 1

CALENDAR_EXAMPLE = {
    "name": "Berlin office", "zone": "Europe/Berlin",
    "week": {"mon": [{"start": "09:00", "end": "17:30"}], "tue": [{"start": "09:00", "end": "17:30"}]},
    "holidays": [{"date": "2026-12-25", "name": "Christmas"}],
}


# --- schemas --------------------------------------------------------------------------------------

class CalendarOut(BaseModel):
    id: UUID
    name: str
    zone: str
    week: dict[str, list[dict[str, str]]]
    holidays: list[dict[str, Any]]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: CalendarRow) -> CalendarOut:
        return cls(id=row.id, name=row.name, version=row.version, created_at=row.created_at,
                   updated_at=row.updated_at, **row.definition)


class CalendarPageOut(BaseModel):
    items: list[CalendarOut]
    next_cursor: str | None


Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=50)]
Seconds = Annotated[int | None, Field(default=None, ge=1, le=MAX_SECONDS,
                                      description="Whole seconds of business time")]


class Conditions(BaseModel):
    """Which tickets the policy applies to; an empty list matches any value. A ticket's tier is
    its tag ``tier:<name>``."""

    model_config = ConfigDict(extra="forbid")

    priorities: Names = Field(default_factory=list)
    channels: Names = Field(default_factory=list)
    tiers: Names = Field(default_factory=list)


class Targets(BaseModel):
    """Seconds of business time on the policy's calendar, each at most 90 days; at least one."""

    model_config = ConfigDict(extra="forbid")

    first_response: Seconds = None
    next_response: Seconds = None
    resolution: Seconds = None


class WarningIn(BaseModel):
    """Either ``percent`` of the target elapsed (1-99) or ``before`` seconds ahead of the deadline."""

    model_config = ConfigDict(extra="forbid")

    percent: int | None = Field(default=None, ge=-MAX_SECONDS, le=MAX_SECONDS)
    before: Seconds = None


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=1000)
    position: int = Field(default=0, ge=-1_000_000, le=1_000_000,
                          description="Policies are matched by position, lowest first")
    calendar_id: UUID
    conditions: Conditions = Field(default_factory=Conditions)
    targets: Targets
    warning: WarningIn | None = Field(default=None, description="Default: 80 percent")


class PolicyOut(BaseModel):
    id: UUID
    name: str
    position: int
    calendar_id: UUID
    conditions: Conditions
    targets: Targets
    warning: WarningIn
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: PolicyRow) -> PolicyOut:
        warning = (WarningIn(percent=80) if row.warning_percent is None and row.warning_before_seconds is None
                   else WarningIn(percent=row.warning_percent, before=row.warning_before_seconds))
        return cls(id=row.id, name=row.name, position=row.position, calendar_id=row.calendar_id,
                   conditions=Conditions(priorities=list(row.priorities), channels=list(row.channels),
                                         tiers=list(row.tiers)),
                   targets=Targets(first_response=row.first_response_seconds,
                                   next_response=row.next_response_seconds,
                                   resolution=row.resolution_seconds),
                   warning=warning, version=row.version, created_at=row.created_at, updated_at=row.updated_at)


class PolicyPageOut(BaseModel):
    items: list[PolicyOut]
    next_cursor: str | None


class TargetOut(BaseModel):
    target: str
    cycle: int
    goal_seconds: int
    state: Literal["running", "paused", "stopped"]
    started_at: datetime
    deadline: datetime | None = Field(description="None while paused short of the goal")
    remaining_seconds: float | None
    overrun_seconds: float | None
    breached: bool
    met: bool
    stopped_at: datetime | None

    @classmethod
    def of(cls, t: TargetStatus) -> TargetOut:
        return cls(target=t.target, cycle=t.cycle, goal_seconds=t.goal_seconds, state=t.state,
                   started_at=t.started_at, deadline=t.deadline, remaining_seconds=t.remaining_seconds,
                   overrun_seconds=t.overrun_seconds, breached=t.breached, met=t.met, stopped_at=t.stopped_at)


class TicketSlaOut(BaseModel):
    policy_id: UUID | None
    policy_name: str | None
    evaluated_at: datetime | None
    targets: list[TargetOut]


class ComplianceOut(BaseModel):
    group: str
    target: str
    met: int
    breached: int
    running: int
    compliance: float | None = Field(description="met / (met + breached); null when neither")

    @classmethod
    def of(cls, c: Compliance) -> ComplianceOut:
        return cls(group=c.group, target=c.target, met=c.met, breached=c.breached, running=c.running,
                   compliance=c.compliance)


class ComplianceReportOut(BaseModel):
    group_by: str
    from_: datetime = Field(alias="from")
    to: datetime
    items: list[ComplianceOut]

    model_config = ConfigDict(populate_by_name=True)


# --- calendars ------------------------------------------------------------------------------------

CalendarBody = Annotated[dict[str, Any], Body(openapi_examples={"office": {"value": CALENDAR_EXAMPLE}})]


@router.post("/sla/calendars", response_model=CalendarOut, status_code=201)
async def create_calendar(body: CalendarBody, caller: Admin, sla: Sla, response: Response) -> CalendarOut:
    """``name`` and the calendar (``zone``, ``week``, ``holidays``); 422 names every problem."""
    row = await sla.create_calendar(caller.workspace_id, body)
    response.headers["ETag"] = etag(row.version)
    return CalendarOut.of(row)


@router.get("/sla/calendars", response_model=CalendarPageOut)
async def list_calendars(caller: Reader, sla: Sla, cursor: Cursor = None, limit: Limit = 50
                         ) -> CalendarPageOut:
    page = await sla.list_calendars(caller.workspace_id, cursor, limit)
    return CalendarPageOut(items=[CalendarOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/sla/calendars/{calendar_id}", response_model=CalendarOut)
async def get_calendar(calendar_id: UUID, caller: Reader, sla: Sla, response: Response) -> CalendarOut:
    row = await sla.get_calendar(caller.workspace_id, calendar_id)
    response.headers["ETag"] = etag(row.version)
    return CalendarOut.of(row)


@router.put("/sla/calendars/{calendar_id}", response_model=CalendarOut)
async def replace_calendar(calendar_id: UUID, body: CalendarBody, caller: Admin, sla: Sla, response: Response,
                           if_match: IfMatch = None) -> CalendarOut:
    """The whole calendar; the open tickets of the policies on it are recomputed at once."""
    version = expected_version(if_match)
    row = await sla.replace_calendar(caller.workspace_id, calendar_id, body, version)
    response.headers["ETag"] = etag(row.version)
    return CalendarOut.of(row)


@router.delete("/sla/calendars/{calendar_id}", status_code=204)
async def delete_calendar(calendar_id: UUID, caller: Admin, sla: Sla, if_match: IfMatch = None) -> Response:
    """409 while a policy uses it."""
    await sla.delete_calendar(caller.workspace_id, calendar_id, expected_version(if_match))
    return Response(status_code=204)


# --- policies -------------------------------------------------------------------------------------


@router.post("/sla/policies", response_model=PolicyOut, status_code=201)
async def create_policy(body: PolicyIn, caller: Admin, sla: Sla, response: Response) -> PolicyOut:
    """Open tickets without a policy are matched against it at once."""
    row = await sla.create_policy(caller.workspace_id, body.model_dump(exclude_unset=True))
    response.headers["ETag"] = etag(row.version)
    return PolicyOut.of(row)


@router.get("/sla/policies", response_model=PolicyPageOut)
async def list_policies(caller: Reader, sla: Sla, cursor: Cursor = None, limit: Limit = 50) -> PolicyPageOut:
    """In matching order: by position, then id."""
    page = await sla.list_policies(caller.workspace_id, cursor, limit)
    return PolicyPageOut(items=[PolicyOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/sla/policies/{policy_id}", response_model=PolicyOut)
async def get_policy(policy_id: UUID, caller: Reader, sla: Sla, response: Response) -> PolicyOut:
    row = await sla.get_policy(caller.workspace_id, policy_id)
    response.headers["ETag"] = etag(row.version)
    return PolicyOut.of(row)


@router.put("/sla/policies/{policy_id}", response_model=PolicyOut)
async def replace_policy(policy_id: UUID, body: PolicyIn, caller: Admin, sla: Sla, response: Response,
                         if_match: IfMatch = None) -> PolicyOut:
    """The whole policy; its open tickets are recomputed with it at once."""
    version = expected_version(if_match)
    raw = body.model_dump(exclude_unset=True)
    row = await sla.replace_policy(caller.workspace_id, policy_id, raw, version)
    response.headers["ETag"] = etag(row.version)
    return PolicyOut.of(row)


@router.delete("/sla/policies/{policy_id}", status_code=204)
async def delete_policy(policy_id: UUID, caller: Admin, sla: Sla, if_match: IfMatch = None) -> Response:
    """Its open tickets are matched again against the policies left."""
    await sla.delete_policy(caller.workspace_id, policy_id, expected_version(if_match))
    return Response(status_code=204)


# --- reads ----------------------------------------------------------------------------------------


@router.get("/tickets/{ticket_id}/sla", response_model=TicketSlaOut)
async def ticket_sla(ticket_id: UUID, caller: Reader, sla: Sla) -> TicketSlaOut:
    """The ticket's clocks: each target's state, deadline, remaining or overrun, breached, met.
    ``policy_id`` null when no policy applies."""
    found = await sla.ticket_sla(caller.workspace_id, ticket_id)
    if found is None:
        return TicketSlaOut(policy_id=None, policy_name=None, evaluated_at=None, targets=[])
    return TicketSlaOut(policy_id=found.policy_id, policy_name=found.policy_name,
                        evaluated_at=found.evaluated_at, targets=[TargetOut.of(t) for t in found.targets])


@router.get("/reports/sla", response_model=ComplianceReportOut, response_model_by_alias=True)
async def sla_report(
    caller: Reader,
    sla: Sla,
    from_: Annotated[datetime | None, Query(alias="from", description="Default: 30 days before to")] = None,
    to: Annotated[datetime | None, Query(description="Default: now")] = None,
    group_by: Annotated[Literal["policy", "priority", "channel"], Query()] = "policy",
) -> ComplianceReportOut:
    """Compliance per group and target over the clock cycles started in ``[from, to)``:
    met / (met + breached); a running clock past its deadline counts as breached."""
    until = _aware(to) if to else datetime.now(UTC)
    since = _aware(from_) if from_ else until - timedelta(days=30)
    items = await sla.compliance(caller.workspace_id, since, until, group_by)
    return ComplianceReportOut(group_by=group_by, from_=since, to=until,
                               items=[ComplianceOut.of(c) for c in items])


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
