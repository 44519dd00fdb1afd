from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_ticketing.domain import business_hours
from crm_ticketing.domain.business_hours import (
    HORIZON_DAYS,
    MAX_HOLIDAYS,
    MAX_INTERVALS_PER_DAY,
    WEEKDAYS,
    BeyondHorizon,
    BusinessCalendar,
    Holiday,
    Interval,
    InvalidCalendar,
    add_business_time,
    business_time_between,
    is_open,
    next_opening,
)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
WORKDAYS = WEEKDAYS[:5]


def calendar(
    zone: str = "UTC",
    hours: Sequence[tuple[str, str]] = (("09:00", "17:00"),),
    days: Iterable[str] = WORKDAYS,
    holidays: Sequence[dict[str, Any]] = (),
) -> BusinessCalendar:
    intervals = [{"start": start, "end": end} for start, end in hours]
    return BusinessCalendar.from_dict(
        {"zone": zone, "week": {day: intervals for day in days}, "holidays": list(holidays)}
    )


def local(zone: str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


OFFICE = calendar()
LUNCH = calendar(hours=[("09:00", "12:00"), ("13:00", "17:30")])
ALWAYS = BusinessCalendar.always_open()
CHRISTMAS = calendar(
    "Europe/Berlin",
    holidays=[
        {"date": "2026-12-24", "name": "Heiligabend", "hours": [{"start": "09:00", "end": "12:00"}]},
        {"date": "2026-12-25", "name": "1. Weihnachtstag"},
        {"date": "2026-12-26"},
    ],
)

# -- adding business time --------------------------------------------------------------------

# 2026-01-09 is a Friday. Berlin springs forward on 2026-03-29 and falls back on 2026-10-25,
# New York on 2026-03-08 and 2026-11-01 (all Sundays).
ADDITIONS = [
    ("friday afternoon rolls over the weekend", OFFICE, utc(2026, 1, 9, 16), 4 * HOUR, utc(2026, 1, 12, 12)),
    ("reaching closing time ends there", OFFICE, utc(2026, 1, 9, 16), HOUR, utc(2026, 1, 9, 17)),
    ("a start at closing time waits for the next opening", OFFICE, utc(2026, 1, 9, 17), MINUTE,
     utc(2026, 1, 12, 9, 1)),
    ("a weekend start counts from monday's opening", OFFICE, utc(2026, 1, 10, 10), HOUR,
     utc(2026, 1, 12, 10)),
    ("an early start counts from the opening", OFFICE, utc(2026, 1, 12, 7), HOUR, utc(2026, 1, 12, 10)),
    ("nothing to add is the start itself", OFFICE, utc(2026, 1, 10, 10), timedelta(0), utc(2026, 1, 10, 10)),
    ("the lunch break does not count", LUNCH, utc(2026, 1, 12, 11, 30), HOUR, utc(2026, 1, 12, 13, 30)),
    ("the second interval runs to 17:30", LUNCH, utc(2026, 1, 12, 17), HOUR, utc(2026, 1, 13, 9, 30)),
    ("sub-second durations are exact", OFFICE, utc(2026, 1, 12, 16, 59, 59),
     timedelta(seconds=1, microseconds=5), utc(2026, 1, 13, 9, 0, 0, 5)),
    ("500 hours: twelve weeks and two and a half days", OFFICE, utc(2026, 1, 5, 9), 500 * HOUR,
     utc(2026, 4, 1, 13)),
    ("24/7 is elapsed time", ALWAYS, utc(2026, 1, 9, 16), 4 * HOUR, utc(2026, 1, 9, 20)),
    ("a holiday with short hours, then a closed one", CHRISTMAS, local("Europe/Berlin", 2026, 12, 23, 16),
     4 * HOUR, local("Europe/Berlin", 2026, 12, 24, 12)),
    ("past christmas to the monday after", CHRISTMAS, local("Europe/Berlin", 2026, 12, 23, 16), 5 * HOUR,
     local("Europe/Berlin", 2026, 12, 28, 10)),
    ("Berlin spring forward: monday noon is 10:00 UTC", calendar("Europe/Berlin"),
     local("Europe/Berlin", 2026, 3, 27, 16), 4 * HOUR, utc(2026, 3, 30, 10)),
    ("Berlin fall back: monday noon is 11:00 UTC", calendar("Europe/Berlin"),
     local("Europe/Berlin", 2026, 10, 23, 16), 4 * HOUR, utc(2026, 10, 26, 11)),
    ("New York spring forward: monday noon is 16:00 UTC", calendar("America/New_York"),
     local("America/New_York", 2026, 3, 6, 16), 4 * HOUR, utc(2026, 3, 9, 16)),
    ("New York fall back: monday noon is 17:00 UTC", calendar("America/New_York"),
     local("America/New_York", 2026, 10, 30, 16), 4 * HOUR, utc(2026, 11, 2, 17)),
    ("24/7 in Berlin: a day across spring forward ends an hour later on the clock",
     BusinessCalendar.always_open("Europe/Berlin"), local("Europe/Berlin", 2026, 3, 28, 12), 24 * HOUR,
     local("Europe/Berlin", 2026, 3, 29, 13)),
    ("24/7 in New York: a day across fall back ends an hour earlier on the clock",
     BusinessCalendar.always_open("America/New_York"), local("America/New_York", 2026, 10, 31, 12), 24 * HOUR,
     local("America/New_York", 2026, 11, 1, 11)),
]

NIGHT_SHIFTS = [
    ("Europe/Berlin", (2026, 3, 28, 22), (2026, 3, 29, 5)),  # 00:00 CET + 4 h, 02:00-03:00 skipped
    ("Europe/Berlin", (2026, 10, 24, 22), (2026, 10, 25, 3)),  # 00:00 CEST + 4 h, 02:00-03:00 twice
    ("America/New_York", (2026, 3, 7, 22), (2026, 3, 8, 5)),
    ("America/New_York", (2026, 10, 31, 22), (2026, 11, 1, 3)),
]


@pytest.mark.parametrize(
    ("case", "cal", "start", "duration", "expected"), ADDITIONS, ids=[a[0] for a in ADDITIONS]
)
def test_adding_business_time(
    case: str, cal: BusinessCalendar, start: datetime, duration: timedelta, expected: datetime
) -> None:
    result = add_business_time(cal, start, duration)
    assert result == expected
    assert result.tzinfo is UTC
    assert business_time_between(cal, start, result) == duration


@pytest.mark.parametrize(("zone", "start", "expected"), NIGHT_SHIFTS)
def test_a_night_shift_across_a_clock_change_counts_real_time(
    zone: str, start: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    shift = BusinessCalendar.from_dict({"zone": zone, "week": {
        "sat": [{"start": "22:00", "end": "24:00"}], "sun": [{"start": "00:00", "end": "06:00"}],
    }})
    assert add_business_time(shift, local(zone, *start), 6 * HOUR) == local(zone, *expected)


def test_the_general_walk_agrees_with_the_24_7_shortcut() -> None:
    everyday = [{"start": "00:00", "end": "24:00"}]
    for zone in ("UTC", "Europe/Berlin", "America/New_York"):
        shortcut = BusinessCalendar.always_open(zone)
        walked = BusinessCalendar.from_dict({"zone": zone, "week": dict.fromkeys(WEEKDAYS, everyday),
                                             "holidays": [{"date": "2040-01-01", "hours": everyday}]})
        for start in (utc(2026, 3, 6, 12), utc(2026, 10, 23, 12)):
            for duration in (HOUR, 50 * HOUR, 700 * HOUR):
                end = add_business_time(shortcut, start, duration)
                assert end == start + duration
                assert add_business_time(walked, start, duration) == end
                assert business_time_between(walked, start, end) == duration


def test_long_horizons_skip_whole_weeks(monkeypatch: pytest.MonkeyPatch) -> None:
    days_walked: list[date] = []
    spans = business_hours._spans

    def counting(cal: BusinessCalendar, day: date) -> list[tuple[datetime, datetime]]:
        days_walked.append(day)
        return spans(cal, day)

    monkeypatch.setattr(business_hours, "_spans", counting)
    berlin = calendar("Europe/Berlin")
    end = add_business_time(berlin, local("Europe/Berlin", 2026, 1, 5, 9), 2000 * HOUR)
    assert end == local("Europe/Berlin", 2026, 12, 18, 17)  # 50 weeks of 40 h, DST changes included
    assert len(days_walked) < 40
    days_walked.clear()
    assert business_time_between(berlin, local("Europe/Berlin", 2026, 1, 5, 9), end) == 2000 * HOUR
    assert len(days_walked) < 40


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_business_time(OFFICE, utc(2026, 1, 5), -MINUTE)


def test_a_calendar_that_never_opens_within_the_horizon_raises() -> None:
    mondays = [{"date": (date(2026, 1, 5) + timedelta(weeks=n)).isoformat()} for n in range(170)]
    closed = calendar(days=["mon"], holidays=mondays)
    with pytest.raises(BeyondHorizon):
        next_opening(closed, utc(2026, 1, 1))
    with pytest.raises(BeyondHorizon):
        add_business_time(closed, utc(2026, 1, 1), MINUTE)
    first_open_monday = date(2026, 1, 5) + timedelta(weeks=170)
    assert next_opening(closed, utc(2026, 1, 1) + timedelta(weeks=169)) == utc(
        first_open_monday.year, first_open_monday.month, first_open_monday.day, 9)


def test_a_deadline_beyond_the_horizon_raises() -> None:
    with pytest.raises(BeyondHorizon):
        add_business_time(ALWAYS, utc(2026, 1, 1), timedelta(days=HORIZON_DAYS + 2))
    with pytest.raises(BeyondHorizon):
        add_business_time(OFFICE, utc(2026, 1, 1), 8 * HOUR * 5 * 160)
    assert add_business_time(ALWAYS, utc(2026, 1, 1), timedelta(days=HORIZON_DAYS - 1)) > utc(2028, 12, 1)


@pytest.mark.parametrize("call", [
    lambda: add_business_time(OFFICE, datetime(2026, 1, 5, 9), HOUR),
    lambda: business_time_between(OFFICE, datetime(2026, 1, 5, 9), utc(2026, 1, 6)),
    lambda: business_time_between(OFFICE, utc(2026, 1, 5, 9), datetime(2026, 1, 6)),
    lambda: is_open(OFFICE, datetime(2026, 1, 5, 9)),
    lambda: next_opening(OFFICE, datetime(2026, 1, 5, 9)),
])
def test_naive_datetimes_are_refused(call: Any) -> None:
    with pytest.raises(ValueError, match="aware"):
        call()


# -- business time between two instants ------------------------------------------------------


@pytest.mark.parametrize(("cal", "start", "end", "expected"), [
    (OFFICE, utc(2026, 1, 9, 16), utc(2026, 1, 12, 12), 4 * HOUR),
    (OFFICE, utc(2026, 1, 10), utc(2026, 1, 11, 23), timedelta(0)),
    (OFFICE, utc(2026, 1, 12, 12), utc(2026, 1, 12, 12), timedelta(0)),
    (OFFICE, utc(2026, 1, 12, 12), utc(2026, 1, 9, 16), -4 * HOUR),
    (OFFICE, utc(2026, 1, 5), utc(2026, 1, 12), 40 * HOUR),
    (LUNCH, utc(2026, 1, 12, 11), utc(2026, 1, 12, 14), 2 * HOUR),
    (ALWAYS, utc(2026, 1, 9, 16), utc(2026, 1, 12, 12), 68 * HOUR),
    (CHRISTMAS, local("Europe/Berlin", 2026, 12, 21), local("Europe/Berlin", 2026, 12, 28), 27 * HOUR),
    # Santiago's clock jumps from midnight to 01:00 on 2026-09-06 (04:00 UTC): that sunday has
    # 23 hours and the week from it is not an ordinary one.
    (calendar("America/Santiago", hours=[("00:00", "24:00")], days=["sun", "mon", "tue", "wed"]),
     utc(2026, 9, 6, 4), utc(2026, 9, 13, 4), 96 * HOUR),
])
def test_business_time_between(
    cal: BusinessCalendar, start: datetime, end: datetime, expected: timedelta
) -> None:
    assert business_time_between(cal, start, end) == expected


# One interval on a DST Sunday: its business time is the real time the clock spends in it.
DST_DAYS = [
    ("Europe/Berlin", date(2026, 3, 29), "09:00", "17:00", 8 * HOUR),
    ("Europe/Berlin", date(2026, 3, 29), "00:00", "06:00", 5 * HOUR),
    ("Europe/Berlin", date(2026, 3, 29), "00:00", "24:00", 23 * HOUR),
    ("Europe/Berlin", date(2026, 3, 29), "02:30", "04:00", HOUR),  # opens as the clock jumps to 03:00
    ("Europe/Berlin", date(2026, 3, 29), "01:00", "02:30", HOUR),  # closes as the clock jumps
    ("Europe/Berlin", date(2026, 3, 29), "02:00", "03:00", timedelta(0)),  # never on the clock
    ("Europe/Berlin", date(2026, 10, 25), "09:00", "17:00", 8 * HOUR),
    ("Europe/Berlin", date(2026, 10, 25), "00:00", "06:00", 7 * HOUR),
    ("Europe/Berlin", date(2026, 10, 25), "00:00", "24:00", 25 * HOUR),
    ("Europe/Berlin", date(2026, 10, 25), "02:00", "03:00", 2 * HOUR),  # both 02:00-03:00s
    ("Europe/Berlin", date(2026, 10, 25), "02:30", "05:00", 3.5 * HOUR),  # from the first 02:30
    ("Europe/Berlin", date(2026, 10, 25), "01:00", "02:30", 1.5 * HOUR),  # to the first 02:30
    ("America/New_York", date(2026, 3, 8), "09:00", "17:00", 8 * HOUR),
    ("America/New_York", date(2026, 3, 8), "00:00", "06:00", 5 * HOUR),
    ("America/New_York", date(2026, 3, 8), "00:00", "24:00", 23 * HOUR),
    ("America/New_York", date(2026, 3, 8), "02:00", "03:00", timedelta(0)),
    ("America/New_York", date(2026, 11, 1), "09:00", "17:00", 8 * HOUR),
    ("America/New_York", date(2026, 11, 1), "00:00", "06:00", 7 * HOUR),
    ("America/New_York", date(2026, 11, 1), "00:00", "24:00", 25 * HOUR),
    ("America/New_York", date(2026, 11, 1), "01:00", "02:00", 2 * HOUR),
    ("Australia/Lord_Howe", date(2026, 10, 4), "00:00", "06:00", 5.5 * HOUR),  # a half-hour shift
    ("America/Santiago", date(2026, 9, 6), "00:00", "06:00", 5 * HOUR),  # midnight jumps to 01:00
    ("America/Santiago", date(2026, 4, 4), "22:00", "24:00", 3 * HOUR),  # midnight falls back to 23:00
]


@pytest.mark.parametrize(("zone", "day", "start", "end", "expected"), DST_DAYS)
def test_a_day_with_a_clock_change_counts_real_time(
    zone: str, day: date, start: str, end: str, expected: timedelta
) -> None:
    cal = calendar(zone, hours=[(start, end)], days=[WEEKDAYS[day.weekday()]])
    noon_before = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZoneInfo(zone)) + 12 * HOUR
    assert business_time_between(cal, noon_before, noon_before + 48 * HOUR) == expected


# -- open or not -----------------------------------------------------------------------------


@pytest.mark.parametrize(("cal", "at", "expected"), [
    (OFFICE, utc(2026, 1, 12, 9), True),  # the opening instant is open
    (OFFICE, utc(2026, 1, 12, 16, 59, 59), True),
    (OFFICE, utc(2026, 1, 12, 17), False),  # the closing instant is not
    (OFFICE, utc(2026, 1, 10, 12), False),
    (LUNCH, utc(2026, 1, 12, 12, 30), False),
    (CHRISTMAS, local("Europe/Berlin", 2026, 12, 24, 11), True),
    (CHRISTMAS, local("Europe/Berlin", 2026, 12, 24, 13), False),
    (CHRISTMAS, local("Europe/Berlin", 2026, 12, 25, 10), False),
    (calendar("Europe/Berlin"), utc(2026, 3, 30, 7, 30), True),  # 09:30 CEST
    (calendar("Europe/Berlin"), utc(2026, 3, 27, 7, 30), False),  # 08:30 CET
    (ALWAYS, utc(2026, 1, 10, 3), True),
])
def test_is_open(cal: BusinessCalendar, at: datetime, expected: bool) -> None:
    assert is_open(cal, at) is expected


def test_an_interval_ending_in_the_repeated_hour_closes_at_its_first_occurrence() -> None:
    early = calendar("Europe/Berlin", hours=[("01:00", "02:30")], days=["sun"])
    assert is_open(early, utc(2026, 10, 25, 0, 15))  # 02:15 CEST
    assert not is_open(early, utc(2026, 10, 25, 1, 15))  # 02:15 CET, the second time round
    late = calendar("Europe/Berlin", hours=[("02:30", "05:00")], days=["sun"])
    assert is_open(late, utc(2026, 10, 25, 0, 45))  # 02:45 CEST
    assert is_open(late, utc(2026, 10, 25, 1, 15))  # 02:15 CET: open since the first 02:30


@pytest.mark.parametrize(("cal", "at", "expected"), [
    (OFFICE, utc(2026, 1, 12, 10), utc(2026, 1, 12, 10)),  # open: now
    (OFFICE, utc(2026, 1, 12, 9), utc(2026, 1, 12, 9)),
    (OFFICE, utc(2026, 1, 12, 17), utc(2026, 1, 13, 9)),
    (OFFICE, utc(2026, 1, 9, 18), utc(2026, 1, 12, 9)),
    (LUNCH, utc(2026, 1, 12, 12), utc(2026, 1, 12, 13)),
    (CHRISTMAS, local("Europe/Berlin", 2026, 12, 24, 12), local("Europe/Berlin", 2026, 12, 28, 9)),
    (calendar("Europe/Berlin", hours=[("02:30", "04:00")], days=["sun"]), utc(2026, 3, 28),
     utc(2026, 3, 29, 1)),  # 02:30 does not exist that night: open at the jump to 03:00 CEST
])
def test_next_opening(cal: BusinessCalendar, at: datetime, expected: datetime) -> None:
    assert next_opening(cal, at) == expected


# -- the calendar and its JSON shape ---------------------------------------------------------


def test_a_calendar_round_trips_through_its_json_shape() -> None:
    shape = CHRISTMAS.to_dict()
    assert shape["zone"] == "Europe/Berlin"
    assert shape["week"]["mon"] == [{"start": "09:00", "end": "17:00"}]
    assert shape["week"]["sun"] == []
    assert shape["holidays"][0] == {
        "date": "2026-12-24", "name": "Heiligabend", "hours": [{"start": "09:00", "end": "12:00"}],
    }
    assert shape["holidays"][2] == {"date": "2026-12-26", "name": "", "hours": []}
    assert BusinessCalendar.from_dict(shape) == CHRISTMAS
    assert BusinessCalendar.from_dict(ALWAYS.to_dict()) == ALWAYS


def test_input_order_does_not_matter() -> None:
    shuffled = BusinessCalendar.from_dict({
        "zone": "UTC",
        "week": {"mon": [{"start": "13:00", "end": "17:30"}, {"start": "09:00", "end": "12:00"}]},
        "holidays": [{"date": "2026-12-25"}, {"date": "2026-01-01"}],
    })
    assert shuffled.week[0] == (Interval(540, 720), Interval(780, 1050))
    assert [h.day for h in shuffled.holidays] == [date(2026, 1, 1), date(2026, 12, 25)]
    assert shuffled.hours_on(date(2026, 12, 25)) == ()
    assert shuffled.hours_on(date(2026, 12, 28)) == shuffled.week[0]


def test_a_calendar_can_be_built_in_python_too() -> None:
    built = BusinessCalendar(
        "UTC",
        tuple((Interval.parse("09:00", "17:00"),) if day in WORKDAYS else () for day in WEEKDAYS),
        (Holiday(date(2026, 12, 24), "Eve", (Interval.parse("09:00", "12:00"),)),),
    )
    assert built == calendar(holidays=[{"date": "2026-12-24", "name": "Eve",
                                         "hours": [{"start": "09:00", "end": "12:00"}]}])
    assert str(Interval.parse("22:00", "24:00")) == "22:00-24:00"
    assert Interval.parse("00:00", "24:00").length == 24 * HOUR


def week_of(*intervals: tuple[str, str], day: str = "mon") -> dict[str, Any]:
    return {"zone": "UTC", "week": {day: [{"start": s, "end": e} for s, e in intervals]}}


OPEN_MONDAYS = week_of(("09:00", "17:00"))
INVALID = [
    ("zone unknown", {"zone": "Mars/Olympus", "week": {"mon": []}}, "zone: 'Mars/Olympus' is not an IANA"),
    ("zone host-dependent", {**OPEN_MONDAYS, "zone": "localtime"}, "zone: 'localtime'"),
    ("zone missing", {"week": week_of(("09:00", "17:00"))["week"]}, "zone: required"),
    ("zone not a string", {**OPEN_MONDAYS, "zone": 1}, "zone: required"),
    ("overnight", week_of(("22:00", "06:00")), "22:00-24:00 on one day and 00:00-06:00 on the next"),
    ("empty interval", week_of(("09:00", "09:00")), "week.mon[0]: 09:00-09:00 starts where it ends"),
    ("overlap", week_of(("09:00", "12:00"), ("11:30", "13:00")),
     "week.mon: 09:00-12:00 overlaps 11:30-13:00"),
    ("duplicate", week_of(("09:00", "12:00"), ("09:00", "12:00")), "overlaps"),
    ("bad clock", week_of(("9:00", "17:00")), "week.mon[0]: '9:00' is not a time HH:MM"),
    ("hour 24 is only an end", week_of(("24:00", "24:00")), "24:00 can only end an interval"),
    ("minutes past 24:00", week_of(("09:00", "24:30")), "'24:30' is not a time"),
    ("non-ascii digits", week_of(("\u0660\u0669:00", "17:00")), "is not a time HH:MM"),
    ("unknown weekday", {"zone": "UTC", "week": {"mon": [{"start": "09:00", "end": "17:00"}], "monday": []}},
     "week: unknown weekday 'monday'"),
    ("closed all week", {"zone": "UTC", "week": {}}, "week: no opening hours on any day"),
    ("too many intervals",
     week_of(*[(f"{h:02d}:00", f"{h:02d}:30") for h in range(MAX_INTERVALS_PER_DAY + 1)]),
     f"week.mon: {MAX_INTERVALS_PER_DAY + 1} intervals, at most {MAX_INTERVALS_PER_DAY}"),
    ("too many holidays", {**OPEN_MONDAYS, "holidays": [
        {"date": (date(2026, 1, 1) + timedelta(days=n)).isoformat()} for n in range(MAX_HOLIDAYS + 1)]},
     f"at most {MAX_HOLIDAYS}"),
    ("holiday twice", {**OPEN_MONDAYS, "holidays": [{"date": "2026-12-25"}, {"date": "2026-12-25"}]},
     "holidays[2026-12-25]: listed twice"),
    ("holiday not a date", {**OPEN_MONDAYS, "holidays": [{"date": "2026-02-30"}]},
     "holidays[0].date: '2026-02-30' is not a date"),
    ("holiday as a week date", {**OPEN_MONDAYS, "holidays": [{"date": "2026-W52-5"}]},
     "is not a date"),
    ("holiday without date", {**OPEN_MONDAYS, "holidays": [{"name": "?"}]},
     "holidays[0].date: required"),
    ("holiday hours overlap", {**OPEN_MONDAYS, "holidays": [{"date": "2026-12-24", "hours": [
        {"start": "09:00", "end": "12:00"}, {"start": "10:00", "end": "11:00"}]}]},
     "holidays[2026-12-24].hours: 09:00-12:00 overlaps 10:00-11:00"),
    ("holiday name too long", {**OPEN_MONDAYS, "holidays": [{"date": "2026-12-24", "name": "x" * 101}]},
     "holidays[2026-12-24].name: longer than 100"),
    ("holiday name not text", {**OPEN_MONDAYS, "holidays": [{"date": "2026-12-24", "name": 5}]},
     "holidays[0].name: a string"),
    ("holidays not a list", {**OPEN_MONDAYS, "holidays": {"date": "2026-12-24"}},
     "holidays: a list"),
    ("week not an object", {"zone": "UTC", "week": [[{"start": "09:00", "end": "17:00"}]]}, "week: required"),
    ("day not a list", {"zone": "UTC", "week": {"mon": {"start": "09:00", "end": "17:00"}}},
     "week.mon: a list"),
    ("interval not an object", {"zone": "UTC", "week": {"mon": ["09:00-17:00"]}},
     "week.mon[0]: an interval is"),
    ("interval without end", {"zone": "UTC", "week": {"mon": [{"start": "09:00"}]}},
     "start and end are required"),
    ("interval with extra field",
     {"zone": "UTC", "week": {"mon": [{"start": "09:00", "end": "17:00", "tz": 1}]}},
     "week.mon[0]: unknown field 'tz'"),
    ("unknown field", {**OPEN_MONDAYS, "timezone": "UTC"}, "unknown field 'timezone'"),
    ("not an object", ["UTC"], "a calendar is an object"),
]


@pytest.mark.parametrize(("case", "data", "problem"), INVALID, ids=[i[0] for i in INVALID])
def test_an_invalid_calendar_names_its_problem(case: str, data: object, problem: str) -> None:
    with pytest.raises(InvalidCalendar) as raised:
        BusinessCalendar.from_dict(data)
    assert any(problem in found for found in raised.value.problems), raised.value.problems
    assert isinstance(raised.value, ValueError)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidCalendar) as raised:
        BusinessCalendar.from_dict({
            "zone": "Nowhere/Town",
            "week": {"mon": [{"start": "17:00", "end": "09:00"}, {"start": "08:00", "end": "10:00"},
                             {"start": "09:30", "end": "11:00"}], "sunday": []},
            "holidays": [{"date": "christmas"}],
        })
    assert len(raised.value.problems) == 5
    assert "Nowhere/Town" in str(raised.value)
    assert "17:00-09:00" in str(raised.value)
    assert "08:00-10:00 overlaps 09:30-11:00" in str(raised.value)


