from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_ticketing.domain.business_hours import BusinessCalendar, business_time_between
from crm_ticketing.domain.model import TicketStatus
from crm_ticketing.domain.sla import (
    AlertKind,
    ClockState,
    EventKind,
    InvalidHistory,
    InvalidPolicy,
    SlaClock,
    SlaPolicy,
    Target,
    TargetClock,
    TicketAttributes,
    TicketEvent,
    WarningThreshold,
    alerts,
    compute_clock,
    due_alerts,
    match_policy,
    next_due,
)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
MICRO = timedelta(microseconds=1)
TICKET = UUID("0190d1c8-0000-7000-8000-000000000001")
OFFICE = BusinessCalendar.from_dict({
    "zone": "UTC",
    "week": {day: [{"start": "09:00", "end": "17:00"}] for day in ("mon", "tue", "wed", "thu", "fri")},
})
FR, NR, RES = Target.FIRST_RESPONSE, Target.NEXT_RESPONSE, Target.RESOLUTION


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# 2026-01-05 is a Monday, 2026-01-09 a Friday.
MON = utc(2026, 1, 5)
TUE = utc(2026, 1, 6)
FRI = utc(2026, 1, 9)
NEXT_MON = utc(2026, 1, 12)


def policy(**changes: Any) -> SlaPolicy:
    fields: dict[str, Any] = {
        "id": UUID(int=10), "name": "Standard", "position": 1, "calendar": OFFICE, "first_response": 4 * HOUR,
    }
    fields.update(changes)
    return SlaPolicy(**fields)


def created(at: datetime) -> TicketEvent:
    return TicketEvent(at, EventKind.CREATED)


def agent(at: datetime) -> TicketEvent:
    return TicketEvent(at, EventKind.AGENT_REPLIED)


def customer(at: datetime) -> TicketEvent:
    return TicketEvent(at, EventKind.CUSTOMER_REPLIED)


def status(at: datetime, to: TicketStatus) -> TicketEvent:
    return TicketEvent(at, EventKind.STATUS_CHANGED, to)


def clock(events: Sequence[TicketEvent], now: datetime, **changes: Any) -> SlaClock:
    return compute_clock(policy(**changes), TICKET, events, now)


def target(events: Sequence[TicketEvent], now: datetime, which: Target = FR, **changes: Any) -> TargetClock:
    found = clock(events, now, **changes).current(which)
    assert found is not None
    return found


# -- policies --------------------------------------------------------------------------------

VIP = policy(id=UUID(int=1), name="VIP", position=1, tiers=frozenset({"vip"}))
URGENT_EMAIL = policy(id=UUID(int=2), name="Urgent email", position=2, priorities=frozenset({"urgent"}),
                      channels=frozenset({"email", "webform"}))
FALLBACK = policy(id=UUID(int=3), name="Everything else", position=9)


@pytest.mark.parametrize(("attributes", "expected"), [
    (TicketAttributes("urgent", "email", "vip"), VIP),
    (TicketAttributes("low", "chat", "vip"), VIP),
    (TicketAttributes("urgent", "email", ""), URGENT_EMAIL),
    (TicketAttributes("urgent", "webform", "gold"), URGENT_EMAIL),
    (TicketAttributes("urgent", "chat", ""), FALLBACK),
    (TicketAttributes("low", "email", ""), FALLBACK),
    (TicketAttributes(), FALLBACK),
])
def test_the_first_matching_policy_by_position_applies(
    attributes: TicketAttributes, expected: SlaPolicy
) -> None:
    assert match_policy([FALLBACK, URGENT_EMAIL, VIP], attributes) == expected


def test_no_policy_matches_without_a_catch_all() -> None:
    assert match_policy([VIP, URGENT_EMAIL], TicketAttributes("low", "email", "")) is None
    assert match_policy([], TicketAttributes()) is None


def test_policies_in_the_same_position_are_ordered_by_id() -> None:
    later = replace(FALLBACK, id=UUID(int=99))
    assert match_policy([later, FALLBACK], TicketAttributes()) == FALLBACK


