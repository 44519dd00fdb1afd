"""Activities: what people do about a deal or a contact (calls, meetings, tasks, notes) and
the messages of the interaction stream linked to a contact's open deals; and when a deal rots.
Pure.

A call, meeting or task may be scheduled (due) and later completed, or logged as done. A note
is done when written and has no due date. An activity from the stream is done when the
message was sent and is read-only: it says what happened, so only its deletion is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from crm_pipeline.domain.errors import Conflict, FieldError, InvalidFields

MAX_SUBJECT = 300
MAX_BODY = 20_000
MAX_OWNER = 200
# The part of a message's text kept as its activity's body: enough to read the timeline by.
STREAM_BODY_CHARS = 500


class Kind(StrEnum):
    CALL = "call"
    MEETING = "meeting"
    TASK = "task"
    NOTE = "note"
    # From the interaction stream: the channel the message came or went on.
    EMAIL = "email"
    CHAT = "chat"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    SMS = "sms"
    # Commerce: an order placed, money given back.
    ORDER = "order"
    REFUND = "refund"


WRITTEN_KINDS = frozenset({Kind.CALL, Kind.MEETING, Kind.TASK, Kind.NOTE})
"""What people write over the API; every other kind comes from the stream."""
COMPLETABLE_KINDS = frozenset({Kind.CALL, Kind.MEETING, Kind.TASK})
"""What is scheduled and then done; a note is done when written."""


class ReadOnlyActivity(Conflict):
    """An activity from the interaction stream is a record of a message: not edited, not completed."""

    def __init__(self) -> None:
        super().__init__("an activity from the interaction stream cannot be changed")


@dataclass(frozen=True)
class Activity:
    id: UUID
    workspace_id: str
    kind: Kind
    subject: str
    body: str
    due_at: datetime | None
    owner_id: str | None
    deal_id: UUID | None
    contact_id: UUID | None
    completed_at: datetime | None
    completed_by: str | None
    interaction_id: str | None
    direction: str | None
    version: int
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def done(self) -> bool:
        return self.completed_at is not None

    @property
    def from_stream(self) -> bool:
        return self.interaction_id is not None

    @property
    def timeline_at(self) -> datetime:
        """Where it sits on a timeline: when it was done, else when it is due, else written
        (the store keeps the same as a generated column, to page by)."""
        return self.completed_at or self.due_at or self.created_at


@dataclass(frozen=True)
class ActivityDraft:
    """A written activity's checked fields, before it has an id."""

    kind: Kind
    subject: str
    body: str
    due_at: datetime | None
    owner_id: str | None
    deal_id: UUID | None
    contact_id: UUID | None
    done: bool


_EDITABLE = ("subject", "body", "due_at", "owner_id", "deal_id", "contact_id", "done")


def parse_new(raw: dict[str, Any]) -> ActivityDraft:
    """Check a new activity; every bad field is named in one InvalidFields."""
    errors: list[FieldError] = []
    unknown = sorted(set(raw) - {"kind", *_EDITABLE})
    errors += [FieldError(name, "unknown field") for name in unknown]
    kind = _kind(raw.get("kind"), errors)
    values = _values(raw, errors)
    if errors:
        raise InvalidFields(errors)
    assert kind is not None
    draft = ActivityDraft(kind=kind, subject=values.get("subject", ""), body=values.get("body", ""),
                          due_at=values.get("due_at"), owner_id=values.get("owner_id"),
                          deal_id=values.get("deal_id"), contact_id=values.get("contact_id"),
                          done=values.get("done", kind is Kind.NOTE))
    _check_whole(draft.kind, draft.subject, draft.body, draft.due_at, draft.deal_id, draft.contact_id,
                 draft.done)
    return draft


def parse_changes(raw: dict[str, Any]) -> dict[str, Any]:
    """Check the fields a PATCH sends (kind never changes); returns them by name."""
    errors: list[FieldError] = []
    if "kind" in raw:
        errors.append(FieldError("kind", "cannot change; delete the activity and write another"))
    errors += [FieldError(name, "unknown field") for name in sorted(set(raw) - {"kind", *_EDITABLE})]
    values = _values(raw, errors)
    if errors:
        raise InvalidFields(errors)
    return values


def apply_changes(activity: Activity, changes: dict[str, Any], now: datetime, actor: str) -> Activity:
    """The activity with ``changes`` (from ``parse_changes``), checked as a whole: a note keeps
    no due date, and something (a deal or a contact) stays linked. ``done`` completes it now or
    reopens it."""
    if activity.from_stream:
        raise ReadOnlyActivity()
    fields = {k: v for k, v in changes.items() if k != "done"}
    changed = replace(activity, **fields)
    if "done" in changes and changes["done"] != activity.done:
        completed = changes["done"]
        changed = replace(changed, completed_at=now if completed else None,
                          completed_by=actor if completed else None)
    _check_whole(changed.kind, changed.subject, changed.body, changed.due_at, changed.deal_id,
                 changed.contact_id, changed.done)
    return changed


def complete(activity: Activity, now: datetime, actor: str) -> Activity | None:
    """The activity done now by ``actor``; None when it was done already (completing twice
    changes nothing)."""
    if activity.from_stream:
        raise ReadOnlyActivity()
    if activity.kind not in COMPLETABLE_KINDS:
        raise InvalidFields([FieldError("kind", f"a {activity.kind.value} is done when written")])
    if activity.done:
        return None
    return replace(activity, completed_at=now, completed_by=actor)


