"""Reports over HTTP (`tickets:read`: support, analysts, admins). Ranges are `[from, to)`,
ISO 8601 times with a zone; `to` defaults to now and `from` to 30 days before it; at most two
years (422 naming `from` otherwise). Buckets are cut in UTC; durations are calendar seconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from crm_ticketing.service.reports import Range, Reports, report_range
from crm_ticketing.store.reports import Durations
from crmkit.auth import Principal, require
from crmkit.web import state

router = APIRouter(prefix="/v1/reports", tags=["reports"])
Reader = Annotated[Principal, Depends(require("tickets:read"))]
Service = Annotated[Reports, Depends(state("reports", Reports))]
Interval = Literal["day", "week", "month"]


def _range(start: Annotated[datetime | None, Query(alias="from")] = None,
           end: Annotated[datetime | None, Query(alias="to")] = None) -> Range:
    return report_range(start, end, datetime.now(UTC))


Span = Annotated[Range, Depends(_range)]


class VolumeRow(BaseModel):
    period: datetime
    channel: str
    tickets: int


class VolumeOut(BaseModel):
    start: datetime
    end: datetime
    interval: Interval
    items: list[VolumeRow]


@router.get("/volume", response_model=VolumeOut)
async def volume(caller: Reader, reports: Service, span: Span, interval: Interval = "day") -> VolumeOut:
    """Tickets created per interval (UTC; weeks start on Monday) and channel; empty periods are left out."""
    rows = await reports.volume(caller.workspace_id, span, interval)
    return VolumeOut(start=span.start, end=span.end, interval=interval,
                     items=[VolumeRow(period=p, channel=c, tickets=n) for p, c, n in rows])


class DurationsOut(BaseModel):
    tickets: int
    median_seconds: float | None
    p90_seconds: float | None

    @classmethod
    def of(cls, found: Durations) -> DurationsOut:
        def seconds(value: float | None) -> float | None:  # to the millisecond: no float noise
            return None if value is None else round(value, 3)

        return cls(tickets=found.count, median_seconds=seconds(found.median), p90_seconds=seconds(found.p90))


class ResponseTimesRow(BaseModel):
    tickets: int
    first_response: DurationsOut
    resolution: DurationsOut


class ChannelResponseTimes(ResponseTimesRow):
    channel: str


class ResponseTimesOut(BaseModel):
    start: datetime
    end: datetime
    overall: ResponseTimesRow
    by_channel: list[ChannelResponseTimes]


@router.get("/response-times", response_model=ResponseTimesOut)
async def response_times(caller: Reader, reports: Service, span: Span) -> ResponseTimesOut:
    """Over tickets created in the range: first response (first public reply - creation) and
    resolution (solved_at - creation, for solved and closed tickets), median and p90
    (`percentile_cont`), in calendar seconds."""
    rows = await reports.response_times(caller.workspace_id, span)
    none = DurationsOut(tickets=0, median_seconds=None, p90_seconds=None)
    overall = ResponseTimesRow(tickets=0, first_response=none, resolution=none)
    by_channel: list[ChannelResponseTimes] = []
    for row in rows:
        figures = {"tickets": row.tickets, "first_response": DurationsOut.of(row.first_response),
                   "resolution": DurationsOut.of(row.resolution)}
        if row.channel is None:
            overall = ResponseTimesRow.model_validate(figures)
        else:
            by_channel.append(ChannelResponseTimes.model_validate({**figures, "channel": row.channel}))
    return ResponseTimesOut(start=span.start, end=span.end, overall=overall, by_channel=by_channel)


class BacklogRow(BaseModel):
    status: str
    age: str
    tickets: int


class BacklogKeyRow(BaseModel):
    key: str | None  # None: unassigned
    tickets: int


class BacklogOut(BaseModel):
    total: int
    by_status_and_age: list[BacklogRow]
    by_assignee: list[BacklogKeyRow]
    by_team: list[BacklogKeyRow]


@router.get("/backlog", response_model=BacklogOut)
async def backlog(caller: Reader, reports: Service) -> BacklogOut:
    """Tickets new, open, pending or on hold now, by status and age since creation
    (`0-1d`, `1-3d`, `3-7d`, `7-30d`, `30d+`), and by assignee and team."""
    found = await reports.backlog(caller.workspace_id)
    rows = [BacklogRow(status=s, age=a, tickets=n) for s, a, n in found["by_status_and_age"]]
    return BacklogOut(total=sum(r.tickets for r in rows), by_status_and_age=rows,
                      by_assignee=[BacklogKeyRow(key=k, tickets=n) for k, n in found["by_assignee"]],
                      by_team=[BacklogKeyRow(key=k, tickets=n) for k, n in found["by_team"]])


class CsatRow(BaseModel):
    key: str | None
    responses: int
    good: int
    good_percent: float
    average: float | None


class CsatOut(BaseModel):
    start: datetime
    end: datetime
    group_by: str
    sent: int
    items: list[CsatRow]


@router.get("/csat", response_model=CsatOut)
async def csat(caller: Reader, reports: Service, span: Span,
               group_by: Literal["agent", "team", "period"] = "agent",
               interval: Interval = "week") -> CsatOut:
    """Survey answers given in the range (ratings 1-5; 4 and 5 are good) per agent (the
    survey's credited agent; `null` for none), team, or period (`interval`, UTC); `sent`: the
    surveys sent in the range."""
    report = await reports.csat(caller.workspace_id, span, group_by, interval)
    return CsatOut(start=span.start, end=span.end, group_by=group_by, sent=report.sent, items=[
        CsatRow(key=g.key, responses=g.responses, good=g.good,
                good_percent=round(100 * g.good / g.responses, 2) if g.responses else 0.0, average=g.average)
        for g in report.groups])