@pytest.mark.parametrize(("changes", "problem"), [
    ({"first_response": None}, "at least one of first_response"),
    ({"first_response": timedelta(0)}, "first_response: more than 0"),
    ({"resolution": -HOUR}, "resolution: more than 0"),
    ({"next_response": timedelta(days=91)}, "next_response: more than 0 and at most 90 days"),
    ({"name": " "}, "name: 1 to 200"),
    ({"name": "x" * 201}, "name: 1 to 200"),
    ({"channels": frozenset({""})}, "channels: non-empty names"),
])
def test_an_invalid_policy_names_its_problem(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidPolicy) as raised:
        policy(**changes)
    assert any(problem in found for found in raised.value.problems), raised.value.problems


def test_every_policy_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidPolicy) as raised:
        policy(name="", first_response=timedelta(0), tiers=frozenset({""}))
    assert len(raised.value.problems) == 3


@pytest.mark.parametrize(("threshold", "problem"), [
    ({}, "either percent or before"),
    ({"percent": 80, "before": MINUTE}, "either percent or before"),
    ({"percent": 0}, "1 to 99"),
    ({"percent": 100}, "1 to 99"),
    ({"before": timedelta(0)}, "more than 0"),
])
def test_an_invalid_warning_threshold_is_refused(threshold: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidPolicy, match=problem):
        WarningThreshold(**threshold)


def test_condition_sets_may_be_given_as_any_set() -> None:
    assert policy(priorities={"high"}).priorities == frozenset({"high"})


# -- first response --------------------------------------------------------------------------

FRIDAY_4PM = [created(FRI + 16 * HOUR)]


@pytest.mark.parametrize(("case", "events", "now", "expected"), [
    ("running over the weekend", FRIDAY_4PM, FRI + 18 * HOUR,
     {"state": ClockState.RUNNING, "elapsed": HOUR, "deadline": NEXT_MON + 12 * HOUR, "breached_at": None}),
    ("a minute before the deadline", FRIDAY_4PM, NEXT_MON + 11 * HOUR + 59 * MINUTE,
     {"state": ClockState.RUNNING, "remaining": MINUTE, "breached_at": None}),
    ("the deadline passes without a reply", FRIDAY_4PM, NEXT_MON + 12 * HOUR,
     {"state": ClockState.RUNNING, "remaining": timedelta(0), "breached_at": NEXT_MON + 12 * HOUR}),
    ("still unanswered on tuesday", FRIDAY_4PM, TUE + 7 * 24 * HOUR + 10 * HOUR,
     {"overrun": 6 * HOUR, "breached_at": NEXT_MON + 12 * HOUR, "met_at": None}),  # 1 + 8 + 1 h of 4 h
    ("answered in time", [*FRIDAY_4PM, agent(NEXT_MON + 11 * HOUR)], NEXT_MON + 15 * HOUR,
     {"state": ClockState.STOPPED, "elapsed": 3 * HOUR, "remaining": HOUR, "met_at": NEXT_MON + 11 * HOUR,
      "breached_at": None, "deadline": NEXT_MON + 12 * HOUR}),
    ("answered at the deadline instant", [*FRIDAY_4PM, agent(NEXT_MON + 12 * HOUR)], NEXT_MON + 15 * HOUR,
     {"met_at": NEXT_MON + 12 * HOUR, "breached_at": None, "remaining": timedelta(0)}),
    ("answered a microsecond late", [*FRIDAY_4PM, agent(NEXT_MON + 12 * HOUR + MICRO)], NEXT_MON + 15 * HOUR,
     {"met_at": None, "breached_at": NEXT_MON + 12 * HOUR, "overrun": MICRO, "state": ClockState.STOPPED}),
    ("answered over the weekend", [*FRIDAY_4PM, agent(FRI + 20 * HOUR)], NEXT_MON,
     {"met_at": FRI + 20 * HOUR, "elapsed": HOUR}),
    ("solved without a reply counts as answered",
     [*FRIDAY_4PM, status(NEXT_MON + 10 * HOUR, TicketStatus.SOLVED)], NEXT_MON + 11 * HOUR,
     {"met_at": NEXT_MON + 10 * HOUR, "state": ClockState.STOPPED}),
])
def test_first_response(
    case: str, events: list[TicketEvent], now: datetime, expected: dict[str, Any]
) -> None:
    found = target(events, now)
    assert {name: getattr(found, name) for name in expected} == expected
    assert (found.target, found.cycle, found.goal, found.started_at) == (FR, 1, 4 * HOUR, FRI + 16 * HOUR)


