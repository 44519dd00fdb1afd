"""When a customer's message to an old ticket opens a new one instead. Pure.

A reply to a solved ticket within the workspace's reopen window reopens it; after the window,
or to a closed ticket (closed is final), it opens a follow-up ticket linked to the old one, so
that the old ticket's history and reports stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from crm_ticketing.domain.errors import FieldError, InvalidFields
from crm_ticketing.domain.model import Ticket, TicketStatus

DEFAULT_REOPEN_WINDOW_DAYS = 7
MAX_REOPEN_WINDOW_DAYS = 365


class LinkKind(StrEnum):
    FOLLOW_UP = "follow_up"  # the ticket was opened by a reply to the linked, finished one
    RELATED = "related"  # an agent linked them


@dataclass(frozen=True)
class WorkspaceSettings:
    reopen_window_days: int = DEFAULT_REOPEN_WINDOW_DAYS
    version: int = 0  # 0 until the workspace saves its own

    @property
    def reopen_window(self) -> timedelta:
        return timedelta(days=self.reopen_window_days)


def opens_follow_up(ticket: Ticket, written_at: datetime, window: timedelta) -> bool:
    """Whether a message written at ``written_at`` to ``ticket`` opens a follow-up ticket:
    the ticket is closed, or was solved longer than ``window`` before the message."""
    if ticket.status is TicketStatus.CLOSED:
        return True
    return (ticket.status is TicketStatus.SOLVED and ticket.solved_at is not None
            and written_at - ticket.solved_at > window)


def parse_settings(raw: dict[str, Any], current: WorkspaceSettings) -> WorkspaceSettings:
    """The settings after a PUT of ``raw``: every bad or unknown field named at once."""
    errors = [FieldError(name, "unknown field") for name in raw if name != "reopen_window_days"]
    days = raw.get("reopen_window_days", current.reopen_window_days)
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_REOPEN_WINDOW_DAYS:
        errors.append(FieldError("reopen_window_days",
                                 f"a whole number of days from 0 to {MAX_REOPEN_WINDOW_DAYS}"))
    if errors:
        raise InvalidFields(errors)
    return WorkspaceSettings(reopen_window_days=days, version=current.version + 1)
