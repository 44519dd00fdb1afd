"""SLA use cases: calendars and policies, the clock of every ticket (a :class:`TicketHook`),
its reads and report, and the scheduler that emits ``sla.warning`` and ``sla.breached``.

A ticket's clocks are never counters: every change to the ticket recomputes them from its
stored history (:func:`domain.sla.history_of`, :func:`domain.sla.compute_clock`) in the
transaction of the change, and stores what they owe as rows of ``sla_alerts``. The scheduler
claims the alerts that are due, recomputes their tickets to be sure they are still owed, and
emits each once: its event goes to the outbox and the row is marked fired in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
from google.protobuf.message import Message

from crm.ticketing.v1 import events_pb2
from crm_ticketing.domain import events
from crm_ticketing.domain.business_hours import BeyondHorizon, BusinessCalendar, InvalidCalendar
from crm_ticketing.domain.errors import FieldError, InvalidFields, NotFound, TicketingError, VersionMismatch
from crm_ticketing.domain.model import Ticket, TicketPriority
from crm_ticketing.domain.sla import (
    AlertKind,
    InvalidHistory,
    InvalidPolicy,
    SlaAlert,
    SlaClock,
    SlaPolicy,
    Target,
    TicketAttributes,
    WarningThreshold,
    alerts,
    compute_clock,
    history_of,
    match_policy,
    tier_of,
)
from crm_ticketing.service.hooks import TicketChange
from crm_ticketing.store.sla import CalendarRow, ComplianceRow, PolicyRow, SlaStore, TicketSla
from crmkit.ids import uuid7
from crmkit.kafka import Event, make_event
from crmkit.pagination import decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase, PgUnitOfWork
from crmkit.topics import TICKETS

log = logging.getLogger(__name__)

MAX_PAGE = 100
MAX_NAME = 200
REPORT_GROUPS = ("policy", "priority", "channel")


class SlaConflict(TicketingError):
    """The write would break something that depends on the record (409)."""


# -- what a clock is computed for -----------------------------------------------------------------


@dataclass(frozen=True)
class ClockSubject:
    """The few fields of a ticket its clocks depend on (besides its stored history)."""

    id: UUID
    workspace_id: str
    contact_id: UUID
    channel: str
    priority: str
    tags: tuple[str, ...]
    created_at: datetime

    @classmethod
    def of(cls, ticket: Ticket) -> ClockSubject:
        return cls(ticket.id, ticket.workspace_id, ticket.contact_id, ticket.channel,
                   ticket.priority.value, tuple(ticket.tags), ticket.created_at)

    @property
    def attributes(self) -> TicketAttributes:
        return TicketAttributes(priority=self.priority, channel=self.channel, tier=tier_of(self.tags))


def _field_errors(problems: Iterable[str], prefix: str = "") -> list[FieldError]:
    """``"week.mon[0]: overlaps"`` -> FieldError("week.mon[0]", "overlaps")."""
    found = []
    for problem in problems:
        place, _, message = problem.partition(": ")
        if not message or " " in place:
            place, message = "", problem
        found.append(FieldError(f"{prefix}{place}".rstrip(".") or prefix.rstrip(".") or "body", message))
    return found


def policy_of(row: PolicyRow, calendar: BusinessCalendar) -> SlaPolicy:
    """The domain policy of a stored row (raises InvalidPolicy for a bad one)."""

    def seconds(value: int | None) -> timedelta | None:
        return None if value is None else timedelta(seconds=value)

    if row.warning_percent is None and row.warning_before_seconds is None:
        warning = WarningThreshold(percent=80)
    else:
        warning = WarningThreshold(percent=row.warning_percent, before=seconds(row.warning_before_seconds))
    return SlaPolicy(id=row.id, name=row.name, position=row.position, calendar=calendar,
                     first_response=seconds(row.first_response_seconds),
                     next_response=seconds(row.next_response_seconds),
                     resolution=seconds(row.resolution_seconds),
                     priorities=frozenset(row.priorities), channels=frozenset(row.channels),
                     tiers=frozenset(row.tiers), warning=warning)


async def load_policies(store: SlaStore, workspace_id: str) -> list[SlaPolicy]:
    rows = await store.policies(workspace_id)
    calendars = await store.calendars_by_id(workspace_id, [r.calendar_id for r in rows])
    found = []
    for row in rows:
        try:
            found.append(policy_of(row, BusinessCalendar.from_dict(calendars[row.calendar_id].definition)))
        except (InvalidPolicy, InvalidCalendar, KeyError):  # validated on write; never blocks a ticket
            log.error("unusable SLA policy skipped", extra={"policy_id": str(row.id)})
    return found


async def recompute(conn: asyncpg.Connection, workspace_id: str, subjects: Sequence[ClockSubject],
                    now: datetime, *, rematch: Iterable[UUID] = (),
                    policies: Sequence[SlaPolicy] | None = None) -> list[tuple[UUID, SlaAlert]]:
    """Recompute and store the clocks of ``subjects`` (one workspace's tickets) at ``now``, and
    make their unfired alerts what the clocks owe. A ticket keeps the policy it has; it is
    matched again when in ``rematch``, when it has none, or when its policy is gone. Returns
    the (policy id, alert) pairs owed, past and future."""
    if not subjects:
        return []
    store = SlaStore(conn)
    if policies is None:
        policies = await load_policies(store, workspace_id)
    by_id = {p.id: p for p in policies}
    again = set(rematch)
    ids = [s.id for s in subjects]
    current = await store.policies_of(ids)
    if not policies and not current:
        return []  # a workspace without SLA policies: nothing to compute or clear
    facts = await store.facts(ids)
    clocks: list[SlaClock] = []
    owed: list[tuple[UUID, SlaAlert]] = []
    for subject in subjects:
        policy = None if subject.id in again else by_id.get(current.get(subject.id))  # type: ignore[arg-type]
        if policy is None:
            policy = match_policy(policies, subject.attributes)
        if policy is None:
            continue
        try:
            history = history_of(subject.created_at, facts[subject.id], now)
            clock = compute_clock(policy, subject.id, history, now)
        except (InvalidHistory, BeyondHorizon):
            log.warning("SLA clock not computable; left without one", exc_info=True,
                        extra={"ticket_id": str(subject.id)})
            continue
        clocks.append(clock)
        owed += [(policy.id, alert) for alert in alerts(clock)]
    await store.save_clocks(workspace_id, ids, clocks)
    await store.save_alerts(workspace_id, ids, owed)
    return owed


def sla_event(subject: ClockSubject, policy_id: UUID, alert: SlaAlert, fired_at: datetime) -> Event:
    """The ``sla.warning`` or ``sla.breached`` event of a fired alert (key: workspace and contact)."""
    details = events_pb2.SlaAlert(
        ticket_id=str(subject.id), workspace_id=subject.workspace_id, contact_id=str(subject.contact_id),
        policy_id=str(policy_id), target=alert.target.value, cycle=alert.cycle,
        lag_ms=(fired_at - alert.at) // timedelta(milliseconds=1), key=alert.key)
    details.due_at.FromDatetime(alert.at)
    details.fired_at.FromDatetime(fired_at)
    payload: Message
    if alert.kind is AlertKind.WARNING:
        type_, payload = events.SLA_WARNING, events_pb2.SlaWarning(alert=details)
    else:
        type_, payload = events.SLA_BREACHED, events_pb2.SlaBreached(alert=details)
    return make_event(topic=TICKETS, type=type_, source=events.SOURCE, workspace=subject.workspace_id,
                      subject=str(subject.contact_id), payload=payload)


# -- the hook -------------------------------------------------------------------------------------


class SlaClocks:
    """The :class:`TicketHook` that keeps every ticket's clocks and owed alerts current, in the
    transaction of each change. The policy is matched when the ticket opens and again when its
    priority or tags (its tier) change. ``on_alert_due`` is told the earliest unfired alert
    owed, so that a scheduler sleeping longer wakes for it."""

    def __init__(self, on_alert_due: Callable[[datetime], None] | None = None) -> None:
        self.on_alert_due = on_alert_due

    async def after_change(self, uow: PgUnitOfWork, before: Ticket | None, after: Ticket,
                           change: TicketChange) -> None:
        subject = ClockSubject.of(after)
        rematch = [after.id] if before is None or {"priority", "tags"} & set(change.fields) else []
        owed = await recompute(uow.conn, after.workspace_id, [subject], datetime.now(UTC), rematch=rematch)
        if owed and self.on_alert_due is not None:
            self.on_alert_due(min(alert.at for _, alert in owed))


# -- the scheduler --------------------------------------------------------------------------------


class SlaScheduler:
    """Emits each due alert once, across restarts and replicas.

    Each round, in one transaction: lock up to ``batch`` tickets with alerts due (skipping
    tickets another scheduler or a ticket change holds), recompute them, add an event for each
    due alert still owed and mark it fired. Then sleep until the earliest unfired alert, at most
    ``max_sleep`` (other replicas' alerts), or until :meth:`wake` names an earlier one."""

    def __init__(self, db: PgDatabase, batch: int = 500, max_sleep: float = 1.0) -> None:
        self.db = db
        self.batch = batch
        self.max_sleep = max_sleep
        self.fired = 0
        self.recomputed = 0
        self._wake = asyncio.Event()
        self._next: datetime | None = None

    def wake(self, due_at: datetime | None = None) -> None:
        """An alert is owed at ``due_at``: wake if that is before the planned wake-up."""
        if due_at is None or self._next is None or due_at < self._next:
            self._wake.set()

    async def fire_due(self) -> int:
        """One round; returns the alerts emitted."""
        return (await self._round())[1]

    async def _round(self) -> tuple[int, int]:
        """One round; returns the tickets it locked and the alerts it emitted.

        A ticket whose clock was computed after its last change (the hook runs in the
        transaction of every change) owes exactly its stored alerts; one changed since (by a
        path without the hook) or without a clock is recomputed first."""
        async with self.db.unit_of_work() as uow:
            store = SlaStore(uow.conn)
            now = datetime.now(UTC)
            locked = await store.lock_due_tickets(now, self.batch)
            if not locked:
                return 0, 0
            ids = [ticket_id for _, ticket_id in locked]
            due = await store.due_alerts(ids, now)
            subjects, stale = await self._subjects(uow.conn, ids)
            by_workspace: dict[str, list[ClockSubject]] = defaultdict(list)
            for ticket_id in stale:
                by_workspace[subjects[ticket_id].workspace_id].append(subjects[ticket_id])
            owed: dict[str, tuple[UUID, SlaAlert]] = {}
            for workspace_id, group in by_workspace.items():
                for policy_id, alert in await recompute(uow.conn, workspace_id, group, now):
                    if alert.at <= now:
                        owed[alert.key] = (policy_id, alert)
            self.recomputed += len(stale)
            fired_at = datetime.now(UTC)
            fired = []
            for row in due:
                if row.ticket_id not in subjects:
                    continue
                if row.ticket_id in stale:
                    if row.key not in owed:
                        continue  # no longer owed (the recompute deleted it)
                    policy_id, alert = owed[row.key]
                else:
                    policy_id = row.policy_id
                    alert = SlaAlert(row.ticket_id, Target(row.target), AlertKind(row.kind), row.cycle,
                                     row.due_at)
                alert = replace(alert, at=row.due_at)
                uow.add(sla_event(subjects[row.ticket_id], policy_id, alert, fired_at))
                fired.append((row.id, fired_at))
            await store.mark_fired(fired)
        self.fired += len(fired)
        return len(locked), len(fired)

    @staticmethod
    async def _subjects(conn: asyncpg.Connection, ids: Sequence[UUID]
                        ) -> tuple[dict[UUID, ClockSubject], set[UUID]]:
        """The tickets, and those whose clock is older than their last change (or missing)."""
        rows = await conn.fetch(
            "SELECT t.id, t.workspace_id, t.contact_id, t.channel, t.priority, t.tags, t.created_at,"
            " s.evaluated_at IS NULL OR t.updated_at > s.evaluated_at AS stale"
            " FROM tickets t LEFT JOIN ticket_sla s ON s.ticket_id = t.id WHERE t.id = ANY($1::uuid[])",
            list(ids))
        subjects = {r["id"]: ClockSubject(r["id"], r["workspace_id"], r["contact_id"], r["channel"],
                                          r["priority"], tuple(r["tags"]), r["created_at"]) for r in rows}
        return subjects, {r["id"] for r in rows if r["stale"]}

    async def run(self) -> None:
        while True:
            try:
                locked, _ = await self._round()
                if locked >= self.batch:
                    continue  # more may be due at once
                async with self.db.pool.acquire() as conn:
                    earliest = await SlaStore(conn).earliest_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("SLA scheduler round failed; retrying", exc_info=True)
                earliest = None
                await asyncio.sleep(1)
            now = datetime.now(UTC)
            wait = self.max_sleep if earliest is None else (earliest - now).total_seconds()
            wait = min(max(wait, 0.0), self.max_sleep)
            self._next = now + timedelta(seconds=wait)
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            self._next = None


# -- calendars, policies, reads ---------------------------------------------------------------------


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class TargetStatus:
    target: str
    cycle: int
    goal_seconds: int
    state: str
    started_at: datetime
    deadline: datetime | None
    remaining_seconds: float | None
    overrun_seconds: float | None
    breached: bool
    met: bool
    stopped_at: datetime | None


@dataclass(frozen=True)
class TicketSlaStatus:
    policy_id: UUID
    policy_name: str | None
    evaluated_at: datetime
    targets: list[TargetStatus]


@dataclass(frozen=True)
class Compliance:
    group: str
    target: str
    met: int
    breached: int
    running: int

    @property
    def compliance(self) -> float | None:
        decided = self.met + self.breached
        return self.met / decided if decided else None


class SlaAdmin:
    """Calendars and policies; a change to either recomputes the open tickets it governs, in
    the same transaction (so their alerts move with it)."""

    def __init__(self, db: PgDatabase, clocks: SlaClocks) -> None:
        self.db = db
        self.clocks = clocks

    # -- calendars --

    @staticmethod
    def _calendar(raw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data = dict(raw)
        name = data.pop("name", None)
        errors = []
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            errors.append(FieldError("name", f"required, 1 to {MAX_NAME} characters"))
        try:
            definition = BusinessCalendar.from_dict(data).to_dict()
        except InvalidCalendar as exc:
            errors += _field_errors(exc.problems)
            definition = {}
        if errors:
            raise InvalidFields(errors)
        assert isinstance(name, str)
        return name.strip(), definition

    async def create_calendar(self, workspace_id: str, raw: dict[str, Any]) -> CalendarRow:
        name, definition = self._calendar(raw)
        now = datetime.now(UTC)
        row = CalendarRow(uuid7(), workspace_id, name, definition, 1, now, now)
        async with self.db.unit_of_work() as uow:
            await SlaStore(uow.conn).insert_calendar(row)
        return row

    async def get_calendar(self, workspace_id: str, calendar_id: UUID) -> CalendarRow:
        async with self.db.pool.acquire() as conn:
            row = await SlaStore(conn).calendar(workspace_id, calendar_id)
        if row is None:
            raise NotFound("calendar")
        return row

    async def list_calendars(self, workspace_id: str, cursor: str | None, limit: int) -> Page[CalendarRow]:
        after = tuple(decode_cursor("sla-calendars", cursor, 2)) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            rows = await SlaStore(conn).calendars(workspace_id, after, limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        return Page(page, encode_cursor("sla-calendars", [page[-1].name, str(page[-1].id)]) if more else None)

    async def replace_calendar(self, workspace_id: str, calendar_id: UUID, raw: dict[str, Any],
                               expected_version: int) -> CalendarRow:
        name, definition = self._calendar(raw)
        async with self.db.unit_of_work() as uow:
            store = SlaStore(uow.conn)
            before = await store.calendar(workspace_id, calendar_id, for_update=True)
            if before is None:
                raise NotFound("calendar")
            if before.version != expected_version:
                raise VersionMismatch(before.version)
            after = replace(before, name=name, definition=definition, version=before.version + 1,
                            updated_at=datetime.now(UTC))
            await store.update_calendar(after)
            users = [p.id for p in await store.policies(workspace_id) if p.calendar_id == calendar_id]
            affected = await store.open_tickets_of(workspace_id, policy_ids=users)
            await self._recompute(uow, workspace_id, affected)
        return after

    async def delete_calendar(self, workspace_id: str, calendar_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            store = SlaStore(uow.conn)
            before = await store.calendar(workspace_id, calendar_id, for_update=True)
            if before is None:
                raise NotFound("calendar")
            if before.version != expected_version:
                raise VersionMismatch(before.version)
            if await store.calendar_in_use(workspace_id, calendar_id):
                raise SlaConflict("the calendar is used by a policy; change or delete the policy first")
            await store.delete_calendar(workspace_id, calendar_id)

    # -- policies --

    async def _policy(self, store: SlaStore, workspace_id: str, raw: dict[str, Any], base: PolicyRow
                      ) -> PolicyRow:
        """A checked policy row from the request (InvalidFields naming every problem)."""
        conditions, targets = raw.get("conditions") or {}, raw.get("targets") or {}
        warning = raw.get("warning")
        row = replace(
            base, name=str(raw.get("name") or "").strip(), position=raw.get("position") or 0,
            calendar_id=raw["calendar_id"],
            priorities=tuple(dict.fromkeys(conditions.get("priorities") or ())),
            channels=tuple(dict.fromkeys(c.lower() for c in conditions.get("channels") or ())),
            tiers=tuple(dict.fromkeys(t.lower() for t in conditions.get("tiers") or ())),
            first_response_seconds=targets.get("first_response"),
            next_response_seconds=targets.get("next_response"),
            resolution_seconds=targets.get("resolution"),
            warning_percent=(warning or {}).get("percent"),
            warning_before_seconds=(warning or {}).get("before"),
        )
        errors = [FieldError("conditions.priorities", f"{p!r} is not one of {', '.join(TicketPriority)}")
                  for p in row.priorities if p not in TicketPriority.__members__.values()]
        calendar = await store.calendar(workspace_id, row.calendar_id)
        if calendar is None:
            errors.append(FieldError("calendar_id", "no such calendar in this workspace"))
        problems: list[str] = []
        try:  # the warning on its own, so that a bad one hides no other problem
            policy_of(replace(row, first_response_seconds=60), BusinessCalendar.always_open())
        except InvalidPolicy as exc:
            problems += [p for p in exc.problems if p.startswith("warning")]
        try:
            policy_of(replace(row, warning_percent=None, warning_before_seconds=None),
                      BusinessCalendar.always_open())
        except InvalidPolicy as exc:
            problems += exc.problems
        prefixes = {"first_response": "targets.", "next_response": "targets.", "resolution": "targets.",
                    "priorities": "conditions.", "channels": "conditions.", "tiers": "conditions."}
        for error in _field_errors(problems):
            errors.append(FieldError(prefixes.get(error.field, "") + error.field, error.message))
        if errors:
            raise InvalidFields(errors)
        return row

    async def create_policy(self, workspace_id: str, raw: dict[str, Any]) -> PolicyRow:
        now = datetime.now(UTC)
        base = PolicyRow(uuid7(), workspace_id, "", 0, raw["calendar_id"], (), (), (), None, None, None,
                         None, None, 1, now, now)
        async with self.db.unit_of_work() as uow:
            store = SlaStore(uow.conn)
            row = await self._policy(store, workspace_id, raw, base)
            await store.insert_policy(row)
            await self._recompute(uow, workspace_id, await store.open_tickets_without_policy(workspace_id))
        return row

    async def get_policy(self, workspace_id: str, policy_id: UUID) -> PolicyRow:
        async with self.db.pool.acquire() as conn:
            row = await SlaStore(conn).policy(workspace_id, policy_id)
        if row is None:
            raise NotFound("policy")
        return row

    async def list_policies(self, workspace_id: str, cursor: str | None, limit: int) -> Page[PolicyRow]:
        after = tuple(decode_cursor("sla-policies", cursor, 2)) if cursor else None
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            rows = await SlaStore(conn).policies(workspace_id, after, limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        cursor = encode_cursor("sla-policies", [page[-1].position, str(page[-1].id)]) if more else None
        return Page(page, cursor)

    async def replace_policy(self, workspace_id: str, policy_id: UUID, raw: dict[str, Any],
                             expected_version: int) -> PolicyRow:
        async with self.db.unit_of_work() as uow:
            store = SlaStore(uow.conn)
            before = await store.policy(workspace_id, policy_id, for_update=True)
            if before is None:
                raise NotFound("policy")
            if before.version != expected_version:
                raise VersionMismatch(before.version)
            after = await self._policy(store, workspace_id, raw, replace(
                before, version=before.version + 1, updated_at=datetime.now(UTC)))
            await store.update_policy(after)
            await self._recompute(uow, workspace_id, await store.open_tickets_of(workspace_id,
                                                                                 policy_ids=[policy_id]))
        return after

    async def delete_policy(self, workspace_id: str, policy_id: UUID, expected_version: int) -> None:
        """Its open tickets are matched again against the policies left."""
        async with self.db.unit_of_work() as uow:
            store = SlaStore(uow.conn)
            before = await store.policy(workspace_id, policy_id, for_update=True)
            if before is None:
                raise NotFound("policy")
            if before.version != expected_version:
                raise VersionMismatch(before.version)
            affected = await store.open_tickets_of(workspace_id, policy_ids=[policy_id])
            await store.delete_policy(workspace_id, policy_id)
            await self._recompute(uow, workspace_id, affected)

    async def _recompute(self, uow: PgUnitOfWork, workspace_id: str, ticket_ids: Sequence[UUID]) -> None:
        if not ticket_ids:
            return
        rows = await uow.conn.fetch(
            "SELECT id, workspace_id, contact_id, channel, priority, tags, created_at FROM tickets"
            " WHERE workspace_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE",
            workspace_id, list(ticket_ids))
        subjects = [ClockSubject(r["id"], r["workspace_id"], r["contact_id"], r["channel"], r["priority"],
                                 tuple(r["tags"]), r["created_at"]) for r in rows]
        policies = await load_policies(SlaStore(uow.conn), workspace_id)
        now = datetime.now(UTC)
        owed = await recompute(uow.conn, workspace_id, subjects, now, rematch=[s.id for s in subjects],
                               policies=policies)
        if owed and self.clocks.on_alert_due is not None:
            self.clocks.on_alert_due(min(alert.at for _, alert in owed))

    # -- reads --

    async def ticket_sla(self, workspace_id: str, ticket_id: UUID) -> TicketSlaStatus | None:
        """The ticket's clocks as last computed, with remaining/overrun as of now. NotFound for
        a ticket outside the workspace; None when no policy applies to it."""
        async with self.db.pool.acquire() as conn:
            if not await conn.fetchval("SELECT 1 FROM tickets WHERE workspace_id = $1 AND id = $2",
                                       workspace_id, ticket_id):
                raise NotFound("ticket")
            store = SlaStore(conn)
            found: TicketSla | None = await store.ticket_sla(workspace_id, ticket_id)
            if found is None:
                return None
            policy = await store.policy(workspace_id, found.policy_id)
        now = datetime.now(UTC)
        targets = []
        for t in found.targets:
            running = t.state == "running"
            # While running, time moves on since evaluation; the deadline is what counts.
            if running and t.deadline is not None:
                remaining = max((t.deadline - now).total_seconds(), 0.0)
                overrun = max((now - t.deadline).total_seconds(), 0.0)
            else:
                elapsed = t.elapsed_ms / 1000
                remaining = max(t.goal_seconds - elapsed, 0.0)
                overrun = max(elapsed - t.goal_seconds, 0.0)
            breached = t.breached_at is not None or (running and t.deadline is not None and t.deadline <= now)
            targets.append(TargetStatus(
                target=t.target, cycle=t.cycle, goal_seconds=t.goal_seconds, state=t.state,
                started_at=t.started_at, deadline=t.deadline, remaining_seconds=remaining,
                overrun_seconds=overrun, breached=breached, met=t.met_at is not None,
                stopped_at=t.stopped_at))
        return TicketSlaStatus(found.policy_id, policy.name if policy else None, found.evaluated_at, targets)

    async def compliance(self, workspace_id: str, since: datetime, until: datetime, group_by: str
                         ) -> list[Compliance]:
        if group_by not in REPORT_GROUPS:
            raise InvalidFields([FieldError("group_by", f"one of {', '.join(REPORT_GROUPS)}")])
        if until <= since:
            raise InvalidFields([FieldError("to", "after from")])
        async with self.db.pool.acquire() as conn:
            rows: list[ComplianceRow] = await SlaStore(conn).compliance(
                workspace_id, since, until, group_by, datetime.now(UTC))
        return [Compliance(r.group, r.target, r.met, r.breached, r.running) for r in rows]
