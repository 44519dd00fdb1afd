"""Business-hours calendars and business-time arithmetic on them. Pure: no I/O, no framework.

A calendar is an IANA time zone, opening intervals for each weekday and holidays. Its rules:

- Hours are wall-clock times in the calendar's zone, at minute precision. An interval is
  ``[start, end)`` within one date; ``end`` may be ``24:00``. Several intervals a day are fine,
  touching ones too (``09:00-12:00`` and ``12:00-13:00``), overlapping ones are refused.
- Overnight intervals (``22:00-06:00``) are refused, with an error that says how to write them:
  ``22:00-24:00`` on one day and ``00:00-06:00`` on the next. So every interval belongs to the
  date it is listed on, and a holiday closes exactly its own date's intervals.
- A holiday names a date. Without hours it is closed all day; with hours, those hours replace
  the weekday's hours on that date.
- An interval opens at the first instant at which the zone's clock reads its start on its date
  (or later) and closes at the first instant the clock reads its end (or later). Business time
  is the real time elapsed while open. Hence, across daylight-saving changes:

  * a transition outside an interval changes nothing: ``09:00-17:00`` is 8 h on a DST Sunday;
  * a transition inside an interval lengthens or shortens it by the shift: ``00:00-06:00`` is
    5 h on Europe/Berlin's 2026-03-29 and 7 h on its 2026-10-25;
  * a time skipped by spring-forward is reached when the clock jumps over it: ``02:30-04:00``
    in Berlin on 2026-03-29 opens at 03:00 CEST and lasts 1 h;
  * a time repeated by fall-back is taken at its first occurrence: ``01:00-02:30`` in Berlin on
    2026-10-25 closes at 02:30 CEST and is closed during the repeated 02:00-03:00 CET.

- A "24/7" calendar (:meth:`BusinessCalendar.always_open`) is open every day 00:00-24:00;
  its business time is simply elapsed time.

Every operation takes and returns aware datetimes (returns are in UTC); naive ones raise
``ValueError``. ``add_business_time`` and ``next_opening`` look at most :data:`HORIZON_DAYS`
local days ahead and raise :class:`BeyondHorizon` past that. The walks go day by day over the
opening intervals and skip whole weeks when a week has no holiday, begins at a midnight that
exists and keeps one UTC offset throughout (checked every 12 hours; no two transitions in
tzdata are within four days of each other).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

__all__ = [
    "HORIZON_DAYS",
    "MAX_HOLIDAYS",
    "MAX_INTERVALS_PER_DAY",
    "WEEKDAYS",
    "BeyondHorizon",
    "BusinessCalendar",
    "Holiday",
    "Interval",
    "InvalidCalendar",
    "add_business_time",
    "business_time_between",
    "is_open",
    "next_opening",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday keys of the calendar's JSON shape, Monday first (as ``date.weekday()``)."""
MAX_INTERVALS_PER_DAY = 12
MAX_HOLIDAYS = 1000
MAX_NAME_LENGTH = 100
HORIZON_DAYS = 3 * 366
"""How many local days ahead ``add_business_time`` and ``next_opening`` look."""

_DAY_MINUTES = 24 * 60
_ONE_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
_PROBE = timedelta(hours=12)
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CALENDAR_KEYS = frozenset({"zone", "week", "holidays"})
_HOLIDAY_KEYS = frozenset({"date", "name", "hours"})
_INTERVAL_KEYS = frozenset({"start", "end"})


