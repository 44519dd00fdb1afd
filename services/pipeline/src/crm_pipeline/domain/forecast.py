"""Forecast rules, pure: periods, categories, weighting in integer minor units, and the checks
on what a forecast or analytics request asks for.

Choices, in one place:

- **Periods** are calendar months or quarters. An open deal falls in the period of its
  ``expected_close_date`` (a date, no zone); a won deal in the period of the day it was won,
  ``closed_at`` read in the workspace's time zone (``PIPELINE_FORECAST_TIME_ZONE``, UTC by default).
- **Currency**: every amount is converted to the workspace's base currency by the rate valid on
  the forecast's *as-of date* (today in that time zone, or the day a snapshot was taken): one
  rate per currency for the whole report, so that two snapshots differ only by what moved in the
  pipeline and the rate in force, never by which future date a deal happened to expect. A
  currency without a rate on that date is left out of the figures and listed in ``missing_rates``
  (the report still answers; the caller sees exactly what is missing).
- **Categories**: ``commit`` = open deals marked commit + deals won in the period;
  ``best_case`` = commit + open deals marked best_case; ``pipeline`` = every open deal that is not
  ``omitted``; ``weighted`` = Σ amount x stage probability / 100 over those open deals. Lost deals
  count nowhere.
- **Rounding** (half to even, as ``domain.money``): a group's amounts are summed exactly in each
  deal currency, then converted once per currency; the weighted figure is Σ(amount x probability)
  converted and divided by 100 in one exact step. So a group of many small deals does not gain
  or lose a cent per deal, and the SQL sums only integers (fast, exact).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal
from uuid import UUID

from crm_pipeline.domain.errors import FieldError, InvalidFields
from crm_pipeline.domain.money import MissingRate, exponent

_EXACT = Context(prec=60)

MAX_PERIODS = 24
"""A forecast spans at most two years of months (or six of quarters)."""
MAX_RANGE_DAYS = 3 * 366
"""Funnel and win-rate ranges: at most three years."""


class Period(enum.StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


class Category(enum.StrEnum):
    PIPELINE = "pipeline"
    BEST_CASE = "best_case"
    COMMIT = "commit"
    OMITTED = "omitted"


class Grouping(enum.StrEnum):
    OWNER = "owner"
    TEAM = "team"


def period_start(day: date, period: Period) -> date:
    """The first day of the month or quarter ``day`` falls in."""
    if period is Period.MONTH:
        return day.replace(day=1)
    return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)


def next_period(start: date, period: Period) -> date:
    months = 1 if period is Period.MONTH else 3
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_label(start: date, period: Period) -> str:
    """``2026-03`` for a month, ``2026-Q1`` for a quarter."""
    if period is Period.MONTH:
        return f"{start.year:04d}-{start.month:02d}"
    return f"{start.year:04d}-Q{(start.month - 1) // 3 + 1}"


def periods(first: date, last: date, period: Period) -> list[date]:
    """The starts of every period from the one holding ``first`` to the one holding ``last``."""
    found, at = [], period_start(first, period)
    while at <= last:
        found.append(at)
        at = next_period(at, period)
    return found


@dataclass(frozen=True)
class ForecastRange:
    """Whole periods: ``[start, end)`` where ``start`` and ``end`` are period starts."""

    period: Period
    start: date
    end: date


def forecast_range(period: str, first: date | None, last: date | None, today: date) -> ForecastRange:
    """The periods a forecast covers: from the one holding ``first`` (default: this one) to the
    one holding ``last`` (default: three periods later), at most ``MAX_PERIODS``."""
    errors: list[FieldError] = []
    try:
        kind = Period(period)
    except ValueError:
        raise InvalidFields([FieldError("period", "must be month or quarter")]) from None
    start = period_start(first or today, kind)
    if last is None:
        end = start
        for _ in range(4 if kind is Period.QUARTER else 3):
            end = next_period(end, kind)
    else:
        end = next_period(period_start(last, kind), kind)
    if end <= start:
        errors.append(FieldError("to", "must not be before from"))
    elif len(periods(start, end, kind)) - 1 > MAX_PERIODS:
        errors.append(FieldError("to", f"at most {MAX_PERIODS} {kind.value}s"))
    if errors:
        raise InvalidFields(errors)
    return ForecastRange(kind, start, end)


def grouping(value: str | None, allowed: tuple[Grouping, ...] = (Grouping.OWNER, Grouping.TEAM)
             ) -> Grouping | None:
    if value is None:
        return None
    try:
        found = Grouping(value)
    except ValueError:
        found = None
    if found not in allowed:
        raise InvalidFields([FieldError("group_by", "must be " + " or ".join(g.value for g in allowed))])
    return found


def date_range(first: date, last: date) -> None:
    """``[first, last]`` as days, checked for funnel and win-rate reports."""
    if last < first:
        raise InvalidFields([FieldError("to", "must not be before from")])
    if (last - first).days > MAX_RANGE_DAYS:
        raise InvalidFields([FieldError("to", f"at most {MAX_RANGE_DAYS} days after from")])


def category(value: str | None) -> Category:
    try:
        return Category(value or Category.PIPELINE)
    except ValueError:
        raise InvalidFields([FieldError("forecast_category",
                                        "must be pipeline, best_case, commit or omitted")]) from None


# --- arithmetic ------------------------------------------------------------------------------

def to_base(amount_minor: int, currency: str, base: str, rate: Decimal | None, *,
            hundredths: bool = False) -> int:
    """``amount_minor`` of ``currency`` in base minor units, rounded half to even once (as
    ``money.convert``); with ``hundredths`` the amount is Σ amount x probability (percent) and is
    divided by 100 in the same exact step, so that weighting rounds once, not twice."""
    if currency == base:
        rate = Decimal(1)
    if rate is None:
        raise MissingRate(currency, date.min)
    exact = _EXACT.multiply(Decimal(amount_minor).scaleb(exponent(base) - exponent(currency), _EXACT), rate)
    if hundredths:
        exact = exact.scaleb(-2, _EXACT)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_EXACT))


@dataclass(frozen=True)
class CurrencySums:
    """What the store sums per (period, group, deal currency), in that currency's minor units,
    with the rate in force on the as-of date (None: there is none)."""

    period_start: date
    group: str | None
    currency: str
    rate: Decimal | None
    open_amount: int
    open_weighted_raw: int  # Σ amount x probability (percent), not yet divided by 100
    commit_open: int
    best_case_open: int
    won: int
    open_count: int
    won_count: int


@dataclass(frozen=True)
class ForecastLine:
    period_start: date
    group: str | None
    weighted: int
    commit: int
    best_case: int
    pipeline: int
    won: int
    open_count: int
    won_count: int


def forecast_lines(sums: list[CurrencySums], base: str) -> tuple[list[ForecastLine], list[str]]:
    """The category rules applied to the store's sums, converted into ``base``: the lines per
    (period, group), and the currencies left out for want of a rate (sorted)."""
    missing: set[str] = set()
    cells: dict[tuple[date, str | None], list[int]] = {}
    for row in sums:
        if row.currency != base and row.rate is None:
            missing.add(row.currency)
            continue
        cell = cells.setdefault((row.period_start, row.group), [0] * 7)

        def conv(amount: int, row: CurrencySums = row) -> int:
            return to_base(amount, row.currency, base, row.rate)

        cell[0] += to_base(row.open_weighted_raw, row.currency, base, row.rate, hundredths=True)
        cell[1] += conv(row.commit_open)
        cell[2] += conv(row.best_case_open)
        cell[3] += conv(row.open_amount)
        cell[4] += conv(row.won)
        cell[5] += row.open_count
        cell[6] += row.won_count
    lines = []
    for (start, group), (weighted, commit_open, best_open, pipeline, won, opened, wins) in sorted(
            cells.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        commit = commit_open + won
        lines.append(ForecastLine(start, group, weighted, commit, commit + best_open, pipeline, won,
                                  opened, wins))
    return lines, sorted(missing)


@dataclass(frozen=True)
class LineChange:
    """How one group's figures moved from snapshot ``a`` to snapshot ``b``."""

    period_start: date
    group: str | None
    before: ForecastLine | None
    after: ForecastLine | None

    def delta(self, name: str) -> int:
        return int(getattr(self.after, name, 0) if self.after else 0) - int(
            getattr(self.before, name, 0) if self.before else 0)


