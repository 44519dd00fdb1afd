"""SLA policies and the clocks they put on a ticket. Pure: no I/O, no framework.

A policy applies to a ticket when its conditions match (priority, channel and customer tier,
each a set where the empty set means any); the first match in ``position`` order wins. Its
targets are durations of business time on its calendar (:mod:`.business_hours`).

A clock is computed from the ticket's history, never mutated. Rules:

- **First response** runs from creation to the first public agent reply.
- **Next response** runs in cycles: a customer reply that follows an agent reply starts one
  (later customer replies join it), the next agent reply stops it. Customer replies before
  the first agent reply are the first response's business. A customer reply to a solved ticket
  starts its cycle when the ticket is reopened.
- **Resolution** runs from creation to solved (or closed); a reopen resumes it where it stood,
  so it is one cycle however often the ticket is reopened.
- Every running clock pauses while the ticket is pending or on-hold and resumes when it leaves
  them; paused business time pushes the deadline back by as much.
- A solve stops every clock, response clocks included (the solve answers the customer).
- A clock is met when stopped at or before its deadline and breached when its deadline passes
  first: a reply at the very deadline instant meets it.
- The warning comes when ``percent`` of the target has elapsed, or ``before`` business time
  ahead of the deadline (at the start when ``before`` is the whole target or more).

Each clock yields at most one ``sla.warning`` and one ``sla.breached`` alert, keyed by ticket,
target, kind and cycle, so a scheduler can emit each exactly once: emit :func:`due_alerts`
not emitted yet, then wake at :func:`next_due`; recompute after every ticket event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from crm_ticketing.domain.business_hours import BusinessCalendar, add_business_time, business_time_between
from crm_ticketing.domain.model import TicketStatus

__all__ = [
    "DEFAULT_WARNING",
    "MAX_GOAL",
    "AlertKind",
    "ClockState",
    "EventKind",
    "InvalidHistory",
    "InvalidPolicy",
    "SlaAlert",
    "SlaClock",
    "SlaPolicy",
    "Target",
    "TargetClock",
    "TicketAttributes",
    "TicketEvent",
    "WarningThreshold",
    "alerts",
    "compute_clock",
    "due_alerts",
    "match_policy",
    "next_due",
]

MAX_GOAL = timedelta(days=90)
"""The longest target, in business time (2,160 hours)."""
MAX_NAME_LENGTH = 200
_PAUSED = frozenset({TicketStatus.PENDING, TicketStatus.ON_HOLD})
_DONE = frozenset({TicketStatus.SOLVED, TicketStatus.CLOSED})


class Target(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class InvalidPolicy(ValueError):
    """A policy that cannot be used; ``problems`` names every problem found."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid SLA policy: " + "; ".join(self.problems))


class InvalidHistory(ValueError):
    """A ticket history a clock cannot be computed from."""


@dataclass(frozen=True)
class WarningThreshold:
    """When to warn: once ``percent`` (1-99) of a target has elapsed, or ``before`` business
    time ahead of its deadline. Exactly one of the two."""

    percent: int | None = None
    before: timedelta | None = None

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.before is None):
            raise InvalidPolicy(["warning: give either percent or before"])
        if self.percent is not None and not (type(self.percent) is int and 1 <= self.percent <= 99):
            raise InvalidPolicy(["warning.percent: a whole number from 1 to 99"])
        if self.before is not None and not timedelta(0) < self.before <= MAX_GOAL:
            raise InvalidPolicy(["warning.before: more than 0 and at most 90 days"])

    def elapsed_at_warning(self, goal: timedelta) -> timedelta:
        """How much of ``goal`` has elapsed when the warning is due."""
        if self.percent is not None:
            return goal * self.percent // 100
        assert self.before is not None
        return max(goal - self.before, timedelta(0))


DEFAULT_WARNING = WarningThreshold(percent=80)


@dataclass(frozen=True)
class TicketAttributes:
    """What policy conditions look at; an empty string matches only "any"."""

    priority: str = ""
    channel: str = ""
    tier: str = ""