def test_a_calendar_built_in_python_is_validated_as_well() -> None:
    with pytest.raises(InvalidCalendar, match="7"):
        BusinessCalendar("UTC", ((Interval(540, 1020),),))
    with pytest.raises(InvalidCalendar, match="overnight"):
        Interval(1320, 360)
    with pytest.raises(InvalidCalendar, match="outside"):
        Interval(0, 1441)


# -- properties ------------------------------------------------------------------------------

# Each zone's clock changes in 2026 (UTC), to start near them.
TRANSITIONS = {
    "UTC": [],
    "Asia/Kolkata": [],
    "Europe/Berlin": [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)],
    "America/New_York": [utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)],
    "Australia/Lord_Howe": [utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)],  # half-hour shifts
    "America/Santiago": [utc(2026, 4, 5, 3), utc(2026, 9, 6, 4)],  # at midnight
}


@st.composite
def intervals(draw: st.DrawFn) -> list[dict[str, str]]:
    shape = draw(st.sampled_from(["cuts", "cuts", "all day", "all day", "closed"]))
    if shape != "cuts":
        return [{"start": "00:00", "end": "24:00"}] if shape == "all day" else []
    cuts = sorted(draw(st.lists(st.integers(0, 96), max_size=6, unique=True)))
    clock = [f"{c * 15 // 60:02d}:{c * 15 % 60:02d}" for c in cuts]
    return [{"start": clock[i], "end": clock[i + 1]} for i in range(0, len(clock) - 1, 2)]


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    week = {day: draw(intervals()) for day in WEEKDAYS}
    if not any(week.values()):
        week["wed"] = [{"start": "10:00", "end": "11:00"}]
    days = draw(st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=4, unique=True))
    holidays = [{"date": d.isoformat(), "hours": draw(intervals())} for d in days]
    zone = draw(st.sampled_from(sorted(TRANSITIONS)))
    return BusinessCalendar.from_dict({"zone": zone, "week": week, "holidays": holidays})


