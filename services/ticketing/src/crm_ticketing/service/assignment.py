"""Assignment's use cases: agents, teams and queues, and the hook that routes tickets.

Every decision (which agent gets a ticket) is taken under one transaction-scoped lock per
workspace (:meth:`AssignmentStore.lock_workspace`), inside the transaction of the change that
caused it, so that two consumers or requests never give one ticket out twice nor an agent more
than their capacity. Tickets locked after that lock are locked with SKIP LOCKED: a ticket
another transaction is changing is left to that transaction, whose own hook settles it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg

from crm_ticketing.domain.assignment import (
    HELD,
    RETURNED,
    Agent,
    AssignmentConflict,
    Availability,
    Candidate,
    Queue,
    Reason,
    Strategy,
    Team,
    agent_values,
    choose,
    first_matching,
    parse_availability,
    queue_values,
    team_values,
)
from crm_ticketing.domain.errors import FieldError, InvalidFields, NotFound, TicketingError, VersionMismatch
from crm_ticketing.domain.model import Ticket
from crm_ticketing.domain.transitions import FieldChange
from crm_ticketing.service.hooks import TicketChange
from crm_ticketing.store.assignment import AssignmentStore
from crm_ticketing.store.tickets import TicketsStore
from crm_ticketing.wire import ticket_assigned
from crmkit.contacts import ContactsClient
from crmkit.ids import uuid7
from crmkit.kafka import TransientError
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase, PgUnitOfWork

log = logging.getLogger(__name__)

SYSTEM = "system"
MAX_PAGE = 100
# How many waiting tickets one change hands out at most (the rest on the next change).
MAX_DRAIN = 200
_ROUTING_FIELDS = frozenset({"tags", "priority"})
_MANUAL_FIELDS = frozenset({"assignee", "team_id"})


T = TypeVar("T")


class AssignmentBusy(TicketingError, TransientError):
    """PostgreSQL broke a deadlock between this change, waiting for the workspace's assignment
    lock, and a transaction holding that lock and waiting for this change's ticket (a batch of
    messages threading into it). Nothing was written; trying again succeeds: a consumer retries,
    an HTTP caller gets 503 with Retry-After."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