@dataclass(frozen=True)
class SlaPolicy:
    """Targets on a calendar for the tickets its conditions match. Validated on construction
    (:class:`InvalidPolicy`): a name, at least one target, each within ``(0, MAX_GOAL]``."""

    id: UUID
    name: str
    position: int
    calendar: BusinessCalendar
    first_response: timedelta | None = None
    next_response: timedelta | None = None
    resolution: timedelta | None = None
    priorities: frozenset[str] = field(default_factory=frozenset)
    channels: frozenset[str] = field(default_factory=frozenset)
    tiers: frozenset[str] = field(default_factory=frozenset)
    warning: WarningThreshold = DEFAULT_WARNING

    def __post_init__(self) -> None:
        problems = []
        if not self.name.strip() or len(self.name) > MAX_NAME_LENGTH:
            problems.append(f"name: 1 to {MAX_NAME_LENGTH} characters")
        goals = {target: self.goal(target) for target in Target}
        if all(goal is None for goal in goals.values()):
            problems.append("targets: at least one of first_response, next_response and resolution")
        for target, goal in goals.items():
            if goal is not None and not timedelta(0) < goal <= MAX_GOAL:
                problems.append(f"{target}: more than 0 and at most 90 days of business time")
        for place in ("priorities", "channels", "tiers"):
            values = frozenset(getattr(self, place))
            object.__setattr__(self, place, values)
            if not all(isinstance(value, str) and value for value in values):
                problems.append(f"{place}: non-empty names")
        if problems:
            raise InvalidPolicy(problems)

    def goal(self, target: Target) -> timedelta | None:
        return {
            Target.FIRST_RESPONSE: self.first_response,
            Target.NEXT_RESPONSE: self.next_response,
            Target.RESOLUTION: self.resolution,
        }[target]

    def matches(self, ticket: TicketAttributes) -> bool:
        return all(
            not allowed or value in allowed
            for allowed, value in (
                (self.priorities, ticket.priority),
                (self.channels, ticket.channel),
                (self.tiers, ticket.tier),
            )
        )


def match_policy(policies: Iterable[SlaPolicy], ticket: TicketAttributes) -> SlaPolicy | None:
    """The first policy by ``position`` (then id, to break ties) whose conditions all match."""
    for policy in sorted(policies, key=lambda p: (p.position, str(p.id))):
        if policy.matches(ticket):
            return policy
    return None


class EventKind(StrEnum):
    CREATED = "created"
    AGENT_REPLIED = "agent_replied"
    """A public agent reply; internal notes are not clock events."""
    CUSTOMER_REPLIED = "customer_replied"
    STATUS_CHANGED = "status_changed"


@dataclass(frozen=True)
class TicketEvent:
    """One entry of a ticket's history; ``status`` is the new status, for status changes only."""

    at: datetime
    kind: EventKind
    status: TicketStatus | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _utc(self.at, "an event's time"))
        if (self.kind is EventKind.STATUS_CHANGED) != (self.status is not None):
            raise InvalidHistory("a status change, and only a status change, names the new status")


class ClockState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class TargetClock:
    """One cycle of one target, as it stood at the clock's ``evaluated_at``.

    ``deadline``: when the goal was reached, or for a running clock when it will be, or for a
    clock stopped while running the deadline it had then. ``None`` while paused short of the
    goal and when stopped during a pause short of it. ``warning_at`` is the same for the
    warning's share of the goal. ``elapsed`` counts business time while running only.
    """

    target: Target
    cycle: int
    goal: timedelta
    started_at: datetime
    state: ClockState
    elapsed: timedelta
    deadline: datetime | None
    warning_at: datetime | None
    stopped_at: datetime | None
    met_at: datetime | None
    breached_at: datetime | None

    @property
    def remaining(self) -> timedelta:
        """Business time left before the deadline (zero once it has passed)."""
        return max(self.goal - self.elapsed, timedelta(0))

    @property
    def overrun(self) -> timedelta:
        """Business time counted past the goal (zero until then)."""
        return max(self.elapsed - self.goal, timedelta(0))


