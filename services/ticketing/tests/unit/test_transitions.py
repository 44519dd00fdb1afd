"""A ticket's status transitions and the changes a write makes. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from crm_ticketing.domain.model import Ticket, TicketPriority, TicketStatus, TicketType
from crm_ticketing.domain.transitions import (
    ALLOWED,
    InvalidFields,
    InvalidTransition,
    apply_changes,
    can_move,
    parse_changes,
    reopened_by_reply,
)
from crmkit.fields import FieldDefinition, FieldType

S = TicketStatus
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

EXPECTED = {
    S.NEW: {S.OPEN, S.PENDING, S.ON_HOLD, S.SOLVED},
    S.OPEN: {S.PENDING, S.ON_HOLD, S.SOLVED},
    S.PENDING: {S.OPEN, S.ON_HOLD, S.SOLVED},
    S.ON_HOLD: {S.OPEN, S.PENDING, S.SOLVED},
    S.SOLVED: {S.OPEN, S.CLOSED},
    S.CLOSED: set(),
}


def ticket(status: TicketStatus = S.NEW, **kw: object) -> Ticket:
    fields: dict[str, object] = {
        "id": uuid4(), "workspace_id": "ws", "contact_id": uuid4(), "channel": "email", "subject": "Hi",
        "status": status, "message_count": 1, "created_at": NOW - timedelta(days=1),
    }
    fields.update(kw)
    return Ticket(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("before", list(S))
@pytest.mark.parametrize("after", list(S))
def test_the_transition_table_allows_exactly_the_documented_moves(before: TicketStatus,
                                                                   after: TicketStatus) -> None:
    assert can_move(before, after) is (after in EXPECTED[before])
    assert set(ALLOWED) == set(S)


def test_a_closed_ticket_is_final() -> None:
    for status in (S.NEW, S.OPEN, S.PENDING, S.ON_HOLD, S.SOLVED):
        with pytest.raises(InvalidTransition) as error:
            apply_changes(ticket(S.CLOSED), {"status": status}, NOW)
        assert error.value.before is S.CLOSED


def test_an_illegal_move_names_both_statuses() -> None:
    with pytest.raises(InvalidTransition) as error:
        apply_changes(ticket(S.OPEN), {"status": S.CLOSED}, NOW)
    assert (error.value.before, error.value.after) == (S.OPEN, S.CLOSED)
    assert str(error.value) == "a ticket cannot go from open to closed"


def test_solving_stamps_solved_at_and_reopening_clears_it() -> None:
    solved, changes = apply_changes(ticket(S.OPEN), {"status": S.SOLVED}, NOW)
    assert (solved.status, solved.solved_at, solved.version, solved.updated_at) == (S.SOLVED, NOW, 2, NOW)
    assert [(c.field, c.old, c.new) for c in changes] == [("status", "open", "solved")]
    reopened, _ = apply_changes(solved, {"status": S.OPEN}, NOW + timedelta(hours=1))
    assert (reopened.status, reopened.solved_at, reopened.version) == (S.OPEN, None, 3)


def test_only_what_changes_is_recorded_and_nothing_changed_keeps_the_version() -> None:
    before = ticket(S.OPEN, tags=("vip",))
    same, changes = apply_changes(before, {"status": S.OPEN, "tags": ("vip",)}, NOW)
    assert (same, changes) == (before, [])
    after, changes = apply_changes(before, {"status": S.OPEN, "priority": TicketPriority.HIGH,
                                            "type": TicketType.INCIDENT, "tags": ("vip", "refund")}, NOW)
    assert [(c.field, c.old, c.new) for c in changes] == [
        ("priority", "normal", "high"), ("type", None, "incident"), ("tags", ["vip"], ["vip", "refund"])]
    assert after.version == before.version + 1


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InvalidFields) as error:
        parse_changes({"status": "done", "priority": None, "type": "bug", "tags": "a,b", "assignee": 7})
    assert sorted(e.field for e in error.value.errors) == ["assignee", "priority", "status", "tags", "type"]


def test_tags_are_a_trimmed_lower_cased_set_in_the_order_sent() -> None:
    assert parse_changes({"tags": [" VIP", "refund", "vip"], "type": None}) == {
        "tags": ("vip", "refund"), "type": None}
    for bad in (["two words"], [""], ["a,b"], ["x" * 65], [f"t{n}" for n in range(51)], [1]):
        with pytest.raises(InvalidFields):
            parse_changes({"tags": bad})


@pytest.mark.parametrize(("before", "after"), [
    (S.SOLVED, S.OPEN), (S.PENDING, S.OPEN), (S.ON_HOLD, S.OPEN),
    (S.NEW, S.NEW), (S.OPEN, S.OPEN), (S.CLOSED, S.CLOSED),
])
def test_a_customer_reply_reopens_solved_pending_and_on_hold_tickets(before: TicketStatus,
                                                                     after: TicketStatus) -> None:
    reopened, changes = reopened_by_reply(ticket(before, solved_at=NOW if before is S.SOLVED else None), NOW)
    assert reopened.status is after
    assert bool(changes) is (before is not after)
    assert reopened.solved_at is None


PLAN = FieldDefinition("ticket", "plan", "Plan", FieldType.ENUM, ("free", "pro"))
SEATS = FieldDefinition("ticket", "seats", "Seats", FieldType.NUMBER)


def test_custom_fields_are_checked_against_the_workspaces_definitions() -> None:
    definitions = {"plan": PLAN, "seats": SEATS}
    assert parse_changes({"custom_fields": {"plan": "pro", "seats": None}}, definitions) == {
        "custom_fields": {"plan": "pro", "seats": None}}
    with pytest.raises(InvalidFields) as caught:
        parse_changes({"custom_fields": {"plan": "gold", "seats": True, "colour": "red"}}, definitions)
    assert sorted(e.field for e in caught.value.errors) == [
        "custom_fields.colour", "custom_fields.plan", "custom_fields.seats"]
    with pytest.raises(InvalidFields) as caught:
        parse_changes({"custom_fields": ["plan"]}, definitions)
    assert [e.field for e in caught.value.errors] == ["custom_fields"]


def test_custom_field_values_merge_a_null_clears_one_and_each_key_is_a_change() -> None:
    before = ticket(custom_fields={"plan": "free", "seats": 3})
    after, changes = apply_changes(before, {"custom_fields": {"plan": "pro", "seats": None}}, NOW)
    assert dict(after.custom_fields) == {"plan": "pro"}
    assert [(c.field, c.old, c.new) for c in changes] == [
        ("custom_fields.plan", "free", "pro"), ("custom_fields.seats", 3, None)]
    assert after.version == before.version + 1
    same, none = apply_changes(after, {"custom_fields": {"plan": "pro"}}, NOW)
    assert (same, none) == (after, [])