@st.composite
def starts(draw: st.DrawFn) -> tuple[BusinessCalendar, datetime]:
    """A calendar and an instant, mostly in the days around one of its clock changes."""
    cal = draw(calendars())
    if TRANSITIONS[cal.zone] and draw(st.integers(0, 3)):
        change = draw(st.sampled_from(TRANSITIONS[cal.zone]))
        return cal, change + timedelta(seconds=draw(st.integers(-9 * 86400, 2 * 86400)))
    return cal, utc(2026, 1, 1) + timedelta(seconds=draw(st.integers(0, 2 * 365 * 86400)))


shares = st.integers(0, 10**6)
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MICRO = timedelta(microseconds=1)


def share(cal: BusinessCalendar, part: int) -> timedelta:
    """``part`` millionths of twenty ordinary weeks of ``cal``'s business time."""
    weekly = business_time_between(cal, utc(2025, 6, 2), utc(2025, 6, 9)) // MICRO
    return MICRO * (weekly * 20 * part // 10**6)


@PROPERTY
@given(starts(), shares)
def test_adding_then_measuring_gives_the_duration_back(
    case: tuple[BusinessCalendar, datetime], part: int
) -> None:
    cal, start = case
    duration = share(cal, part)
    end = add_business_time(cal, start, duration)
    assert end >= start
    assert business_time_between(cal, start, end) == duration
    if duration:
        assert is_open(cal, end - MICRO)  # the last instant counted was open


@PROPERTY
@given(starts(), shares, shares)
def test_adding_is_monotonic_and_additive(case: tuple[BusinessCalendar, datetime], a: int, b: int) -> None:
    cal, start = case
    shorter, longer = sorted((share(cal, a), share(cal, b)))
    assert add_business_time(cal, start, shorter) <= add_business_time(cal, start, longer)
    halfway = add_business_time(cal, start, shorter)
    assert add_business_time(cal, halfway, longer - shorter) == add_business_time(cal, start, longer)
    later = start + timedelta(hours=a % 100)
    assert add_business_time(cal, start, longer) <= add_business_time(cal, later, longer)


@PROPERTY
@given(starts(), st.integers(0, 60), st.integers(0, 86399))
def test_skipping_weeks_agrees_with_walking_day_by_day(
    case: tuple[BusinessCalendar, datetime], days: int, seconds: int
) -> None:
    cal, start = case
    end = start + timedelta(days=days, seconds=seconds)
    cuts = [start + timedelta(days=n) for n in range(days + 1)] + [end]
    total = sum((business_time_between(cal, a, b) for a, b in pairwise(cuts)), timedelta(0))
    assert business_time_between(cal, start, end) == total
    assert business_time_between(cal, end, start) == -total


@PROPERTY
@given(starts())
def test_the_next_opening_is_open_and_nothing_is_counted_before_it(
    case: tuple[BusinessCalendar, datetime]
) -> None:
    cal, at = case
    opening = next_opening(cal, at)
    assert opening >= at
    assert is_open(cal, opening)
    assert business_time_between(cal, at, opening) == timedelta(0)
    assert (opening == at) is is_open(cal, at)


@PROPERTY
@given(calendars())
def test_any_calendar_round_trips_through_its_json_shape(cal: BusinessCalendar) -> None:
    assert BusinessCalendar.from_dict(cal.to_dict()) == cal


def first_minute_reading(zone: ZoneInfo, minutes: list[datetime], wall: datetime) -> datetime:
    """Brute force: the first whole minute at which the clock reads ``wall`` or later."""
    return next(t for t in minutes if t.astimezone(zone).replace(tzinfo=None) >= wall)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([(z, c) for z, changes in TRANSITIONS.items() for c in changes]),
       st.integers(0, 95), st.integers(1, 96))
def test_clock_change_days_match_a_minute_by_minute_reading_of_the_clock(
    change: tuple[str, datetime], start: int, length: int
) -> None:
    zone_name, instant = change
    zone = ZoneInfo(zone_name)
    day = instant.astimezone(zone).date()
    first, last = start * 15, min(start * 15 + length * 15, 1440)
    hours = (f"{first // 60:02d}:{first % 60:02d}", f"{last // 60:02d}:{last % 60:02d}")
    cal = calendar(zone_name, hours=[hours], days=[WEEKDAYS[day.weekday()]])
    midnight = datetime.combine(day, datetime.min.time())
    minutes = [instant + timedelta(minutes=m) for m in range(-36 * 60, 36 * 60)]
    opens = first_minute_reading(zone, minutes, midnight + timedelta(minutes=first))
    closes = first_minute_reading(zone, minutes, midnight + timedelta(minutes=last))
    assert business_time_between(cal, instant - 36 * HOUR, instant + 36 * HOUR) == closes - opens
    if closes > opens:
        assert next_opening(cal, instant - 36 * HOUR) == opens