@dataclass(frozen=True)
class SlaClock:
    """A ticket's clocks under one policy: first response, resolution, then the next-response
    cycles in order (each only when the policy has that target)."""

    ticket_id: UUID
    policy_id: UUID
    evaluated_at: datetime
    targets: tuple[TargetClock, ...]

    def current(self, target: Target) -> TargetClock | None:
        """The latest cycle of ``target``, if any."""
        cycles = [clock for clock in self.targets if clock.target is target]
        return cycles[-1] if cycles else None


class AlertKind(StrEnum):
    WARNING = "warning"
    BREACHED = "breached"


@dataclass(frozen=True)
class SlaAlert:
    """An ``sla.warning`` or ``sla.breached`` owed at ``at``; ``key`` is its identity."""

    ticket_id: UUID
    target: Target
    kind: AlertKind
    cycle: int
    at: datetime

    @property
    def key(self) -> str:
        return f"{self.ticket_id}:{self.target}:{self.kind}:{self.cycle}"


def compute_clock(
    policy: SlaPolicy, ticket_id: UUID, events: Sequence[TicketEvent], now: datetime
) -> SlaClock:
    """The ticket's clocks at ``now`` from its history, oldest first (ties in list order).

    Raises :class:`InvalidHistory` unless the history starts with the one creation, is in
    time order and has nothing after ``now``.
    """
    at_now = _utc(now, "now")
    _check(events, at_now)
    timeline = _Timeline(policy, events[0].at)
    for event in events[1:]:
        timeline.apply(event)
    clocks = tuple(_evaluate(policy, cycle, at_now) for cycle in timeline.cycles)
    order = {Target.FIRST_RESPONSE: 0, Target.RESOLUTION: 1, Target.NEXT_RESPONSE: 2}
    ordered = tuple(sorted(clocks, key=lambda clock: (order[clock.target], clock.cycle)))
    return SlaClock(ticket_id, policy.id, at_now, ordered)


def alerts(clock: SlaClock) -> tuple[SlaAlert, ...]:
    """Every alert the clock owes, past and projected, by time: a warning unless stopped by
    ``warning_at``, a breach unless stopped by the deadline."""
    owed = []
    for target in clock.targets:
        for kind, at in ((AlertKind.WARNING, target.warning_at), (AlertKind.BREACHED, target.deadline)):
            if at is not None and (target.stopped_at is None or target.stopped_at > at):
                owed.append(SlaAlert(clock.ticket_id, target.target, kind, target.cycle, at))
    rank = {AlertKind.WARNING: 0, AlertKind.BREACHED: 1}
    return tuple(sorted(owed, key=lambda alert: (alert.at, rank[alert.kind], alert.target, alert.cycle)))


def due_alerts(clock: SlaClock, now: datetime) -> tuple[SlaAlert, ...]:
    """The alerts due by ``now`` (at or before it); emit those whose key was not emitted yet."""
    at_now = _utc(now, "now")
    return tuple(alert for alert in alerts(clock) if alert.at <= at_now)


def next_due(clock: SlaClock, now: datetime) -> SlaAlert | None:
    """The first alert due after ``now``: when the scheduler next has work for this ticket."""
    at_now = _utc(now, "now")
    return next((alert for alert in alerts(clock) if alert.at > at_now), None)


# -- the history replayed --------------------------------------------------------------------


