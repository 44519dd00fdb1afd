"""Assignment's REST API: agents, teams and queues under /v1. Defining them needs
``assignment:admin`` (the admin role); an agent sets their own availability with
``tickets:write``; reading needs ``tickets:read``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.domain.assignment import Agent, Availability, Queue, Strategy, Team
from crm_ticketing.domain.errors import FieldError, InvalidFields
from crm_ticketing.service.assignment import MAX_PAGE, Assignment
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["assignment"])

Admin = Annotated[Principal, Depends(require("assignment:admin"))]
Reader = Annotated[Principal, Depends(require("tickets:read"))]
Writer = Annotated[Principal, Depends(require("tickets:write"))]
Service = Annotated[Assignment, Depends(state("assignment", Assignment))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
AgentId = Annotated[str, Path(min_length=1, max_length=200, description="The agent's user subject")]


class _Open(BaseModel):
    """A write checked by assignment's rules, so that every bad or unknown field is named in one 422."""

    model_config = ConfigDict(extra="allow")


class AgentIn(_Open):
    display_name: Any = Field(default=None, json_schema_extra={"type": "string"})
    skills: Any = Field(default=None, json_schema_extra={"type": "array", "items": {"type": "string"}})
    capacity: Any = Field(default=None, json_schema_extra={"type": "integer"},
                          description="Required: most tickets new, open, pending or on hold at once")
    working_hours: Any = Field(default=None, json_schema_extra={"type": "object"},
                               description="A business-hours calendar; null: always")
    availability: Any = Field(default=None, json_schema_extra={"enum": [a.value for a in Availability]},
                              description="Default offline")


class AvailabilityIn(_Open):
    availability: Any = Field(json_schema_extra={"enum": [a.value for a in Availability]})


class TeamIn(_Open):
    name: Any = Field(default=None, json_schema_extra={"type": "string"})
    members: Any = Field(default=None, json_schema_extra={"type": "array", "items": {"type": "string"}},
                         description="Agent ids, the whole set")


class QueueIn(_Open):
    name: Any = Field(default=None, json_schema_extra={"type": "string"})
    team_id: Any = Field(default=None, json_schema_extra={"type": "string", "format": "uuid"})
    strategy: Any = Field(default=None, json_schema_extra={"enum": [s.value for s in Strategy]})
    required_skills: Any = Field(default=None,
                                 json_schema_extra={"type": "array", "items": {"type": "string"}})
    position: Any = Field(default=None, json_schema_extra={"type": "integer"})
    rules: Any = Field(default=None, json_schema_extra={"type": "object"},
                       description="channels, tags, priorities, languages, contact [{attribute, equals}]")


class AgentOut(BaseModel):
    id: str
    display_name: str
    skills: list[str]
    capacity: int
    working_hours: dict[str, Any] | None
    availability: Availability
    active: bool
    last_assigned_at: datetime | None
    version: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, agent: Agent) -> AgentOut:
        return cls(id=agent.id, display_name=agent.display_name, skills=list(agent.skills),
                   capacity=agent.capacity,
                   working_hours=agent.working_hours.to_dict() if agent.working_hours else None,
                   availability=agent.availability, active=agent.active,
                   last_assigned_at=agent.last_assigned_at, version=agent.version,
                   created_at=agent.created_at, updated_at=agent.updated_at)


class TeamOut(BaseModel):
    id: UUID
    name: str
    members: list[str]
    version: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, team: Team) -> TeamOut:
        return cls(id=team.id, name=team.name, members=list(team.members), version=team.version,
                   created_at=team.created_at, updated_at=team.updated_at)


class QueueOut(BaseModel):
    id: UUID
    name: str
    team_id: UUID
    strategy: Strategy
    required_skills: list[str]
    position: int
    rules: dict[str, Any]
    version: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, queue: Queue) -> QueueOut:
        return cls(id=queue.id, name=queue.name, team_id=queue.team_id, strategy=queue.strategy,
                   required_skills=list(queue.required_skills), position=queue.position,
                   rules=queue.rules.to_dict(), version=queue.version, created_at=queue.created_at,
                   updated_at=queue.updated_at)


class AgentPageOut(BaseModel):
    items: list[AgentOut]
    next_cursor: str | None


class TeamPageOut(BaseModel):
    items: list[TeamOut]
    next_cursor: str | None


class QueuePageOut(BaseModel):
    items: list[QueueOut]
    next_cursor: str | None


def _body(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True)


# --- agents ---------------------------------------------------------------------------------

@router.put("/agents/me/availability", response_model=AgentOut)
async def set_my_availability(body: AvailabilityIn, caller: Writer, service: Service,
                              response: Response) -> AgentOut:
    """The caller (an agent) is available, away or offline. Going away or offline hands their
    new and open tickets back to their queues; becoming available may give them waiting ones."""
    agent = await service.set_availability(caller.workspace_id, caller.subject, body.availability)
    response.headers["ETag"] = etag(agent.version)
    return AgentOut.of(agent)