def test_the_warning_comes_at_80_percent_by_default() -> None:
    assert target(FRIDAY_4PM, FRI + 17 * HOUR).warning_at == NEXT_MON + 11 * HOUR + 12 * MINUTE  # 3 h 12 min


@pytest.mark.parametrize(("threshold", "warning_at"), [
    (WarningThreshold(percent=50), NEXT_MON + 10 * HOUR),
    (WarningThreshold(before=30 * MINUTE), NEXT_MON + 11 * HOUR + 30 * MINUTE),
    (WarningThreshold(before=3 * HOUR), FRI + 17 * HOUR),  # one business hour in: closing time on friday
    (WarningThreshold(before=4 * HOUR), FRI + 16 * HOUR),  # the whole target ahead: at once
    (WarningThreshold(before=9 * HOUR), FRI + 16 * HOUR),
])
def test_warning_thresholds(threshold: WarningThreshold, warning_at: datetime) -> None:
    assert target(FRIDAY_4PM, FRI + 16 * HOUR, warning=threshold).warning_at == warning_at


def test_first_response_on_business_hours_across_berlins_spring_forward() -> None:
    berlin = BusinessCalendar.from_dict({**OFFICE.to_dict(), "zone": "Europe/Berlin"})
    opened = datetime(2026, 3, 27, 16, tzinfo=ZoneInfo("Europe/Berlin"))
    found = target([created(opened)], opened, calendar=berlin)
    assert found.deadline == utc(2026, 3, 30, 10)  # monday 12:00 CEST


def test_a_24_7_policy_counts_the_weekend() -> None:
    saturday = utc(2026, 1, 10, 10)
    found = target([created(saturday)], saturday, calendar=BusinessCalendar.always_open())
    assert found.deadline == utc(2026, 1, 10, 14)


# -- pauses ----------------------------------------------------------------------------------


def test_pending_pauses_every_running_clock_and_pushes_the_deadlines() -> None:
    events = [created(MON + 9 * HOUR), status(MON + 10 * HOUR, TicketStatus.PENDING)]
    first = target(events, MON + 11 * HOUR, FR, resolution=8 * HOUR)
    resolution = target(events, MON + 11 * HOUR, RES, resolution=8 * HOUR)
    assert (first.state, first.elapsed, first.remaining, first.deadline) == (
        ClockState.PAUSED, HOUR, 3 * HOUR, None)
    assert (resolution.state, resolution.remaining, resolution.deadline) == (
        ClockState.PAUSED, 7 * HOUR, None)
    assert resolution.warning_at is None  # 6 h 24 min not reached yet
    assert first.warning_at is None

    resumed = [*events, status(MON + 13 * HOUR, TicketStatus.OPEN)]
    first = target(resumed, MON + 14 * HOUR, FR, resolution=8 * HOUR)
    resolution = target(resumed, MON + 14 * HOUR, RES, resolution=8 * HOUR)
    assert (first.state, first.elapsed, first.deadline) == (ClockState.RUNNING, 2 * HOUR, MON + 16 * HOUR)
    assert resolution.deadline == TUE + 12 * HOUR  # 1 h + 4 h on monday, 3 h on tuesday


def test_a_pause_overnight_pushes_the_deadline_by_the_business_time_paused() -> None:
    events = [created(MON + 9 * HOUR), status(MON + 16 * HOUR, TicketStatus.ON_HOLD),
              status(TUE + 10 * HOUR, TicketStatus.OPEN)]
    found = target(events, TUE + 10 * HOUR, RES, first_response=None, resolution=8 * HOUR)
    assert found.deadline == TUE + 11 * HOUR  # monday 17:00 pushed by 2 h (16-17 and 09-10)