def _utc(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got the naive {at.isoformat()}")
    return at.astimezone(UTC)


def _check(events: Sequence[TicketEvent], now: datetime) -> None:
    if not events or events[0].kind is not EventKind.CREATED:
        raise InvalidHistory("a ticket's history starts with its creation")
    for index, event in enumerate(events):
        if index and event.kind is EventKind.CREATED:
            raise InvalidHistory(f"event {index}: a ticket is created once")
        if index and event.at < events[index - 1].at:
            raise InvalidHistory(f"event {index}: {event.at.isoformat()} is earlier than the event before")
        if event.at > now:
            raise InvalidHistory(f"event {index}: {event.at.isoformat()} is after now ({now.isoformat()})")


@dataclass
class _Cycle:
    target: Target
    number: int
    goal: timedelta
    started_at: datetime
    runs: list[tuple[datetime, datetime]] = field(default_factory=list)
    running_since: datetime | None = None
    stopped_at: datetime | None = None
    stopped_running: bool = False  # the stop ended a run (rather than a pause)

    def resume(self, at: datetime) -> None:
        if self.running_since is None:
            self.running_since = at

    def pause(self, at: datetime) -> None:
        if self.running_since is not None:
            self.runs.append((self.running_since, at))
            self.running_since = None

    def stop(self, at: datetime) -> None:
        self.stopped_running = self.running_since is not None
        self.pause(at)
        self.stopped_at = at


class _Timeline:
    """Replays a history into cycles of running time."""

    def __init__(self, policy: SlaPolicy, created_at: datetime) -> None:
        self.policy = policy
        self.status = TicketStatus.NEW
        self.cycles: list[_Cycle] = []
        self.agent_replied = False
        self.awaiting_answer = False  # a customer wrote after an agent reply and is unanswered
        self.first_response = self._start(Target.FIRST_RESPONSE, created_at, 1)
        self.resolution = self._start(Target.RESOLUTION, created_at, 1)
        self.next_response: _Cycle | None = None

    def apply(self, event: TicketEvent) -> None:
        at = event.at
        if event.kind is EventKind.AGENT_REPLIED:
            for cycle in (self.first_response, self.next_response):
                if cycle is not None and cycle.stopped_at is None:
                    cycle.stop(at)
            self.agent_replied, self.awaiting_answer = True, False
        elif event.kind is EventKind.CUSTOMER_REPLIED:
            if self.agent_replied and not self.awaiting_answer:
                self.awaiting_answer = True
                if self.status not in _DONE:
                    self._start_next_response(at)
        elif event.status is not None:
            self._change_status(event.status, at)

    def _change_status(self, status: TicketStatus, at: datetime) -> None:
        before, self.status = self.status, status
        active = [cycle for cycle in self.cycles if cycle.stopped_at is None]
        if status in _DONE and before not in _DONE:
            for cycle in active:
                cycle.stop(at)
            self.awaiting_answer = False
        elif before in _DONE and status not in _DONE:
            if self.resolution is not None:
                self.resolution.stopped_at = None
                if status not in _PAUSED:
                    self.resolution.resume(at)
            if self.awaiting_answer:
                self._start_next_response(at)
        elif status in _PAUSED and before not in _PAUSED:
            for cycle in active:
                cycle.pause(at)
        elif before in _PAUSED and status not in _PAUSED:
            for cycle in active:
                cycle.resume(at)

    def _start_next_response(self, at: datetime) -> None:
        number = self.next_response.number + 1 if self.next_response is not None else 1
        self.next_response = self._start(Target.NEXT_RESPONSE, at, number)

    def _start(self, target: Target, at: datetime, number: int) -> _Cycle | None:
        goal = self.policy.goal(target)
        if goal is None:
            return None
        cycle = _Cycle(target, number, goal, at)
        if self.status not in _PAUSED:
            cycle.resume(at)
        self.cycles.append(cycle)
        return cycle


def _evaluate(policy: SlaPolicy, cycle: _Cycle, now: datetime) -> TargetClock:
    calendar = policy.calendar
    lengths = [business_time_between(calendar, start, end) for start, end in cycle.runs]
    elapsed = sum(lengths, timedelta(0))
    # The runs that set the deadline; the last one runs on when the clock is running, and when
    # a stop ended it, to give the deadline that was in force then.
    runs: list[tuple[datetime, datetime | None]] = list(cycle.runs)
    if cycle.running_since is not None:
        runs.append((cycle.running_since, None))
        elapsed += business_time_between(calendar, cycle.running_since, now)
    elif cycle.stopped_at is not None and cycle.stopped_running:
        runs[-1] = (runs[-1][0], None)
    deadline = _reached(calendar, runs, lengths, cycle.goal)
    warn_after = policy.warning.elapsed_at_warning(cycle.goal)
    warning_at = _reached(calendar, runs, lengths, warn_after) if warn_after else cycle.started_at
    stopped = cycle.stopped_at
    met = stopped is not None and (deadline is None or stopped <= deadline)
    breached = deadline is not None and (deadline <= now if stopped is None else stopped > deadline)
    if stopped is not None:
        state = ClockState.STOPPED
    else:
        state = ClockState.RUNNING if cycle.running_since is not None else ClockState.PAUSED
    return TargetClock(
        target=cycle.target,
        cycle=cycle.number,
        goal=cycle.goal,
        started_at=cycle.started_at,
        state=state,
        elapsed=elapsed,
        deadline=deadline,
        warning_at=warning_at,
        stopped_at=stopped,
        met_at=stopped if met else None,
        breached_at=deadline if breached else None,
    )


def _reached(
    calendar: BusinessCalendar,
    runs: Sequence[tuple[datetime, datetime | None]],
    lengths: Sequence[timedelta],
    amount: timedelta,
) -> datetime | None:
    """The earliest instant by which ``amount`` of running business time has passed; ``None``
    when the runs end (paused or stopped) short of it. ``lengths`` are the closed runs'."""
    spent = timedelta(0)
    for index, (start, end) in enumerate(runs):
        if end is None or spent + lengths[index] >= amount:
            return add_business_time(calendar, start, amount - spent)
        spent += lengths[index]
    return None


# -- a ticket's history from what is stored ----------------------------------------------------

TIER_TAG = "tier:"
"""A ticket's customer tier, for policy conditions, is its tag ``tier:<name>`` (for now)."""


def tier_of(tags: Iterable[str]) -> str:
    """The name of the first ``tier:<name>`` tag, else "" (which matches only "any")."""
    return next((tag[len(TIER_TAG):] for tag in tags if tag.startswith(TIER_TAG)), "")


@dataclass(frozen=True)
class StoredFact:
    """A stored fact that may move a clock: a message (``direction`` inbound, reply or note)
    or a status change (``status``)."""

    at: datetime
    direction: str = ""
    status: TicketStatus | None = None


def history_of(created_at: datetime, facts: Sequence[StoredFact], now: datetime) -> list[TicketEvent]:
    """The history :func:`compute_clock` takes, from a ticket's stored facts in the order they
    were stored (messages, then status changes, is fine): the first inbound message is the one
    that opened the ticket (not a reply), later ones are customer replies, ``reply`` messages
    are agent replies, notes are not clock events. Times are the stored ones, held within
    ``[created_at, now]`` (a provider's clock may run ahead of ours) and sorted stably, so a
    history is always valid."""
    at_now = _utc(now, "now")
    start = min(_utc(created_at, "created_at"), at_now)
    events: list[TicketEvent] = []
    opening_seen = False
    for fact in sorted(facts, key=lambda f: f.at):
        at = min(max(_utc(fact.at, "a fact's time"), start), at_now)
        if fact.status is not None:
            events.append(TicketEvent(at, EventKind.STATUS_CHANGED, fact.status))
        elif fact.direction == "inbound":
            if opening_seen:
                events.append(TicketEvent(at, EventKind.CUSTOMER_REPLIED))
            opening_seen = True
        elif fact.direction == "reply":
            events.append(TicketEvent(at, EventKind.AGENT_REPLIED))
    return [TicketEvent(start, EventKind.CREATED), *events]


__all__ += ["TIER_TAG", "StoredFact", "history_of", "tier_of"]