@router.put("/agents/{agent_id}", response_model=AgentOut)
async def put_agent(agent_id: AgentId, body: AgentIn, caller: Admin, service: Service, response: Response,
                    if_match: IfMatch = None) -> AgentOut:
    """Register or redefine an agent; `If-Match` optional (412 when stale)."""
    if agent_id == "me":
        raise InvalidFields([FieldError("agent_id", '"me" names the caller; use the agent\'s subject')])
    version = expected_version(if_match) if if_match is not None else None
    agent = await service.put_agent(caller.workspace_id, caller.subject, agent_id, _body(body), version)
    response.headers["ETag"] = etag(agent.version)
    return AgentOut.of(agent)


@router.get("/agents", response_model=AgentPageOut)
async def list_agents(caller: Reader, service: Service, cursor: Cursor = None, limit: Limit = 50
                      ) -> AgentPageOut:
    page = await service.list_agents(caller.workspace_id, cursor, limit)
    return AgentPageOut(items=[AgentOut.of(a) for a in page.items], next_cursor=page.next_cursor)


@router.get("/agents/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: AgentId, caller: Reader, service: Service, response: Response) -> AgentOut:
    agent = await service.get_agent(caller.workspace_id, agent_id)
    response.headers["ETag"] = etag(agent.version)
    return AgentOut.of(agent)


@router.delete("/agents/{agent_id}", status_code=204)
async def deactivate_agent(agent_id: AgentId, caller: Admin, service: Service) -> Response:
    """Deactivate: out of every team, their new and open tickets back to their queues."""
    await service.deactivate_agent(caller.workspace_id, caller.subject, agent_id)
    return Response(status_code=204)


# --- teams ----------------------------------------------------------------------------------

@router.post("/teams", response_model=TeamOut, status_code=201)
async def create_team(body: TeamIn, caller: Admin, service: Service, response: Response) -> TeamOut:
    team = await service.create_team(caller.workspace_id, caller.subject, _body(body))
    response.headers["ETag"] = etag(team.version)
    return TeamOut.of(team)


@router.get("/teams", response_model=TeamPageOut)
async def list_teams(caller: Reader, service: Service, cursor: Cursor = None, limit: Limit = 50
                     ) -> TeamPageOut:
    page = await service.list_teams(caller.workspace_id, cursor, limit)
    return TeamPageOut(items=[TeamOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/teams/{team_id}", response_model=TeamOut)
async def get_team(team_id: UUID, caller: Reader, service: Service, response: Response) -> TeamOut:
    team = await service.get_team(caller.workspace_id, team_id)
    response.headers["ETag"] = etag(team.version)
    return TeamOut.of(team)


@router.patch("/teams/{team_id}", response_model=TeamOut)
async def update_team(team_id: UUID, body: TeamIn, caller: Admin, service: Service, response: Response,
                      if_match: IfMatch = None) -> TeamOut:
    """`name` and/or `members` (the whole set). A member removed hands back their new and open
    tickets of this team."""
    team = await service.update_team(caller.workspace_id, caller.subject, team_id, _body(body),
                                     expected_version(if_match))
    response.headers["ETag"] = etag(team.version)
    return TeamOut.of(team)


@router.delete("/teams/{team_id}", status_code=204)
async def delete_team(team_id: UUID, caller: Admin, service: Service, if_match: IfMatch = None) -> Response:
    await service.delete_team(caller.workspace_id, team_id, expected_version(if_match))
    return Response(status_code=204)


# --- queues ---------------------------------------------------------------------------------

@router.post("/queues", response_model=QueueOut, status_code=201)
async def create_queue(body: QueueIn, caller: Admin, service: Service, response: Response) -> QueueOut:
    queue = await service.create_queue(caller.workspace_id, _body(body))
    response.headers["ETag"] = etag(queue.version)
    return QueueOut.of(queue)


@router.get("/queues", response_model=QueuePageOut)
async def list_queues(caller: Reader, service: Service, cursor: Cursor = None, limit: Limit = 50
                      ) -> QueuePageOut:
    """By position: the order in which they are tried."""
    page = await service.list_queues(caller.workspace_id, cursor, limit)
    return QueuePageOut(items=[QueueOut.of(q) for q in page.items], next_cursor=page.next_cursor)


@router.get("/queues/{queue_id}", response_model=QueueOut)
async def get_queue(queue_id: UUID, caller: Reader, service: Service, response: Response) -> QueueOut:
    queue = await service.get_queue(caller.workspace_id, queue_id)
    response.headers["ETag"] = etag(queue.version)
    return QueueOut.of(queue)


@router.patch("/queues/{queue_id}", response_model=QueueOut)
async def update_queue(queue_id: UUID, body: QueueIn, caller: Admin, service: Service, response: Response,
                       if_match: IfMatch = None) -> QueueOut:
    queue = await service.update_queue(caller.workspace_id, caller.subject, queue_id, _body(body),
                                       expected_version(if_match))
    response.headers["ETag"] = etag(queue.version)
    return QueueOut.of(queue)


@router.delete("/queues/{queue_id}", status_code=204)
async def delete_queue(queue_id: UUID, caller: Admin, service: Service, if_match: IfMatch = None) -> Response:
    """Its waiting tickets stay with its team, in no queue."""
    await service.delete_queue(caller.workspace_id, queue_id, expected_version(if_match))
    return Response(status_code=204)