class InvalidCalendar(ValueError):
    """A calendar that cannot be used; ``problems`` names every problem found, one per item."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(dict.fromkeys(problems))
        super().__init__("invalid business-hours calendar: " + "; ".join(self.problems))


class BeyondHorizon(ValueError):
    """The answer lies more than :data:`HORIZON_DAYS` days ahead (or the calendar never opens)."""


@dataclass(frozen=True, order=True)
class Interval:
    """Opening hours within one date: ``[start, end)`` in minutes after local midnight.

    ``0 <= start < end <= 1440``; ``end == 1440`` is 24:00. Build one from clock strings
    with :meth:`parse`. Raises :class:`InvalidCalendar` when out of range or empty.
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        problem = _interval_problem(self.start, self.end)
        if problem:
            raise InvalidCalendar([problem])

    @classmethod
    def parse(cls, start: str, end: str) -> Interval:
        """From ``"HH:MM"`` clock strings; ``end`` may be ``"24:00"``."""
        first, last = _minute_of(start), _minute_of(end)
        problems = [f"{text!r} is not a time HH:MM" for text, m in ((start, first), (end, last)) if m is None]
        if first == _DAY_MINUTES:
            problems.append("24:00 can only end an interval")
        if problems or first is None or last is None:
            raise InvalidCalendar(problems)
        return cls(first, last)

    @property
    def length(self) -> timedelta:
        """Its length on a day without a clock change."""
        return timedelta(minutes=self.end - self.start)

    def to_dict(self) -> dict[str, str]:
        return {"start": _clock(self.start), "end": _clock(self.end)}

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True)
class Holiday:
    """A date off: closed all day, or open only ``hours`` (which replace the weekday's hours)."""

    day: date
    name: str = ""
    hours: tuple[Interval, ...] = ()