def test_moving_between_pending_and_on_hold_stays_paused() -> None:
    events = [created(MON + 9 * HOUR), status(MON + 10 * HOUR, TicketStatus.PENDING),
              status(MON + 11 * HOUR, TicketStatus.ON_HOLD), status(MON + 12 * HOUR, TicketStatus.OPEN)]
    found = target(events, MON + 12 * HOUR)
    assert (found.state, found.elapsed, found.deadline) == (ClockState.RUNNING, HOUR, MON + 15 * HOUR)


def test_a_breach_before_the_pause_stands() -> None:
    events = [created(MON + 9 * HOUR), status(MON + 12 * HOUR, TicketStatus.PENDING)]
    found = target(events, MON + 13 * HOUR, RES, resolution=2 * HOUR)
    assert (found.state, found.deadline, found.breached_at) == (
        ClockState.PAUSED, MON + 11 * HOUR, MON + 11 * HOUR)
    assert found.overrun == HOUR


def test_solving_a_pending_ticket_meets_the_resolution_target() -> None:
    events = [created(MON + 9 * HOUR), agent(MON + 9 * HOUR + 30 * MINUTE),
              status(MON + 9 * HOUR + 30 * MINUTE, TicketStatus.PENDING),
              status(TUE + 16 * HOUR, TicketStatus.SOLVED)]
    found = target(events, TUE + 17 * HOUR, RES, resolution=2 * HOUR)
    assert (found.state, found.elapsed, found.met_at, found.deadline) == (
        ClockState.STOPPED, 30 * MINUTE, TUE + 16 * HOUR, None)


def test_a_ticket_created_and_set_pending_at_once_starts_paused() -> None:
    events = [created(MON + 9 * HOUR), status(MON + 9 * HOUR, TicketStatus.PENDING)]
    found = target(events, TUE)
    assert (found.state, found.elapsed, found.deadline, found.warning_at) == (
        ClockState.PAUSED, timedelta(0), None, None)


# -- reopening -------------------------------------------------------------------------------


def test_reopening_resumes_the_resolution_clock_where_it_stood() -> None:
    events = [created(MON + 9 * HOUR), agent(MON + 10 * HOUR), status(MON + 11 * HOUR, TicketStatus.SOLVED)]
    solved = target(events, MON + 12 * HOUR, RES, resolution=8 * HOUR)
    assert (solved.state, solved.met_at, solved.elapsed) == (ClockState.STOPPED, MON + 11 * HOUR, 2 * HOUR)

    reopened = [*events, status(TUE + 9 * HOUR, TicketStatus.OPEN)]
    running = target(reopened, TUE + 10 * HOUR, RES, resolution=8 * HOUR)
    assert (running.state, running.cycle, running.elapsed, running.deadline, running.met_at) == (
        ClockState.RUNNING, 1, 3 * HOUR, TUE + 15 * HOUR, None)

    late = target([*reopened, status(TUE + 16 * HOUR, TicketStatus.SOLVED)], TUE + 17 * HOUR, RES,
                  resolution=8 * HOUR)
    assert (late.state, late.met_at, late.breached_at, late.overrun) == (
        ClockState.STOPPED, None, TUE + 15 * HOUR, HOUR)


def test_reopening_into_pending_stays_paused() -> None:
    events = [created(MON + 9 * HOUR), status(MON + 11 * HOUR, TicketStatus.SOLVED),
              status(TUE + 9 * HOUR, TicketStatus.PENDING)]
    found = target(events, TUE + 12 * HOUR, RES, resolution=8 * HOUR)
    assert (found.state, found.elapsed) == (ClockState.PAUSED, 2 * HOUR)