class Assignment:
    """The assignment hook (registered first, so later hooks see the ticket assigned) and the
    use cases of agents, teams and queues. ``contacts`` answers contact attribute and language
    rules; without it, or when it does not answer within ``contact_timeout`` seconds, queues
    with such rules are skipped."""

    def __init__(self, db: PgDatabase, contacts: ContactsClient | None = None, *,
                 contact_timeout: float = 2.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                 ) -> None:
        self.db = db
        self.contacts = contacts
        self.contact_timeout = contact_timeout
        self.clock = clock

    # -- the hook ----------------------------------------------------------------------------

    async def after_change(self, uow: PgUnitOfWork, before: Ticket | None, after: Ticket,
                           change: TicketChange) -> None:
        """Route a ticket that opened; check and announce a person's assignment; hand a ticket
        whose agent left back to its queue; and when an agent's ticket is solved or closed (or
        given to someone else), give their freed place to the oldest waiting ticket."""
        store = AssignmentStore(uow.conn)
        ws = after.workspace_id
        manual = bool(_MANUAL_FIELDS & set(change.fields)) and before is not None
        if manual and before is not None:
            await self._check_manual(store, before, after)
        queues: list[Queue] = []
        contact: Mapping[str, str] | None = None
        routing = not manual and after.status in RETURNED and after.assignee is None and (
            change.created or (after.team_id is None and bool(_ROUTING_FIELDS & set(change.fields))))
        route_to: Queue | None = None
        if routing:
            queues = await store.queues(ws)
            if any(q.rules.needs_contact for q in queues):
                contact = await self._contact(after)  # before the lock: it may take a while
            route_to = first_matching(queues, after, contact)
            # No queue takes it: it stays unassigned and unqueued, and nothing needs the lock.
            routing = route_to is not None
        kept = before is not None and after.assignee == before.assignee and after.status in HELD
        freed = (before.assignee if before is not None and before.assignee is not None
                 and before.status in HELD and not kept else None)
        # What else may apply, read before locking, so that most changes (a customer's message
        # to a ticket whose agent is still there) take no lock at all.
        gone = (not manual and not routing and after.status in RETURNED and after.assignee is not None
                and not await self._still_theirs(store, after))
        waiting = (None if manual or routing or after.status not in RETURNED or after.assignee is not None
                   else await store.queue_of(ws, after.id))
        if not (manual or routing or gone or waiting or freed):
            return
        try:
            await store.lock_workspace(ws)
        except asyncpg.DeadlockDetectedError as exc:
            raise AssignmentBusy("assignment is busy in this workspace; try again") from exc
        tickets = TicketsStore(uow.conn)
        if manual and before is not None:
            if after.team_id != before.team_id or after.assignee is not None:
                await store.leave_queue(ws, after.id)
            if after.assignee is not None:
                await store.touch_assigned(ws, after.assignee, self.clock())
            uow.add(ticket_assigned(before, after, queue_id=None, actor=change.actor, reason=Reason.MANUAL))
        elif routing:
            await self._route(uow, store, after, route_to, change.actor, Reason.ROUTED)
        elif gone:
            current = await tickets.get(ws, after.id)
            if (current is not None and current.assignee is not None
                    and not await self._still_theirs(store, current)):
                await self._hand_back(uow, store, current, change.actor)
        elif waiting:  # perhaps just reopened: try again
            queue = await store.queue(ws, waiting)
            current = await tickets.get(ws, after.id)
            if queue is not None and current is not None and current.assignee is None:
                await self._route(uow, store, current, queue, change.actor, Reason.ROUTED)
        if freed is not None:
            await self._drain(uow, store, ws, await self._queues_of_agent(store, ws, freed), change.actor)

    async def _check_manual(self, store: AssignmentStore, before: Ticket, after: Ticket) -> None:
        errors = []
        if after.assignee is not None and after.assignee != before.assignee \
                and not await store.assignable(after.workspace_id, after.assignee):
            errors.append(FieldError("assignee", "no active agent with this id in the workspace"))
        if after.team_id is not None and after.team_id != before.team_id \
                and await store.team(after.workspace_id, after.team_id) is None:
            errors.append(FieldError("team_id", "no team with this id in the workspace"))
        if errors:
            raise InvalidFields(errors)

    async def _contact(self, ticket: Ticket) -> Mapping[str, str] | None:
        """The contact's attributes as strings: custom fields, ``lifecycle_stage``, ``owner_id``
        and ``tags`` (comma-joined); empty for no such contact; None when unknown."""
        if self.contacts is None:
            return None
        try:
            contact = await asyncio.wait_for(
                self.contacts.get_contact(ticket.workspace_id, str(ticket.contact_id)), self.contact_timeout)
        except Exception as exc:  # never block threading on contacts: route without those queues
            log.warning("contacts did not answer; queues routing on the contact are skipped",
                        extra={"workspace": ticket.workspace_id, "ticket": str(ticket.id),
                               "error": type(exc).__name__})
            return None
        if contact is None:
            return {}
        found = {"lifecycle_stage": contact.lifecycle_stage, "owner_id": contact.owner_id,
                 "tags": ",".join(contact.tags)}
        for key, value in dict(contact.custom_fields).items():
            if isinstance(value, bool):
                found[key] = str(value).lower()
            elif isinstance(value, float) and value.is_integer():
                found[key] = str(int(value))
            elif isinstance(value, str | float):
                found[key] = str(value)
        return found

    async def _still_theirs(self, store: AssignmentStore, ticket: Ticket) -> bool:
        """Whether the ticket's agent may keep it: active, available, and in its team (if any)."""
        assert ticket.assignee is not None
        agent = await store.agent(ticket.workspace_id, ticket.assignee)
        if agent is None or not agent.active or agent.availability is not Availability.AVAILABLE:
            return False
        if ticket.team_id is None:
            return True
        team = await store.team(ticket.workspace_id, ticket.team_id)
        return team is None or agent.id in team.members

    async def _route(self, uow: PgUnitOfWork, store: AssignmentStore, ticket: Ticket, queue: Queue | None,
                     actor: str, reason: Reason) -> Ticket:
        """Put the ticket in ``queue`` (and its team) and give it to the agent the queue's
        strategy chooses, or leave it waiting there unassigned. No queue: unassigned, its
        team kept."""
        now = self.clock()
        agent: Agent | None = None
        if queue is not None:
            ws = ticket.workspace_id
            cursor = await store.cursor(ws, queue.id)
            members = await store.members(ws, queue.team_id)
            held = await store.held(ws, [m.id for m in members])
            agent = choose(queue.strategy, [Candidate(m, held[m.id]) for m in members], queue.required_skills,
                           now, cursor)
            if agent is not None:
                await store.touch_assigned(ws, agent.id, now)
                if queue.strategy is Strategy.ROUND_ROBIN:
                    await store.set_cursor(ws, queue.id, agent.id)
        after = replace(ticket, team_id=queue.team_id if queue else ticket.team_id,
                        assignee=agent.id if agent else None)
        # ``ticket`` may still name an agent who left (a hand back): the changes are from it.
        changes = [FieldChange(name, _json(getattr(ticket, name)), _json(getattr(after, name)))
                   for name in ("team_id", "assignee") if getattr(ticket, name) != getattr(after, name)]
        if changes:
            after = replace(after, version=ticket.version + 1, updated_at=now)
            await TicketsStore(uow.conn).add_history(after, SYSTEM if reason is not Reason.MANUAL else actor,
                                                     changes)
            uow.add(ticket_assigned(ticket, after, queue_id=queue.id if queue else None, actor=actor,
                                    reason=reason))
        await store.place(after, queue.id if queue else None, now)
        return after

    async def _hand_back(self, uow: PgUnitOfWork, store: AssignmentStore, ticket: Ticket, actor: str) -> None:
        """The ticket's agent left: back to its queue (or its team's first queue, or else the
        first queue that matches it without the contact) and to whoever that queue chooses now
        (never the agent who left: they cannot take tickets, or are not in the team), else
        waiting there unassigned."""
        ws = ticket.workspace_id
        queue_id = await store.queue_of(ws, ticket.id)
        queue = await store.queue(ws, queue_id) if queue_id else None
        if queue is None and ticket.team_id is not None:
            queue = next(iter(await store.queues_of_teams(ws, [ticket.team_id])), None)
        if queue is None and ticket.team_id is None:
            queue = first_matching(await store.queues(ws), ticket, None)
        await self._route(uow, store, ticket, queue, actor, Reason.REASSIGNED)

    async def _hand_back_all(self, uow: PgUnitOfWork, store: AssignmentStore, ws: str, agent_id: str,
                             team_ids: Sequence[UUID] | None, actor: str) -> int:
        """The agent's new and open tickets (of these teams, or all) go back, oldest first."""
        tickets = TicketsStore(uow.conn)
        moved = 0
        for ticket_id in await store.returned(ws, agent_id, team_ids):
            ticket = await tickets.get(ws, ticket_id)
            if ticket is not None:
                await self._hand_back(uow, store, ticket, actor)
                moved += 1
        return moved

    async def _drain(self, uow: PgUnitOfWork, store: AssignmentStore, ws: str, queues: Sequence[Queue],
                     actor: str) -> None:
        """Give the tickets waiting in these queues, oldest waiting first, to agents who can
        take them now."""
        by_id = {q.id: q for q in queues}
        if not by_id:
            return
        tickets = TicketsStore(uow.conn)
        full: set[UUID] = set()  # queues in which nobody could take the last ticket
        for ticket_id, queue_id in await store.waiting(ws, list(by_id), MAX_DRAIN):
            if queue_id in full:
                continue
            ticket = await tickets.get(ws, ticket_id)
            if ticket is None:
                continue
            routed = await self._route(uow, store, ticket, by_id[queue_id], actor, Reason.ROUTED)
            if routed.assignee is None:
                full.add(queue_id)
                if full == set(by_id):
                    return

    async def _queues_of_agent(self, store: AssignmentStore, ws: str, agent_id: str) -> list[Queue]:
        teams = await store.teams_of_agent(ws, agent_id)
        return await store.queues_of_teams(ws, teams)

    # -- agents ------------------------------------------------------------------------------

    async def put_agent(self, ws: str, actor: str, agent_id: str, raw: dict[str, Any],
                        expected_version: int | None) -> Agent:
        """Create or replace an agent (a deactivated one comes back, in no team). Going away
        or offline hands their new and open tickets back; becoming able to take more (available,
        more capacity, other skills or hours) hands out waiting tickets."""
        values = agent_values(raw)
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            await store.lock_workspace(ws)
            before = await store.agent(ws, agent_id, for_update=True)
            if expected_version is not None and (before is None or before.version != expected_version):
                if before is None:
                    raise NotFound("agent")
                raise VersionMismatch(before.version)
            agent = await store.put_agent(ws, agent_id, values)
            await self._settle_agent(uow, store, agent, actor)
        return agent

    async def set_availability(self, ws: str, agent_id: str, raw: Any) -> Agent:
        """An agent sets their own availability; NotFound when they are no active agent here."""
        availability = parse_availability(raw)
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            await store.lock_workspace(ws)
            changed = await store.set_availability(ws, agent_id, availability)
            if changed is None:
                raise NotFound("agent")
            agent, before = changed
            if before is not agent.availability:
                await self._settle_agent(uow, store, agent, agent_id)
        return agent

    async def _settle_agent(self, uow: PgUnitOfWork, store: AssignmentStore, agent: Agent, actor: str
                            ) -> None:
        if agent.availability is not Availability.AVAILABLE:
            await self._hand_back_all(uow, store, agent.workspace_id, agent.id, None, actor)
        else:
            await self._drain(uow, store, agent.workspace_id,
                              await self._queues_of_agent(store, agent.workspace_id, agent.id), actor)

    async def deactivate_agent(self, ws: str, actor: str, agent_id: str) -> None:
        """The agent leaves every team and their new and open tickets go back to their queues.
        Their row stays (history names them); a PUT brings them back."""
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            await store.lock_workspace(ws)
            if await store.agent(ws, agent_id, for_update=True) is None:
                raise NotFound("agent")
            await store.deactivate(ws, agent_id)
            await self._hand_back_all(uow, store, ws, agent_id, None, actor)

    async def get_agent(self, ws: str, agent_id: str) -> Agent:
        async with self.db.pool.acquire() as conn:
            agent = await AssignmentStore(conn).agent(ws, agent_id)
        if agent is None:
            raise NotFound("agent")
        return agent

    async def list_agents(self, ws: str, cursor: str | None, limit: int) -> Page[Agent]:
        after = _decode(cursor, "agents", str)
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            items = await AssignmentStore(conn).agents(ws, after, limit + 1)
        return _page(items, limit, lambda a: ["agents", a.id])

    # -- teams -------------------------------------------------------------------------------

    async def create_team(self, ws: str, actor: str, raw: dict[str, Any]) -> Team:
        values = team_values(raw, creating=True)
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            await store.lock_workspace(ws)
            await self._check_members(store, ws, values["members"])
            team_id = uuid7()
            if not await store.insert_team(ws, team_id, values["name"]):
                raise AssignmentConflict("another team has this name")
            await store.set_members(ws, team_id, values["members"])
            team = await store.team(ws, team_id)
        assert team is not None
        return team

    async def update_team(self, ws: str, actor: str, team_id: UUID, raw: dict[str, Any],
                          expected_version: int) -> Team:
        """Rename it and/or replace its members. A member removed hands back their new and open
        tickets of this team; a member added may take waiting ones."""
        values = team_values(raw, creating=False)
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            await store.lock_workspace(ws)
            before = await store.team(ws, team_id, for_update=True)
            if before is None:
                raise NotFound("team")
            if before.version != expected_version:
                raise VersionMismatch(before.version)
            if "members" in values:
                added = [m for m in values["members"] if m not in before.members]
                await self._check_members(store, ws, added)
            if not await store.update_team(ws, team_id, values.get("name")):
                raise AssignmentConflict("another team has this name")
            if "members" in values:
                for agent_id in await store.set_members(ws, team_id, values["members"]):
                    await self._hand_back_all(uow, store, ws, agent_id, [team_id], actor)
                await self._drain(uow, store, ws, await store.queues_of_teams(ws, [team_id]), actor)
            team = await store.team(ws, team_id)
        assert team is not None
        return team

    async def _check_members(self, store: AssignmentStore, ws: str, members: Sequence[str]) -> None:
        unknown = await store.inactive_or_unknown(ws, members)
        if unknown:
            raise InvalidFields([FieldError("members", "no active agent with the id " + ", ".join(unknown))])

    async def delete_team(self, ws: str, team_id: UUID, expected_version: int) -> None:
        """Conflict while a queue routes to it. Its tickets keep its id."""
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            team = await store.team(ws, team_id, for_update=True)
            if team is None:
                raise NotFound("team")
            if team.version != expected_version:
                raise VersionMismatch(team.version)
            try:
                async with uow.conn.transaction():
                    await store.delete_team(ws, team_id)
            except asyncpg.ForeignKeyViolationError as exc:
                raise AssignmentConflict("a queue routes to this team; move or delete the queue first") \
                    from exc

    async def get_team(self, ws: str, team_id: UUID) -> Team:
        async with self.db.pool.acquire() as conn:
            team = await AssignmentStore(conn).team(ws, team_id)
        if team is None:
            raise NotFound("team")
        return team

    async def list_teams(self, ws: str, cursor: str | None, limit: int) -> Page[Team]:
        after = _decode(cursor, "teams", UUID)
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            items = await AssignmentStore(conn).teams(ws, after, limit + 1)
        return _page(items, limit, lambda t: ["teams", str(t.id)])

    # -- queues ------------------------------------------------------------------------------

    async def create_queue(self, ws: str, raw: dict[str, Any]) -> Queue:
        values = queue_values(raw, creating=True)
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            if await store.team(ws, values["team_id"]) is None:
                raise InvalidFields([FieldError("team_id", "no team with this id in the workspace")])
            queue_id = uuid7()
            if not await store.insert_queue(ws, queue_id, values):
                raise AssignmentConflict("another queue has this name")
            queue = await store.queue(ws, queue_id)
        assert queue is not None
        return queue

    async def update_queue(self, ws: str, actor: str, queue_id: UUID, raw: dict[str, Any],
                           expected_version: int) -> Queue:
        """Its waiting tickets stay in it, and are handed out by its new settings."""
        values = queue_values(raw, creating=False)
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            await store.lock_workspace(ws)
            before = await store.queue(ws, queue_id, for_update=True)
            if before is None:
                raise NotFound("queue")
            if before.version != expected_version:
                raise VersionMismatch(before.version)
            if "team_id" in values and await store.team(ws, values["team_id"]) is None:
                raise InvalidFields([FieldError("team_id", "no team with this id in the workspace")])
            if not await store.update_queue(replace(before, **values)):
                raise AssignmentConflict("another queue has this name")
            queue = await store.queue(ws, queue_id)
            assert queue is not None
            await self._drain(uow, store, ws, [queue], actor)
        return queue

    async def delete_queue(self, ws: str, queue_id: UUID, expected_version: int) -> None:
        """Its waiting tickets stay with its team, in no queue."""
        async with self.db.unit_of_work() as uow:
            store = AssignmentStore(uow.conn)
            await store.lock_workspace(ws)
            queue = await store.queue(ws, queue_id, for_update=True)
            if queue is None:
                raise NotFound("queue")
            if queue.version != expected_version:
                raise VersionMismatch(queue.version)
            await store.delete_queue(ws, queue_id)

    async def get_queue(self, ws: str, queue_id: UUID) -> Queue:
        async with self.db.pool.acquire() as conn:
            queue = await AssignmentStore(conn).queue(ws, queue_id)
        if queue is None:
            raise NotFound("queue")
        return queue

    async def list_queues(self, ws: str, cursor: str | None, limit: int) -> Page[Queue]:
        raw = _decode(cursor, "queues", list)
        after: tuple[int, UUID] | None = None
        if raw is not None:
            try:
                after = (int(raw[0]), UUID(str(raw[1])))
            except (ValueError, IndexError, TypeError) as exc:
                raise InvalidCursor() from exc
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            items = await AssignmentStore(conn).queues(ws, after, limit + 1)
        return _page(items, limit, lambda q: ["queues", [q.position, str(q.id)]])


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


def _decode(cursor: str | None, kind: str, of: Callable[[Any], T]) -> T | None:
    if not cursor:
        return None
    [raw] = decode_cursor(kind, cursor, 1)
    try:
        return of(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidCursor() from exc


def _page(items: list[T], limit: int, key: Callable[[T], list[Any]]) -> Page[T]:
    page = items[:limit]
    if len(items) <= limit:
        return Page(page, None)
    kind, *values = key(page[-1])
    return Page(page, encode_cursor(kind, values))