@dataclass(frozen=True)
class BusinessCalendar:
    """When a team is at work. Immutable; validated on construction (:class:`InvalidCalendar`).

    ``week[i]`` holds the intervals of weekday ``i`` (0 is Monday). Intervals are kept sorted
    and holidays sorted by date, so equal calendars compare equal whatever the input order.
    """

    zone: str
    week: tuple[tuple[Interval, ...], ...]
    holidays: tuple[Holiday, ...] = ()
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _special: Mapping[date, tuple[Interval, ...]] = field(init=False, repr=False, compare=False)
    _holiday_days: tuple[date, ...] = field(init=False, repr=False, compare=False)
    _week_total: timedelta = field(init=False, repr=False, compare=False)
    _all_day: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = _calendar_problems(self.zone, self.week, self.holidays)
        if problems:
            raise InvalidCalendar(problems)
        week = tuple(tuple(sorted(day)) for day in self.week)
        holidays = tuple(
            sorted((Holiday(h.day, h.name, tuple(sorted(h.hours))) for h in self.holidays), key=_day_of)
        )
        whole_day = (Interval(0, _DAY_MINUTES),)
        setattr_ = object.__setattr__
        setattr_(self, "week", week)
        setattr_(self, "holidays", holidays)
        setattr_(self, "_tz", ZoneInfo(self.zone))
        setattr_(self, "_special", MappingProxyType({h.day: h.hours for h in holidays}))
        setattr_(self, "_holiday_days", tuple(h.day for h in holidays))
        setattr_(self, "_week_total", sum((i.length for day in week for i in day), timedelta()))
        setattr_(self, "_all_day", not holidays and all(day == whole_day for day in week))

    @classmethod
    def always_open(cls, zone: str = "UTC") -> BusinessCalendar:
        """The 24/7 calendar: business time is elapsed time."""
        return cls(zone, tuple((Interval(0, _DAY_MINUTES),) for _ in WEEKDAYS))

    @classmethod
    def from_dict(cls, data: object) -> BusinessCalendar:
        """From the JSON shape :meth:`to_dict` gives. Weekdays left out are closed; ``holidays``
        and a holiday's ``name`` and ``hours`` are optional. Raises :class:`InvalidCalendar`
        naming every problem, with its place (``week.mon[1]``, ``holidays[0].date``)."""
        if not isinstance(data, Mapping):
            raise InvalidCalendar(["a calendar is an object with zone, week and holidays"])
        problems = [f"unknown field {key!r}" for key in data if key not in _CALENDAR_KEYS]
        zone = data.get("zone")
        if not isinstance(zone, str):
            problems.append("zone: required, an IANA time zone name such as Europe/Berlin")
        week = _parse_week(data.get("week"), problems)
        holidays = _parse_holidays(data.get("holidays", []), problems)
        problems += _calendar_problems(zone if isinstance(zone, str) else None, week, holidays)
        if problems or not isinstance(zone, str):
            raise InvalidCalendar(problems)
        return cls(zone, week, holidays)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: every weekday listed, every holiday with its name and hours."""
        return {
            "zone": self.zone,
            "week": {name: [i.to_dict() for i in day] for name, day in zip(WEEKDAYS, self.week, strict=True)},
            "holidays": [
                {"date": h.day.isoformat(), "name": h.name, "hours": [i.to_dict() for i in h.hours]}
                for h in self.holidays
            ],
        }

    def hours_on(self, day: date) -> tuple[Interval, ...]:
        """The intervals of a local date: its holiday's if it is one, else its weekday's."""
        special = self._special.get(day)
        return special if special is not None else self.week[day.weekday()]


def add_business_time(calendar: BusinessCalendar, start: datetime, duration: timedelta) -> datetime:
    """The earliest instant by which ``duration`` of business time has passed since ``start``.

    Counting begins at ``start`` when open, else at the next opening; a result that reaches
    the end of an interval is that closing instant (Friday 16:00 + 1 h on 09:00-17:00 is
    Friday 17:00). A zero duration gives ``start``. Raises ``ValueError`` for a negative
    duration and :class:`BeyondHorizon` for a result more than ``HORIZON_DAYS`` days ahead.
    """
    at = _utc(start, "start")
    if duration < timedelta(0):
        raise ValueError("a duration of business time cannot be negative")
    first_day = _local_date(calendar, at) - _ONE_DAY
    last_day = first_day + timedelta(days=HORIZON_DAYS + 1)
    if not duration:
        return at
    if calendar._all_day:
        end = at + duration
        if end > _instant(calendar._tz, last_day + _ONE_DAY, 0):
            raise BeyondHorizon(f"{duration} of business time from {at} is beyond the horizon")
        return end
    remaining = duration
    day = first_day
    while day <= last_day:
        if remaining > calendar._week_total:
            week_start = _plain_week_start(calendar, day)
            if week_start is not None and week_start >= at:
                remaining -= calendar._week_total
                day += _WEEK
                continue
        for opens, closes in _spans(calendar, day):
            if closes <= at:
                continue
            opens = max(opens, at)
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens
        day += _ONE_DAY
    raise BeyondHorizon(f"{duration} of business time from {at} is beyond the horizon")


def business_time_between(calendar: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """Business time in ``[start, end)``; negative (the same amount) when ``end`` is earlier."""
    lo, hi = _utc(start, "start"), _utc(end, "end")
    if hi < lo:
        return -business_time_between(calendar, hi, lo)
    if calendar._all_day:
        return hi - lo
    total = timedelta()
    day = _local_date(calendar, lo) - _ONE_DAY
    while _instant(calendar._tz, day, 0) < hi:
        week_start = _plain_week_start(calendar, day)
        if week_start is not None and week_start >= lo and week_start + _WEEK <= hi:
            total += calendar._week_total
            day += _WEEK
            continue
        for opens, closes in _spans(calendar, day):
            total += max(timedelta(), min(closes, hi) - max(opens, lo))
        day += _ONE_DAY
    return total


def is_open(calendar: BusinessCalendar, at: datetime) -> bool:
    """Whether ``at`` lies inside an opening interval (opening instant in, closing instant out)."""
    instant = _utc(at, "at")
    local = _local_date(calendar, instant)
    days = (local - _ONE_DAY, local, local + _ONE_DAY)
    return any(opens <= instant < closes for day in days for opens, closes in _spans(calendar, day))


def next_opening(calendar: BusinessCalendar, at: datetime) -> datetime:
    """``at`` itself when open, else the next instant the calendar opens (:class:`BeyondHorizon`
    when there is none within ``HORIZON_DAYS`` days)."""
    instant = _utc(at, "at")
    day = _local_date(calendar, instant) - _ONE_DAY
    last_day = day + timedelta(days=HORIZON_DAYS + 1)
    while day <= last_day:
        for opens, closes in _spans(calendar, day):
            if closes > instant:
                return max(opens, instant)
        day += _ONE_DAY
    raise BeyondHorizon(f"the calendar does not open within {HORIZON_DAYS} days of {instant}")


# -- wall clock to instants ------------------------------------------------------------------


def _utc(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got the naive {at.isoformat()}")
    return at.astimezone(UTC)


def _local_date(calendar: BusinessCalendar, at: datetime) -> date:
    return at.astimezone(calendar._tz).date()


def _instant(tz: ZoneInfo, day: date, minute: int) -> datetime:
    """The first instant at which the clock of ``tz`` reads ``day`` ``minute`` or later (UTC)."""
    if minute == _DAY_MINUTES:
        day, minute = day + _ONE_DAY, 0
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    earliest = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first of a repeated time
    if earliest.astimezone(tz).replace(tzinfo=None) == wall:
        return earliest
    # Skipped by a spring-forward gap: find the transition, where the clock jumps past ``wall``.
    # fold=1 maps with the offset after the gap (an instant before it), fold=0 with the offset
    # before (an instant after it); transitions fall on whole seconds.
    before = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    after = int(earliest.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _spans(calendar: BusinessCalendar, day: date) -> list[tuple[datetime, datetime]]:
    """A local date's opening intervals as non-empty UTC ``(opens, closes)`` pairs, in order."""
    tz = calendar._tz
    spans = []
    for interval in calendar.hours_on(day):
        opens, closes = _instant(tz, day, interval.start), _instant(tz, day, interval.end)
        if closes > opens:
            spans.append((opens, closes))
    return spans