def test_closing_a_solved_ticket_changes_nothing_and_reopening_a_closed_one_resumes() -> None:
    events = [created(MON + 9 * HOUR), status(MON + 11 * HOUR, TicketStatus.SOLVED),
              status(MON + 12 * HOUR, TicketStatus.CLOSED)]
    assert target(events, TUE, RES, resolution=8 * HOUR).met_at == MON + 11 * HOUR
    reopened = [*events, status(TUE + 9 * HOUR, TicketStatus.OPEN)]
    found = target(reopened, TUE + 9 * HOUR, RES, resolution=8 * HOUR)
    assert found.state is ClockState.RUNNING


def test_the_first_response_stays_answered_after_a_reopen() -> None:
    events = [created(MON + 9 * HOUR), agent(MON + 10 * HOUR), status(MON + 11 * HOUR, TicketStatus.SOLVED),
              status(TUE + 9 * HOUR, TicketStatus.OPEN)]
    found = target(events, TUE + 17 * HOUR)
    assert (found.state, found.met_at) == (ClockState.STOPPED, MON + 10 * HOUR)


# -- next response ---------------------------------------------------------------------------

CONVERSATION = [
    created(MON + 9 * HOUR),
    customer(MON + 9 * HOUR + 30 * MINUTE),  # before any agent reply: the first response's business
    agent(MON + 10 * HOUR),
    customer(MON + 11 * HOUR),  # cycle 1 starts
    customer(MON + 11 * HOUR + 30 * MINUTE),  # joins cycle 1
    agent(MON + 12 * HOUR),  # cycle 1 met after 1 h
    agent(MON + 12 * HOUR + 5 * MINUTE),  # nothing to answer
    customer(MON + 15 * HOUR),  # cycle 2 starts
]
CONVERSING = {"next_response": 2 * HOUR, "resolution": 40 * HOUR}


def test_each_customer_reply_after_an_agent_reply_starts_a_next_response_cycle() -> None:
    found = clock(CONVERSATION, MON + 16 * HOUR, **CONVERSING)
    cycles = [c for c in found.targets if c.target is NR]
    assert [(c.cycle, c.started_at, c.stopped_at, c.met_at) for c in cycles] == [
        (1, MON + 11 * HOUR, MON + 12 * HOUR, MON + 12 * HOUR),
        (2, MON + 15 * HOUR, None, None),
    ]
    assert cycles[0].elapsed == HOUR
    assert (cycles[1].state, cycles[1].deadline, cycles[1].remaining) == (
        ClockState.RUNNING, MON + 17 * HOUR, HOUR)
    assert found.current(NR) == cycles[1]
    assert [c.target for c in found.targets] == [FR, RES, NR, NR]
    first = found.current(FR)
    assert first is not None
    assert first.met_at == MON + 10 * HOUR


def test_an_unanswered_next_response_breaches_at_closing_time() -> None:
    found = target(CONVERSATION, TUE + 10 * HOUR, NR, **CONVERSING)
    assert (found.cycle, found.breached_at, found.overrun) == (2, MON + 17 * HOUR, HOUR)


def test_solving_answers_the_open_next_response_cycle() -> None:
    events = [*CONVERSATION, status(MON + 16 * HOUR, TicketStatus.SOLVED)]
    found = target(events, TUE, NR, **CONVERSING)
    assert (found.cycle, found.state, found.met_at) == (2, ClockState.STOPPED, MON + 16 * HOUR)


def test_a_reply_to_a_solved_ticket_waits_for_the_reopen() -> None:
    events = [created(MON + 9 * HOUR), agent(MON + 10 * HOUR), status(MON + 10 * HOUR, TicketStatus.SOLVED),
              customer(MON + 11 * HOUR)]
    assert clock(events, MON + 12 * HOUR, **CONVERSING).current(NR) is None
    reopened = [*events, status(MON + 13 * HOUR, TicketStatus.OPEN)]
    found = target(reopened, MON + 13 * HOUR, NR, **CONVERSING)
    assert (found.cycle, found.started_at, found.deadline) == (1, MON + 13 * HOUR, MON + 15 * HOUR)