def compare(before: list[ForecastLine], after: list[ForecastLine]) -> list[LineChange]:
    """Every (period, group) present in either snapshot, with its figures on each side."""
    old = {(line.period_start, line.group): line for line in before}
    new = {(line.period_start, line.group): line for line in after}
    keys = sorted(old.keys() | new.keys(), key=lambda k: (k[0], k[1] or ""))
    return [LineChange(start, group, old.get((start, group)), new.get((start, group)))
            for start, group in keys]


@dataclass(frozen=True)
class SalesTeam:
    id: UUID
    name: str
    members: tuple[str, ...]


def team_fields(body: dict[str, object]) -> tuple[str, list[str]]:
    """A team's name (1-200 characters) and members (owner subjects, at most 500, no blanks)."""
    errors: list[FieldError] = []
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append(FieldError("name", "required, at most 200 characters"))
    members = body.get("members", [])
    if not isinstance(members, list) or len(members) > 500 or not all(
            isinstance(m, str) and m.strip() and len(m) <= 200 for m in members):
        errors.append(FieldError("members", "a list of at most 500 owner subjects"))
    if errors:
        raise InvalidFields(errors)
    assert isinstance(name, str)
    assert isinstance(members, list)
    return name.strip(), list(dict.fromkeys(m.strip() for m in members))