def _plain_week_start(calendar: BusinessCalendar, day: date) -> datetime | None:
    """Where the seven days from ``day`` begin when they hold exactly the weekly hours: no
    holiday among them, a midnight that exists, and one UTC offset throughout. Else ``None``."""
    days = calendar._holiday_days
    index = bisect.bisect_left(days, day)
    if index < len(days) and days[index] < day + _WEEK:
        return None
    tz = calendar._tz
    start = _instant(tz, day, 0)
    if start.astimezone(tz).replace(tzinfo=None) != datetime.combine(day, time()):
        return None  # midnight skipped by a clock change: that day is short
    offset = start.astimezone(tz).utcoffset()
    probe = start + _PROBE
    while probe <= start + _WEEK:
        if probe.astimezone(tz).utcoffset() != offset:
            return None
        probe += _PROBE
    return start


# -- validation and the JSON shape -----------------------------------------------------------


@cache
def _zones() -> frozenset[str]:
    """IANA names, less the host-dependent aliases."""
    return frozenset(available_timezones()) - {"localtime", "posixrules"}


def _day_of(holiday: Holiday) -> date:
    return holiday.day


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _minute_of(text: object) -> int | None:
    if not isinstance(text, str) or not _CLOCK.fullmatch(text):
        return None
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _interval_problem(start: object, end: object) -> str | None:
    if type(start) is not int or type(end) is not int:
        return f"an interval's start and end are minutes of the day, not {start!r} and {end!r}"
    if not 0 <= start < _DAY_MINUTES or not 0 < end <= _DAY_MINUTES:
        return f"{start}-{end} is outside 00:00-24:00 (minutes 0 to 1440)"
    if end < start:
        first, last = _clock(start), _clock(end)
        return (
            f"{first}-{last} ends before it starts: overnight hours are two intervals, "
            f"{first}-24:00 on one day and 00:00-{last} on the next"
        )
    if end == start:
        return f"{_clock(start)}-{_clock(end)} starts where it ends"
    return None


def _day_problems(place: str, intervals: Sequence[Interval]) -> list[str]:
    problems = []
    if len(intervals) > MAX_INTERVALS_PER_DAY:
        problems.append(f"{place}: {len(intervals)} intervals, at most {MAX_INTERVALS_PER_DAY}")
    ordered = sorted(intervals)
    for earlier, later in pairwise(ordered):
        if later.start < earlier.end:
            problems.append(f"{place}: {earlier} overlaps {later}")
    return problems


