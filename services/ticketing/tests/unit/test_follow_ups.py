"""When a reply to an old ticket opens a follow-up, and the settings that say when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from crm_ticketing.domain.errors import InvalidFields
from crm_ticketing.domain.follow_ups import WorkspaceSettings, opens_follow_up, parse_settings
from crm_ticketing.domain.model import Ticket, TicketStatus

SOLVED_AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def ticket(status: TicketStatus, solved_at: datetime | None = None) -> Ticket:
    return Ticket(id=uuid4(), workspace_id="ws", contact_id=uuid4(), channel="email", subject="s",
                  status=status, message_count=1, created_at=SOLVED_AT - WEEK, solved_at=solved_at)


@pytest.mark.parametrize(("status", "written_after_solve", "follow_up"), [
    (TicketStatus.SOLVED, timedelta(days=7), False),  # at the end of the window: still reopens
    (TicketStatus.SOLVED, timedelta(days=7, seconds=1), True),
    (TicketStatus.SOLVED, -timedelta(hours=1), False),  # written before the solve, delivered late
    (TicketStatus.CLOSED, timedelta(0), True),  # closed is final whatever the window
    (TicketStatus.OPEN, timedelta(days=30), False),
    (TicketStatus.PENDING, timedelta(days=30), False),
])
def test_a_reply_opens_a_follow_up_after_the_window_or_to_a_closed_ticket(
    status: TicketStatus, written_after_solve: timedelta, follow_up: bool
) -> None:
    solved_at = SOLVED_AT if status in (TicketStatus.SOLVED, TicketStatus.CLOSED) else None
    assert opens_follow_up(ticket(status, solved_at), SOLVED_AT + written_after_solve, WEEK) is follow_up


def test_a_zero_window_makes_every_reply_to_a_solved_ticket_a_follow_up() -> None:
    assert opens_follow_up(ticket(TicketStatus.SOLVED, SOLVED_AT), SOLVED_AT + timedelta(seconds=1),
                           timedelta(0))


def test_settings_are_checked_and_versioned() -> None:
    saved = parse_settings({"reopen_window_days": 30}, WorkspaceSettings())
    assert (saved.reopen_window_days, saved.version, saved.reopen_window) == (30, 1, timedelta(days=30))
    assert parse_settings({}, saved) == WorkspaceSettings(30, 2)
    for bad in (-1, 366, 1.5, True, "7", None):
        with pytest.raises(InvalidFields) as caught:
            parse_settings({"reopen_window_days": bad}, saved)
        assert [e.field for e in caught.value.errors] == ["reopen_window_days"]
    with pytest.raises(InvalidFields) as caught:
        parse_settings({"reopen": 3}, saved)
    assert [e.field for e in caught.value.errors] == ["reopen"]
