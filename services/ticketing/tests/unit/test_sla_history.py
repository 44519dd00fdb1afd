"""A ticket's clock history rebuilt from stored facts, the tier tag, and stored policies read
back: the pure parts of SLA's service layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from crm_ticketing.domain.business_hours import BusinessCalendar
from crm_ticketing.domain.model import TicketStatus
from crm_ticketing.domain.sla import (
    ClockState,
    EventKind,
    InvalidPolicy,
    SlaPolicy,
    StoredFact,
    Target,
    TicketEvent,
    compute_clock,
    history_of,
    tier_of,
)
from crm_ticketing.service.sla import _field_errors, policy_of
from crm_ticketing.store.sla import PolicyRow

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_the_opening_message_is_not_a_reply_and_notes_are_not_events() -> None:
    facts = [StoredFact(at(0), direction="inbound"), StoredFact(at(5), direction="note"),
             StoredFact(at(10), direction="reply"), StoredFact(at(20), direction="inbound")]
    assert history_of(at(0), facts, at(30)) == [
        TicketEvent(at(0), EventKind.CREATED),
        TicketEvent(at(10), EventKind.AGENT_REPLIED),
        TicketEvent(at(20), EventKind.CUSTOMER_REPLIED),
    ]


def test_status_changes_interleave_with_messages_by_time() -> None:
    facts = [StoredFact(at(0), direction="inbound"), StoredFact(at(30), direction="inbound"),
             StoredFact(at(10), status=TicketStatus.PENDING), StoredFact(at(25), status=TicketStatus.OPEN)]
    assert [(e.at, e.kind, e.status) for e in history_of(at(0), facts, at(40))] == [
        (at(0), EventKind.CREATED, None),
        (at(10), EventKind.STATUS_CHANGED, TicketStatus.PENDING),
        (at(25), EventKind.STATUS_CHANGED, TicketStatus.OPEN),
        (at(30), EventKind.CUSTOMER_REPLIED, None),
    ]


def test_times_are_held_within_creation_and_now_so_a_skewed_clock_never_breaks_the_history() -> None:
    facts = [StoredFact(at(-5), direction="inbound"), StoredFact(at(-1), direction="reply"),
             StoredFact(at(90), status=TicketStatus.SOLVED)]
    history = history_of(at(0), facts, at(60))
    assert [(e.at, e.kind) for e in history] == [
        (at(0), EventKind.CREATED), (at(0), EventKind.AGENT_REPLIED), (at(60), EventKind.STATUS_CHANGED)]
    # And a creation time ahead of now (a provider's clock) starts at now.
    assert history_of(at(120), [], at(60)) == [TicketEvent(at(60), EventKind.CREATED)]
    policy = _policy(first_response_seconds=600)
    compute_clock(policy, uuid4(), history, at(60))  # valid: no InvalidHistory


def test_a_pending_status_pauses_the_rebuilt_clock() -> None:
    facts = [StoredFact(at(0), direction="inbound"), StoredFact(at(2), status=TicketStatus.PENDING)]
    history = history_of(at(0), facts, at(30))
    clock = compute_clock(_policy(first_response_seconds=600), uuid4(), history, at(30))
    first = clock.current(Target.FIRST_RESPONSE)
    assert first is not None
    assert (first.state, first.elapsed, first.deadline) == (ClockState.PAUSED, timedelta(minutes=2), None)


def test_the_tier_is_the_first_tier_tag() -> None:
    assert tier_of(("vip", "tier:gold", "tier:silver")) == "gold"
    assert tier_of(("vip",)) == ""


def test_a_stored_policy_reads_back_with_its_warning_defaulting_to_80_percent() -> None:
    policy = policy_of(_row(first_response_seconds=3600), BusinessCalendar.always_open())
    assert policy.first_response == timedelta(hours=1)
    assert policy.warning.percent == 80
    before = policy_of(_row(first_response_seconds=3600, warning_before_seconds=600),
                       BusinessCalendar.always_open())
    assert (before.warning.percent, before.warning.before) == (None, timedelta(minutes=10))
    with pytest.raises(InvalidPolicy):
        policy_of(_row(), BusinessCalendar.always_open())


def test_domain_problems_become_field_errors_with_their_place() -> None:
    errors = _field_errors(["week.mon[1]: 09:00-10:00 overlaps 09:30-11:00", "unknown field 'x'",
                            "zone: 'Mars/Base' is not an IANA time zone name"])
    assert [(e.field, e.message) for e in errors] == [
        ("week.mon[1]", "09:00-10:00 overlaps 09:30-11:00"), ("body", "unknown field 'x'"),
        ("zone", "'Mars/Base' is not an IANA time zone name")]


def _row(**targets: int | None) -> PolicyRow:
    values: dict[str, int | None] = {"first_response_seconds": None, "next_response_seconds": None,
                                     "resolution_seconds": None, "warning_percent": None,
                                     "warning_before_seconds": None}
    values.update(targets)
    return PolicyRow(id=uuid4(), workspace_id="w", name="p", position=0, calendar_id=uuid4(), priorities=(),
                     channels=(), tiers=(), version=1, created_at=T0, updated_at=T0, **values)


def _policy(**targets: int | None) -> SlaPolicy:
    return policy_of(_row(**targets), BusinessCalendar.always_open())