def test_a_reopen_without_a_customer_reply_starts_no_cycle() -> None:
    events = [created(MON + 9 * HOUR), agent(MON + 10 * HOUR), status(MON + 10 * HOUR, TicketStatus.SOLVED),
              status(MON + 13 * HOUR, TicketStatus.OPEN)]
    assert clock(events, MON + 14 * HOUR, **CONVERSING).current(NR) is None


def test_a_next_response_cycle_started_while_pending_waits_for_the_resume() -> None:
    events = [created(MON + 9 * HOUR), agent(MON + 10 * HOUR), status(MON + 10 * HOUR, TicketStatus.PENDING),
              customer(MON + 11 * HOUR), status(MON + 14 * HOUR, TicketStatus.OPEN)]
    found = target(events, MON + 14 * HOUR, NR, **CONVERSING)
    assert (found.started_at, found.elapsed, found.deadline) == (
        MON + 11 * HOUR, timedelta(0), MON + 16 * HOUR)


def test_a_policy_without_a_next_response_target_has_no_cycles() -> None:
    found = clock(CONVERSATION, MON + 16 * HOUR)
    assert [c.target for c in found.targets] == [FR]


# -- alerts for the scheduler ----------------------------------------------------------------


def test_a_running_clock_owes_a_warning_then_a_breach() -> None:
    found = clock(FRIDAY_4PM, FRI + 16 * HOUR)
    warning, breach = alerts(found)
    assert (warning.kind, warning.at, warning.target, warning.cycle) == (
        AlertKind.WARNING, NEXT_MON + 11 * HOUR + 12 * MINUTE, FR, 1)
    assert (breach.kind, breach.at) == (AlertKind.BREACHED, NEXT_MON + 12 * HOUR)
    assert warning.key == f"{TICKET}:first_response:warning:1"
    assert breach.key == f"{TICKET}:first_response:breached:1"

    assert next_due(found, FRI + 16 * HOUR) == warning
    assert due_alerts(found, FRI + 16 * HOUR) == ()
    assert next_due(found, warning.at) == breach  # strictly after: a scheduler woken at a due time moves on
    assert due_alerts(found, warning.at) == (warning,)
    assert due_alerts(found, breach.at) == (warning, breach)
    assert next_due(found, breach.at) is None


@pytest.mark.parametrize(("reply_at", "owed"), [
    (NEXT_MON + 11 * HOUR, []),
    (NEXT_MON + 11 * HOUR + 12 * MINUTE, []),  # stopped at the warning instant: no warning
    (NEXT_MON + 11 * HOUR + 30 * MINUTE, [AlertKind.WARNING]),
    (NEXT_MON + 12 * HOUR, [AlertKind.WARNING]),  # met at the deadline instant
    (NEXT_MON + 13 * HOUR, [AlertKind.WARNING, AlertKind.BREACHED]),
])
def test_a_stopped_clock_owes_what_happened_before_it_stopped(
    reply_at: datetime, owed: list[AlertKind]
) -> None:
    found = clock([*FRIDAY_4PM, agent(reply_at)], reply_at)
    assert [alert.kind for alert in alerts(found)] == owed
    assert next_due(found, reply_at) is None


def test_a_pause_moves_the_alerts_but_keeps_their_identity() -> None:
    before = alerts(clock(FRIDAY_4PM, FRI + 16 * HOUR))
    paused = [*FRIDAY_4PM, status(NEXT_MON + 9 * HOUR, TicketStatus.PENDING)]
    assert alerts(clock(paused, NEXT_MON + 10 * HOUR)) == ()
    after = alerts(clock([*paused, status(NEXT_MON + 10 * HOUR, TicketStatus.OPEN)], NEXT_MON + 10 * HOUR))
    assert [a.key for a in after] == [b.key for b in before]
    assert [a.at - b.at for a, b in zip(after, before, strict=True)] == [HOUR, HOUR]