def _kind(value: Any, errors: list[FieldError]) -> Kind | None:
    if value is None:
        errors.append(FieldError("kind", "required"))
        return None
    if value not in {k.value for k in WRITTEN_KINDS}:
        errors.append(FieldError("kind", "one of " + ", ".join(sorted(k.value for k in WRITTEN_KINDS))))
        return None
    return Kind(value)


def _values(raw: dict[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, limit in (("subject", MAX_SUBJECT), ("body", MAX_BODY)):
        if name in raw:
            text = raw[name] if raw[name] is not None else ""
            if not isinstance(text, str):
                errors.append(FieldError(name, "a string"))
            elif len(text) > limit:
                errors.append(FieldError(name, f"at most {limit} characters"))
            else:
                values[name] = text.strip() if name == "subject" else text
    if "owner_id" in raw:
        owner = raw["owner_id"]
        if owner is not None and (not isinstance(owner, str) or not owner.strip() or len(owner) > MAX_OWNER):
            errors.append(FieldError("owner_id", f"a user id of 1 to {MAX_OWNER} characters, or null"))
        else:
            values["owner_id"] = owner.strip() if owner else None
    if "due_at" in raw:
        values["due_at"] = _moment(raw["due_at"], "due_at", errors)
    for name in ("deal_id", "contact_id"):
        if name in raw:
            if raw[name] is None:
                values[name] = None
                continue
            try:
                values[name] = raw[name] if isinstance(raw[name], UUID) else UUID(str(raw[name]))
            except ValueError:
                errors.append(FieldError(name, "a UUID"))
    if "done" in raw:
        if not isinstance(raw["done"], bool):
            errors.append(FieldError("done", "true or false"))
        else:
            values["done"] = raw["done"]
    return values


def _moment(value: Any, name: str, errors: list[FieldError]) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            errors.append(FieldError(name, "an ISO 8601 date and time with its UTC offset"))
            return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        errors.append(FieldError(name, "an ISO 8601 date and time with its UTC offset"))
        return None
    return value


def _check_whole(kind: Kind, subject: str, body: str, due_at: datetime | None, deal_id: UUID | None,
                 contact_id: UUID | None, done: bool) -> None:
    errors: list[FieldError] = []
    if deal_id is None and contact_id is None:
        errors.append(FieldError("deal_id", "an activity is about a deal or a contact (or both)"))
    if kind is Kind.NOTE:
        if due_at is not None:
            errors.append(FieldError("due_at", "a note has no due date"))
        if not done:
            errors.append(FieldError("done", "a note is done when written"))
        if not body.strip():
            errors.append(FieldError("body", "a note needs a body"))
    elif not subject:
        errors.append(FieldError("subject", f"a {kind.value} needs a subject"))
    if errors:
        raise InvalidFields(errors)


# -- the interaction stream -------------------------------------------------------------------


@dataclass(frozen=True)
class StreamMessage:
    """An interaction as activities need it: who, on what channel, what was said, when."""

    interaction_id: str
    contact_id: UUID
    kind: Kind | None  # None: no activity (an auto-reply, a bounce); counted all the same
    direction: str  # inbound | outbound
    subject: str
    text: str
    occurred_at: datetime


_SKIPPED_INTERACTIONS = frozenset({"auto_reply", "bounce", "complaint"})


def stream_kind(channel: str, interaction_kind: str) -> Kind | None:
    """The activity kind of an interaction (``channel`` and ``interaction_kind`` as lower-case
    names: "email", "message"), or None when it is no activity: an auto-reply, a bounce or a
    complaint is nobody writing, and an unknown channel has no kind yet."""
    if interaction_kind in _SKIPPED_INTERACTIONS:
        return None
    if interaction_kind in (Kind.ORDER.value, Kind.REFUND.value):
        return Kind(interaction_kind)
    if channel in {k.value for k in Kind} and Kind(channel) not in WRITTEN_KINDS:
        return Kind(channel)
    return None


def stream_body(text: str) -> str:
    """The start of a message's text, as its activity's body."""
    return text if len(text) <= STREAM_BODY_CHARS else text[:STREAM_BODY_CHARS - 1] + "…"


# -- rotting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RottingDeal:
    """An open deal found rotting: what ``deal.rotting`` says of it."""

    workspace_id: str
    id: UUID
    pipeline_id: UUID
    stage_id: UUID
    owner_id: str | None
    contact_id: UUID | None
    rotting_days: int
    last_activity_at: datetime | None
    stage_entered_at: datetime
    since: datetime  # rotting_since(last_activity_at, stage_entered_at)


def rotting_since(last_activity_at: datetime | None, stage_entered_at: datetime) -> datetime:
    """Where a deal's quiet time counts from: its last activity, or its entry into the stage
    when that came later (a deal moved on is fresh in its new stage)."""
    if last_activity_at is None:
        return stage_entered_at
    return max(last_activity_at, stage_entered_at)


def is_rotting(*, open_: bool, rotting_days: int | None, last_activity_at: datetime | None,
               stage_entered_at: datetime, now: datetime) -> bool:
    """An open deal rots when its stage has a threshold and it has been quiet for longer."""
    if not open_ or rotting_days is None:
        return False
    return now - rotting_since(last_activity_at, stage_entered_at) > timedelta(days=rotting_days)
