"""Campaign rules: status transitions, schedules, throttling and quiet hours. Pure.

Statuses: ``draft`` (editable) -> ``scheduled`` (waits for ``schedule_at``) or ``sending``
(now) -> ``sent`` once every recipient was handled. ``paused`` stops sending between batches
until resumed; ``cancelled`` stops for good. Only a draft is edited or deleted.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_campaigns.domain.errors import FieldError, InvalidFields, InvalidTransition
from crm_campaigns.domain.model import Campaign, QuietHours

MAX_THROTTLE = 100_000
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

# action -> (statuses it is allowed from, past participle for the error)
_ALLOWED: dict[str, tuple[frozenset[str], str]] = {
    "schedule": (frozenset({"draft"}), "scheduled"),
    "send": (frozenset({"draft", "scheduled"}), "sent"),
    "pause": (frozenset({"scheduled", "sending"}), "paused"),
    "resume": (frozenset({"paused"}), "resumed"),
    "cancel": (frozenset({"draft", "scheduled", "sending", "paused"}), "cancelled"),
    "edit": (frozenset({"draft"}), "edited"),
    "delete": (frozenset({"draft", "cancelled", "sent"}), "deleted"),
}


def check(campaign: Campaign, action: str) -> None:
    allowed, done = _ALLOWED[action]
    if campaign.status not in allowed:
        raise InvalidTransition(campaign.status, done)


def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def validate_settings(*, name: str, throttle_per_minute: int | None, quiet_hours: QuietHours | None,
                      segments: tuple[str, ...], exclude: tuple[str, ...]) -> list[FieldError]:
    errors: list[FieldError] = []
    if not name.strip():
        errors.append(FieldError("name", "must not be empty"))
    if throttle_per_minute is not None and not 1 <= throttle_per_minute <= MAX_THROTTLE:
        errors.append(FieldError("throttle_per_minute", f"from 1 to {MAX_THROTTLE}"))
    if not segments:
        errors.append(FieldError("audience.segments", "at least one segment"))
    if len(segments) + len(exclude) > 20:
        errors.append(FieldError("audience", "at most 20 segments, excluded ones included"))
    if quiet_hours is not None:
        for key in ("start", "end"):
            if not _HHMM.match(getattr(quiet_hours, key)):
                errors.append(FieldError(f"quiet_hours.{key}", "a local time as HH:MM"))
        if quiet_hours.start == quiet_hours.end:
            errors.append(FieldError("quiet_hours.end", "must differ from start"))
        if zone(quiet_hours.time_zone) is None:
            errors.append(FieldError("quiet_hours.time_zone", "an IANA time zone, like Europe/Paris"))
    return errors


def validate_schedule(schedule_at: datetime | None, now: datetime, *, required: bool) -> None:
    if schedule_at is None:
        if required:
            raise InvalidFields([FieldError("schedule_at", "required to schedule a campaign")])
        return
    if schedule_at.tzinfo is None:
        raise InvalidFields([FieldError("schedule_at", "needs a time zone offset")])
    if schedule_at <= now:
        raise InvalidFields([FieldError("schedule_at", "must be in the future")])


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(quiet: QuietHours | None, now: datetime, recipient_zone: str = "") -> datetime | None:
    """When quiet hours are on for the recipient at ``now``, the UTC time they end; else None.
    The recipient's own time zone wins over the campaign's (an unknown one is ignored)."""
    if quiet is None:
        return None
    tz = (zone(recipient_zone) if recipient_zone else None) or zone(quiet.time_zone) or UTC
    local = now.astimezone(tz)
    start, end = _hhmm(quiet.start), _hhmm(quiet.end)
    clock = local.time().replace(second=0, microsecond=0, tzinfo=None)
    # wrapping midnight (21:00 -> 08:00), quiet hours are the start's evening and the end's morning
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    ends_on = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(ends_on, end, tzinfo=tz).astimezone(UTC)


def batch_size(throttle_per_minute: int | None, default: int) -> int:
    """Recipients per batch: never more than a minute's worth of the throttle."""
    return max(1, min(default, throttle_per_minute or default))


def pace(sent: int, throttle_per_minute: int | None, elapsed: float) -> float:
    """Seconds to wait after ``sent`` messages in ``elapsed`` seconds so that the campaign stays
    at or below its throttle (0 when it is not throttled or already behind)."""
    if not throttle_per_minute:
        return 0.0
    return max(0.0, sent * 60.0 / throttle_per_minute - elapsed)


def transition(campaign: Campaign, action: str, now: datetime) -> Campaign:
    """The campaign after ``action`` (checked first)."""
    check(campaign, action)
    changes: dict[str, object] = {"updated_at": now, "version": campaign.version + 1}
    if action == "schedule":
        changes["status"] = "scheduled"
    elif action == "send":
        changes.update(status="sending", started_at=campaign.started_at or now)
    elif action == "pause":
        changes["status"] = "paused"
    elif action == "resume":
        waiting = (campaign.started_at is None and campaign.schedule_at is not None
                   and campaign.schedule_at > now)
        changes["status"] = "scheduled" if waiting else "sending"
        if not waiting:
            changes["started_at"] = campaign.started_at or now
    elif action == "cancel":
        changes.update(status="cancelled", finished_at=now)
    return replace(campaign, **changes)  # type: ignore[arg-type]