def test_every_cycle_has_its_own_alert_identity() -> None:
    found = clock([*CONVERSATION, agent(TUE + 10 * HOUR), customer(TUE + 11 * HOUR)], TUE + 11 * HOUR,
                  **CONVERSING)
    keys = [alert.key for alert in alerts(found)]
    assert len(keys) == len(set(keys))
    assert f"{TICKET}:next_response:breached:2" in keys
    assert f"{TICKET}:next_response:breached:3" in keys
    assert f"{TICKET}:next_response:breached:1" not in keys  # met
    due = next_due(found, TUE + 11 * HOUR)
    assert due is not None
    assert (due.target, due.kind, due.cycle) == (NR, AlertKind.WARNING, 3)


# -- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("events", "now", "message"), [
    ([], TUE, "starts with its creation"),
    ([agent(MON)], TUE, "starts with its creation"),
    ([created(MON), created(MON + HOUR)], TUE, "created once"),
    ([created(MON), agent(MON + 2 * HOUR), customer(MON + HOUR)], TUE, "earlier than the event before"),
    ([created(MON), agent(TUE + HOUR)], TUE, "after now"),
])
def test_a_history_a_clock_cannot_follow_is_refused(
    events: list[TicketEvent], now: datetime, message: str
) -> None:
    with pytest.raises(InvalidHistory, match=message):
        clock(events, now)


def test_events_and_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        created(datetime(2026, 1, 5, 9))
    with pytest.raises(ValueError, match="aware"):
        clock([created(MON)], datetime(2026, 1, 6))
    with pytest.raises(InvalidHistory, match="status change"):
        TicketEvent(MON, EventKind.STATUS_CHANGED)
    with pytest.raises(InvalidHistory, match="status change"):
        TicketEvent(MON, EventKind.AGENT_REPLIED, TicketStatus.OPEN)


def test_event_times_are_kept_in_utc() -> None:
    event = created(datetime(2026, 1, 5, 10, tzinfo=ZoneInfo("Europe/Berlin")))
    assert event.at == MON + 9 * HOUR
    assert event.at.tzinfo is UTC


def test_a_clock_is_a_pure_function_of_its_history() -> None:
    events = [*CONVERSATION, status(MON + 16 * HOUR, TicketStatus.PENDING)]
    assert clock(events, TUE, **CONVERSING) == clock(list(events), TUE, **CONVERSING)
    assert clock(events, TUE, **CONVERSING).evaluated_at == TUE
    assert clock(events, TUE, **CONVERSING).policy_id == UUID(int=10)


STEPS = ["agent", "customer", "open", "pending", "on_hold", "solved"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.sampled_from(STEPS)), max_size=12), st.integers(0, 3000))
def test_a_clock_never_counts_more_than_the_time_running_and_agrees_with_its_alerts(
    steps: list[tuple[int, str]], tail: int
) -> None:
    events, at = [created(MON + 9 * HOUR)], MON + 9 * HOUR
    for minutes, what in steps:
        at += minutes * MINUTE
        if what == "agent":
            events.append(agent(at))
        elif what == "customer":
            events.append(customer(at))
        else:
            events.append(status(at, TicketStatus(what)))
    now = at + tail * MINUTE
    found = clock(events, now, first_response=2 * HOUR, next_response=HOUR, resolution=6 * HOUR)
    for cycle in found.targets:
        assert timedelta(0) <= cycle.elapsed <= now - cycle.started_at
        assert not (cycle.met_at and cycle.breached_at)
        assert (cycle.met_at is not None) is (cycle.stopped_at is not None and cycle.breached_at is None)
        if cycle.breached_at is not None:
            assert cycle.elapsed >= cycle.goal
        if cycle.state is ClockState.RUNNING and cycle.breached_at is None:  # deadline and count agree
            assert cycle.deadline is not None
            assert business_time_between(OFFICE, now, cycle.deadline) == cycle.goal - cycle.elapsed
        if cycle.state is ClockState.PAUSED and cycle.breached_at is None:
            assert cycle.deadline is None
    for alert in due_alerts(found, now):
        assert alert.at <= now
    upcoming = next_due(found, now)
    assert upcoming is None or upcoming.at > now
