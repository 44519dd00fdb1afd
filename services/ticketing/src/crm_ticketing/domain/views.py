"""Saved views: a named filter over a workspace's tickets and the order to list them in. Pure.

The same :class:`TicketFilter` serves a saved view and the filters of ``GET /v1/tickets``, and
one function in ``store/views.py`` turns it into SQL, so a view and the list it stands for can
never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crm_ticketing.domain.errors import FieldError, InvalidFields, TicketingError
from crm_ticketing.domain.model import TicketPriority, TicketStatus, TicketType

# Channels as crm.common.v1.Channel names them, lower-cased.
CHANNELS = ("email", "chat", "whatsapp", "messenger", "instagram", "telegram", "sms", "commerce")
# "me" is the caller; "unassigned" is no one.
ME = "me"
UNASSIGNED = "unassigned"
# Keyset orders: the column, "-" for newest first. Ties are broken by id in the same direction.
SORTS = ("-created_at", "created_at", "-updated_at", "updated_at")
DEFAULT_SORT = "-created_at"
MAX_VALUES = 50  # per list filter
MAX_NAME = 100
MAX_VIEWS_PER_OWNER = 100
_SUBJECT = re.compile(r"^[^\s,]{1,200}$")


class NotOwner(TicketingError):
    """A shared view is changed or deleted only by its owner (403)."""

    def __init__(self) -> None:
        super().__init__("only the view's owner can change or delete it")


class TooManyViews(TicketingError):
    """409: a person keeps at most MAX_VIEWS_PER_OWNER views."""

    def __init__(self) -> None:
        super().__init__(f"at most {MAX_VIEWS_PER_OWNER} views per person")


@dataclass(frozen=True)
class TicketFilter:
    """Every condition is ANDed; a list matches any of its values; an empty one matches all."""

    status: tuple[TicketStatus, ...] = ()
    priority: tuple[TicketPriority, ...] = ()
    channel: tuple[str, ...] = ()
    type: tuple[TicketType, ...] = ()
    tags_all: tuple[str, ...] = ()  # the ticket has every one of these tags
    tags_any: tuple[str, ...] = ()  # ... or at least one of these
    assignee: str | None = None  # a subject, ME or UNASSIGNED
    team_id: str | None = None  # a team id (a UUID), or UNASSIGNED
    contact_id: UUID | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    updated_from: datetime | None = None
    updated_to: datetime | None = None

    @property
    def uses_assignment(self) -> bool:
        return self.assignee is not None or self.team_id is not None

    def as_json(self) -> dict[str, Any]:
        """The stored (and answered) form: what :func:`parse_filter` reads back to the same filter."""
        out: dict[str, Any] = {}
        for name in ("status", "priority", "channel", "type"):
            values = getattr(self, name)
            if values:
                out[name] = [str(v) for v in values]
        if self.tags_all:
            out["tags"] = {"all": list(self.tags_all)}
        elif self.tags_any:
            out["tags"] = {"any": list(self.tags_any)}
        if self.assignee is not None:
            out["assignee"] = self.assignee
        if self.team_id is not None:
            out["team_id"] = self.team_id
        if self.contact_id is not None:
            out["contact_id"] = str(self.contact_id)
        for name in ("created", "updated"):
            bounds = {k: getattr(self, f"{name}_{k}").isoformat()
                      for k in ("from", "to") if getattr(self, f"{name}_{k}") is not None}
            if bounds:
                out[name] = bounds
        return out


@dataclass(frozen=True)
class ViewSpec:
    """What a caller sends to create or change a view; None: not sent (a PATCH keeps it)."""

    name: str | None = None
    shared: bool | None = None
    filters: TicketFilter | None = None
    sort: str | None = None


def _enum_list(errors: list[FieldError], path: str, raw: Any, kind: Any) -> tuple[Any, ...]:
    values = [raw] if isinstance(raw, str) else raw
    allowed = [m.value for m in kind] if not isinstance(kind, tuple) else list(kind)
    if (not isinstance(values, list) or not all(isinstance(v, str) for v in values)
            or len(values) > MAX_VALUES):
        errors.append(FieldError(path, f"a list of at most {MAX_VALUES} of: {', '.join(allowed)}"))
        return ()
    bad = [v for v in values if v not in allowed]
    if bad:
        errors.append(FieldError(path, f"each one of: {', '.join(allowed)}"))
        return ()
    found = tuple(dict.fromkeys(values))
    return found if isinstance(kind, tuple) else tuple(kind(v) for v in found)


def _tags(errors: list[FieldError], path: str, raw: Any) -> tuple[str, ...]:
    if (not isinstance(raw, list) or not raw or len(raw) > MAX_VALUES
            or not all(isinstance(t, str) for t in raw)):
        errors.append(FieldError(path, f"a list of 1-{MAX_VALUES} tags"))
        return ()
    tags = tuple(dict.fromkeys(t.strip().lower() for t in raw))
    if any(not t or len(t) > 64 or any(c.isspace() or c == "," for c in t) for t in tags):
        errors.append(FieldError(path, "each tag 1-64 characters, without spaces or commas"))
        return ()
    return tags


def _time(errors: list[FieldError], path: str, raw: Any) -> datetime | None:
    if raw is None:
        return None
    try:
        if not isinstance(raw, str):
            raise ValueError
        value = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(FieldError(path, "an ISO 8601 time with its zone"))
        return None
    if value.tzinfo is None:
        errors.append(FieldError(path, "an ISO 8601 time with its zone"))
        return None
    return value


def _range(errors: list[FieldError], path: str, raw: Any) -> tuple[datetime | None, datetime | None]:
    if not isinstance(raw, dict) or not raw or set(raw) - {"from", "to"}:
        errors.append(FieldError(path, 'an object with "from" and/or "to"'))
        return None, None
    start, end = _time(errors, f"{path}.from", raw.get("from")), _time(errors, f"{path}.to", raw.get("to"))
    if start is not None and end is not None and start > end:
        errors.append(FieldError(f"{path}.from", "after to"))
    return start, end


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


FILTER_FIELDS = ("status", "priority", "channel", "type", "tags", "assignee", "team_id", "contact_id",
                 "created", "updated")


def parse_filter(raw: Any, prefix: str = "filters.") -> TicketFilter:
    """A filter from its JSON form; InvalidFields names every bad or unknown field (under
    ``prefix``)."""
    errors: list[FieldError] = []
    found = _filter(errors, raw, prefix)
    if errors:
        raise InvalidFields(errors)
    return found


def _filter(errors: list[FieldError], raw: Any, prefix: str) -> TicketFilter:
    if not isinstance(raw, dict):
        errors.append(FieldError(prefix.rstrip("."), "an object"))
        return TicketFilter()
    errors += [FieldError(f"{prefix}{k}", "unknown filter") for k in raw if k not in FILTER_FIELDS]
    values: dict[str, Any] = {}
    for name, kind in (("status", TicketStatus), ("priority", TicketPriority), ("channel", CHANNELS),
                       ("type", TicketType)):
        if name in raw:
            values[name] = _enum_list(errors, f"{prefix}{name}", raw[name], kind)
    if "tags" in raw:
        tags = raw["tags"]
        if not isinstance(tags, dict) or len(tags) != 1 or next(iter(tags)) not in ("all", "any"):
            errors.append(FieldError(f"{prefix}tags",
                                     'an object with one of "all" or "any": a list of tags'))
        else:
            [(mode, listed)] = tags.items()
            values[f"tags_{mode}"] = _tags(errors, f"{prefix}tags.{mode}", listed)
    for name in ("assignee", "team_id"):
        if name in raw:
            value = raw[name]
            if not isinstance(value, str) or not _SUBJECT.match(value):
                errors.append(FieldError(f"{prefix}{name}", f'"{ME}", "{UNASSIGNED}" or an id'
                                         if name == "assignee" else f'"{UNASSIGNED}" or a team id'))
            elif name == "team_id" and value != UNASSIGNED and not _is_uuid(value):
                errors.append(FieldError(f"{prefix}{name}", f'"{UNASSIGNED}" or a team id'))
            else:
                values[name] = value
    if "contact_id" in raw:
        try:
            values["contact_id"] = UUID(str(raw["contact_id"]))
        except ValueError:
            errors.append(FieldError(f"{prefix}contact_id", "a UUID"))
    for name in ("created", "updated"):
        if name in raw:
            values[f"{name}_from"], values[f"{name}_to"] = _range(errors, f"{prefix}{name}", raw[name])
    return TicketFilter(**values)


def parse_view(raw: Any, *, creating: bool) -> ViewSpec:
    """A view's fields: ``name`` (1-100 characters), ``shared`` (default false), ``filters``
    (default none: every ticket) and ``sort`` (default newest first). Creating needs a name;
    InvalidFields names every bad or unknown field at once."""
    if not isinstance(raw, dict):
        raise InvalidFields([FieldError("body", "a JSON object")])
    errors = [FieldError(str(k), "unknown field") for k in raw
              if k not in ("name", "shared", "filters", "sort")]
    name = raw.get("name")
    if "name" in raw or creating:
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
            errors.append(FieldError("name", f"1-{MAX_NAME} characters"))
        else:
            name = name.strip()
    shared = raw.get("shared")
    if "shared" in raw and not isinstance(shared, bool):
        errors.append(FieldError("shared", "true or false"))
    filters = _filter(errors, raw["filters"], "filters.") if "filters" in raw else None
    sort = raw.get("sort")
    if "sort" in raw and sort not in SORTS:
        errors.append(FieldError("sort", f"one of: {', '.join(SORTS)}"))
    if errors:
        raise InvalidFields(errors)
    return ViewSpec(name=name, shared=shared, filters=filters, sort=sort)
