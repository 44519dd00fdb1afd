"""A ticket's status transitions and the changes a write makes to a ticket. Pure.

A closed ticket is final: nothing moves it. A customer's later message to a closed ticket is
meant to open a new ticket linked to it (not built yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from crm_ticketing.domain.errors import FieldError, InvalidFields, TicketingError
from crm_ticketing.domain.model import Ticket, TicketPriority, TicketStatus, TicketType
from crmkit.fields import FieldDefinition, validate_custom

S = TicketStatus

ALLOWED: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PENDING, S.ON_HOLD, S.SOLVED}),
    S.OPEN: frozenset({S.PENDING, S.ON_HOLD, S.SOLVED}),
    S.PENDING: frozenset({S.OPEN, S.ON_HOLD, S.SOLVED}),
    S.ON_HOLD: frozenset({S.OPEN, S.PENDING, S.SOLVED}),
    S.SOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}

# Statuses a customer's reply moves back to open (a closed ticket stays closed).
REOPENED_BY_REPLY = frozenset({S.PENDING, S.ON_HOLD, S.SOLVED})

MAX_TAGS = 50
MAX_TAG_LENGTH = 64


class TicketError(TicketingError):
    """A write the ticket's rules refuse."""


class InvalidTransition(TicketError):
    def __init__(self, before: TicketStatus, after: TicketStatus) -> None:
        super().__init__(f"a ticket cannot go from {before.value} to {after.value}")
        self.before = before
        self.after = after


def can_move(before: TicketStatus, after: TicketStatus) -> bool:
    return after in ALLOWED[before]


def check_transition(before: TicketStatus, after: TicketStatus) -> None:
    if not can_move(before, after):
        raise InvalidTransition(before, after)


@dataclass(frozen=True)
class FieldChange:
    """One field's value before and after, as JSON."""

    field: str
    old: Any
    new: Any


_FIELDS = ("status", "priority", "type", "tags", "assignee", "team_id", "custom_fields")
_CUSTOM = "custom_fields"
MAX_ASSIGNEE_LENGTH = 200


def parse_changes(raw: dict[str, Any], definitions: Mapping[str, FieldDefinition] | None = None
                  ) -> dict[str, Any]:
    """The fields a write sets, as domain values: ``status``, ``priority`` (never null),
    ``type`` (null clears it) and ``tags`` (the whole set; trimmed, lower-cased, duplicates
    dropped, in the order sent), ``assignee`` and ``team_id`` (null clears them), and
    ``custom_fields`` (the keys sent, checked against the workspace's ``definitions``; null
    clears one). Raises InvalidFields naming every bad field, unknown ones too."""
    errors: list[FieldError] = [FieldError(name, "not a field of a ticket") for name in raw
                                if name not in _FIELDS]
    values: dict[str, Any] = {}
    for name, enum in (("status", TicketStatus), ("priority", TicketPriority), ("type", TicketType)):
        if name not in raw:
            continue
        value = raw[name]
        if value is None and name == "type":
            values[name] = None
            continue
        try:
            values[name] = enum(value)
        except ValueError:
            errors.append(FieldError(name, "one of " + ", ".join(m.value for m in enum)))
    errors += _assignment(raw, values)
    if _CUSTOM in raw:
        if isinstance(raw[_CUSTOM], dict):
            values[_CUSTOM], custom_errors = validate_custom(dict(definitions or {}), raw[_CUSTOM])
            errors += custom_errors
        else:
            errors.append(FieldError(_CUSTOM, "an object of custom field keys and values"))
    if "tags" in raw:
        tags = _tags(raw["tags"])
        if isinstance(tags, FieldError):
            errors.append(tags)
        else:
            values["tags"] = tags
    if errors:
        raise InvalidFields(errors)
    return values


def _assignment(raw: dict[str, Any], values: dict[str, Any]) -> list[FieldError]:
    """``assignee`` (an agent id, null unassigns) and ``team_id`` (a team's id, null clears it);
    whether they exist is the assignment hook's to check."""
    errors = []
    if "assignee" in raw:
        value = raw["assignee"]
        if value is None or (isinstance(value, str) and 0 < len(value) <= MAX_ASSIGNEE_LENGTH):
            values["assignee"] = value
        else:
            errors.append(FieldError("assignee", "an agent id, or null"))
    if "team_id" in raw:
        try:
            values["team_id"] = None if raw["team_id"] is None else UUID(str(raw["team_id"]))
        except ValueError:
            errors.append(FieldError("team_id", "a team's id, or null"))
    return errors


def _tags(raw: Any) -> tuple[str, ...] | FieldError:
    if not isinstance(raw, list | tuple) or not all(isinstance(t, str) for t in raw):
        return FieldError("tags", "a list of strings")
    tags = tuple(dict.fromkeys(t.strip().lower() for t in raw))
    if any(not t or len(t) > MAX_TAG_LENGTH or any(c.isspace() or c == "," for c in t) for t in tags):
        return FieldError("tags", f"each tag 1-{MAX_TAG_LENGTH} characters, without spaces or commas")
    if len(tags) > MAX_TAGS:
        return FieldError("tags", f"at most {MAX_TAGS} tags")
    return tags


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, UUID):
        return str(value)
    return value


def apply_changes(ticket: Ticket, values: dict[str, Any], now: datetime) -> tuple[Ticket, list[FieldChange]]:
    """The ticket after ``values`` (from ``parse_changes``) and each field that really changed.
    Raises InvalidTransition for a status the ticket cannot move to. Going to solved stamps
    ``solved_at``; reopening clears it. The version and ``updated_at`` move only when
    something changed."""
    values = dict(values)
    custom = values.pop(_CUSTOM, None)
    changes = [FieldChange(name, _json(getattr(ticket, name)), _json(value))
               for name, value in values.items() if getattr(ticket, name) != value]
    if custom is not None:
        changes += [FieldChange(f"{_CUSTOM}.{key}", ticket.custom_fields.get(key), value)
                    for key, value in custom.items() if ticket.custom_fields.get(key) != value]
        merged = {**ticket.custom_fields, **custom}
        values[_CUSTOM] = {key: value for key, value in merged.items() if value is not None}
    if not changes:
        return ticket, []
    after = replace(ticket, **values, version=ticket.version + 1, updated_at=now)
    if after.status is not ticket.status:
        check_transition(ticket.status, after.status)
        if after.status is S.SOLVED:
            after = replace(after, solved_at=now)
        elif ticket.status is S.SOLVED and after.status is S.OPEN:
            after = replace(after, solved_at=None)
    return after, changes


def reopened_by_reply(ticket: Ticket, now: datetime) -> tuple[Ticket, list[FieldChange]]:
    """A customer's message threaded into the ticket: pending, on-hold and solved go back to
    open; new, open and closed stay as they are."""
    if ticket.status not in REOPENED_BY_REPLY:
        return ticket, []
    return apply_changes(ticket, {"status": S.OPEN}, now)