def _calendar_problems(
    zone: str | None, week: Sequence[Sequence[Interval]], holidays: Sequence[Holiday]
) -> list[str]:
    """Every problem of a calendar's parts; ``zone=None`` skips the zone (reported elsewhere)."""
    problems = []
    if zone is not None and (not isinstance(zone, str) or zone not in _zones()):
        problems.append(f"zone: {zone!r} is not an IANA time zone name such as Europe/Berlin")
    if len(week) != len(WEEKDAYS):
        problems.append(f"week: {len(week)} days, not 7 (Monday first)")
    for name, intervals in zip(WEEKDAYS, week, strict=False):
        problems += _day_problems(f"week.{name}", intervals)
    if not any(week):
        problems.append("week: no opening hours on any day")
    if len(holidays) > MAX_HOLIDAYS:
        problems.append(f"holidays: {len(holidays)} dates, at most {MAX_HOLIDAYS}")
    seen: set[date] = set()
    for holiday in holidays:
        place = f"holidays[{holiday.day.isoformat()}]"
        if holiday.day in seen:
            problems.append(f"{place}: listed twice")
        seen.add(holiday.day)
        if len(holiday.name) > MAX_NAME_LENGTH:
            problems.append(f"{place}.name: longer than {MAX_NAME_LENGTH} characters")
        problems += _day_problems(f"{place}.hours", holiday.hours)
    return problems


def _parse_intervals(place: str, raw: object, problems: list[str]) -> tuple[Interval, ...]:
    if not isinstance(raw, list):
        problems.append(f"{place}: a list of intervals {{\"start\": \"HH:MM\", \"end\": \"HH:MM\"}}")
        return ()
    intervals = []
    for index, item in enumerate(raw):
        here = f"{place}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{here}: an interval is an object with start and end")
            continue
        problems += [f"{here}: unknown field {key!r}" for key in item if key not in _INTERVAL_KEYS]
        start, end = item.get("start"), item.get("end")
        if not isinstance(start, str) or not isinstance(end, str):
            problems.append(f"{here}: start and end are required, as HH:MM")
            continue
        try:
            intervals.append(Interval.parse(start, end))
        except InvalidCalendar as error:
            problems += [f"{here}: {problem}" for problem in error.problems]
    return tuple(intervals)


def _parse_week(raw: object, problems: list[str]) -> tuple[tuple[Interval, ...], ...]:
    if not isinstance(raw, Mapping):
        problems.append("week: required, an object from weekday (mon to sun) to a list of intervals")
        return tuple(() for _ in WEEKDAYS)
    problems += [
        f"week: unknown weekday {key!r} (use {', '.join(WEEKDAYS)})" for key in raw if key not in WEEKDAYS
    ]
    return tuple(_parse_intervals(f"week.{name}", raw.get(name, []), problems) for name in WEEKDAYS)


def _parse_holidays(raw: object, problems: list[str]) -> tuple[Holiday, ...]:
    if not isinstance(raw, list):
        problems.append("holidays: a list of {\"date\": \"YYYY-MM-DD\", \"name\": ..., \"hours\": [...]}")
        return ()
    holidays = []
    for index, item in enumerate(raw):
        here = f"holidays[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{here}: a holiday is an object with a date")
            continue
        problems += [f"{here}: unknown field {key!r}" for key in item if key not in _HOLIDAY_KEYS]
        name = item.get("name", "")
        if not isinstance(name, str):
            problems.append(f"{here}.name: a string")
            name = ""
        hours = _parse_intervals(f"{here}.hours", item.get("hours", []), problems)
        day = _parse_date(item.get("date"))
        if day is None:
            given = f"{item['date']!r} is not" if "date" in item else "required,"
            problems.append(f"{here}.date: {given} a date YYYY-MM-DD")
            continue
        holidays.append(Holiday(day, name, hours))
    return tuple(holidays)


def _parse_date(raw: object) -> date | None:
    if not isinstance(raw, str) or not _ISO_DATE.fullmatch(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None
