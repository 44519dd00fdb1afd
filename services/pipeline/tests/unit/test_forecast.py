"""Forecast rules: periods across year ends, ranges, category rules, and integer arithmetic
(weighting, currencies with 0, 2 and 3 decimals, missing rates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from crm_pipeline.domain.errors import InvalidFields
from crm_pipeline.domain.forecast import (
    Category,
    CurrencySums,
    ForecastLine,
    Period,
    compare,
    forecast_lines,
    forecast_range,
    grouping,
    period_label,
    period_start,
    periods,
    team_fields,
    to_base,
)
from crm_pipeline.service.snapshots import slot_of

Q, M = Period.QUARTER, Period.MONTH


@dataclass(frozen=True)
class DealFigures:
    """One deal as the forecast sees it."""

    owner: str
    status: str  # open | won | lost
    category: Category
    amount_minor: int
    currency: str
    probability: int
    day: date  # expected close (open) or day won (won)


def sums_of(deals: list[DealFigures], period: Period, group: str | None = None,
            rates: dict[str, Decimal] | None = None) -> list[CurrencySums]:
    """``deals`` summed row by row as the store's GROUP BY sums them (by owner, or all in
    ``group``)."""
    cells: dict[tuple[date, str | None, str], list[int]] = {}
    for deal in deals:
        if deal.status == "lost" or (deal.status == "open" and deal.category is Category.OMITTED):
            continue
        key = (period_start(deal.day, period), group or deal.owner, deal.currency)
        cell = cells.setdefault(key, [0] * 7)
        if deal.status == "won":
            cell[4] += deal.amount_minor
            cell[6] += 1
            continue
        cell[0] += deal.amount_minor
        cell[1] += deal.amount_minor * deal.probability
        cell[2] += deal.amount_minor if deal.category is Category.COMMIT else 0
        cell[3] += deal.amount_minor if deal.category is Category.BEST_CASE else 0
        cell[5] += 1
    return [CurrencySums(start, owner, currency, (rates or {}).get(currency), *cell)
            for (start, owner, currency), cell in cells.items()]


def deal(owner: str, status: str, amount: int, probability: int = 0, day: date = date(2026, 2, 10), *,
         category: Category = Category.PIPELINE, currency: str = "EUR") -> DealFigures:
    return DealFigures(owner, status, category, amount, currency, probability, day)


def sums(currency: str, rate: Decimal | None, *, open_amount: int = 0, raw: int = 0, commit: int = 0,
         best: int = 0, won: int = 0, group: str | None = "ann") -> CurrencySums:
    return CurrencySums(date(2026, 1, 1), group, currency, rate, open_amount, raw, commit, best, won, 1, 0)


class TestPeriods:
    @pytest.mark.parametrize(("day", "period", "start", "label"), [
        (date(2025, 12, 31), Q, date(2025, 10, 1), "2025-Q4"),
        (date(2026, 1, 1), Q, date(2026, 1, 1), "2026-Q1"),
        (date(2026, 3, 31), Q, date(2026, 1, 1), "2026-Q1"),
        (date(2026, 4, 1), Q, date(2026, 4, 1), "2026-Q2"),
        (date(2025, 12, 31), M, date(2025, 12, 1), "2025-12"),
        (date(2026, 1, 1), M, date(2026, 1, 1), "2026-01"),
    ])
    def test_a_day_falls_in_its_month_or_quarter(self, day: date, period: Period, start: date,
                                                  label: str) -> None:
        assert period_start(day, period) == start
        assert period_label(start, period) == label

    def test_periods_run_across_the_year_end(self) -> None:
        assert periods(date(2025, 11, 15), date(2026, 2, 1), Q) == [date(2025, 10, 1), date(2026, 1, 1)]
        assert periods(date(2025, 11, 15), date(2026, 2, 1), M) == [
            date(2025, 11, 1), date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]

    def test_a_range_covers_whole_periods_from_and_to_inclusive(self) -> None:
        span = forecast_range("quarter", date(2025, 11, 15), date(2026, 2, 1), date(2026, 6, 1))
        assert (span.start, span.end) == (date(2025, 10, 1), date(2026, 4, 1))

    def test_by_default_a_range_is_this_quarter_and_three_more(self) -> None:
        span = forecast_range("quarter", None, None, date(2025, 12, 31))
        assert (span.start, span.end) == (date(2025, 10, 1), date(2026, 10, 1))

    @pytest.mark.parametrize(("period", "first", "last", "field"), [
        ("week", None, None, "period"),
        ("month", date(2026, 3, 1), date(2026, 1, 31), "to"),
        ("month", date(2026, 1, 1), date(2028, 1, 1), "to"),  # 25 months
    ])
    def test_bad_ranges_name_the_field(self, period: str, first: date | None, last: date | None,
                                       field: str) -> None:
        with pytest.raises(InvalidFields) as raised:
            forecast_range(period, first, last, date(2026, 1, 1))
        assert [e.field for e in raised.value.errors] == [field]

    def test_groupings_are_owner_or_team(self) -> None:
        assert grouping(None) is None
        assert grouping("team") is not None
        with pytest.raises(InvalidFields):
            grouping("stage")

    def test_weekly_slots_start_on_monday(self) -> None:
        assert slot_of(date(2026, 1, 1), "week") == date(2025, 12, 29)  # a Thursday
        assert slot_of(date(2026, 1, 1), "day") == date(2026, 1, 1)


class TestArithmetic:
    def test_weighting_divides_the_sum_once_half_to_even(self) -> None:
        # three deals of 0.01 EUR at 50 %: 1.5 cents, not 3 x round(0.5) = 0 or 3
        lines, _ = forecast_lines([sums("EUR", None, open_amount=3, raw=3 * 50)], "EUR")
        assert lines[0].weighted == 2
        lines, _ = forecast_lines([sums("EUR", None, open_amount=1, raw=50)], "EUR")
        assert lines[0].weighted == 0  # 0.5 -> 0 (even)

    @pytest.mark.parametrize(("amount", "currency", "base", "rate", "expected"), [
        (1000, "JPY", "EUR", Decimal("0.0061"), 610),     # 1000 JPY (0 decimals) -> 6.10 EUR
        (1234, "BHD", "EUR", Decimal("2.45"), 302),       # 1.234 BHD (3 decimals) -> 3.0233 -> 3.02 EUR
        (1000, "EUR", "JPY", Decimal("163.5"), 1635),     # 10.00 EUR -> 1635 JPY
        (1000, "EUR", "BHD", Decimal("0.408"), 4080),     # 10.00 EUR -> 4.080 BHD
        (125, "USD", "EUR", Decimal("0.5"), 62),          # 0.625 -> 0.62 (half to even)
        (999, "EUR", "EUR", None, 999),                   # the base needs no rate
    ])
    def test_conversion_keeps_each_currencys_minor_units(self, amount: int, currency: str, base: str,
                                                         rate: Decimal | None, expected: int) -> None:
        assert to_base(amount, currency, base, rate) == expected

    def test_weighted_converts_and_divides_in_one_step(self) -> None:
        # 333 JPY at 50 % = 166.5 JPY; x 0.0061 = 1.01565 EUR -> 102 cents (one rounding)
        assert to_base(333 * 50, "JPY", "EUR", Decimal("0.0061"), hundredths=True) == 102

    def test_a_currency_without_a_rate_is_left_out_and_listed(self) -> None:
        lines, missing = forecast_lines([sums("EUR", None, open_amount=500, raw=500 * 10),
                                         sums("USD", None, open_amount=700, raw=700 * 10),
                                         sums("GBP", None, open_amount=1, raw=1)], "EUR")
        assert missing == ["GBP", "USD"]
        assert (lines[0].pipeline, lines[0].weighted) == (500, 50)

    def test_currencies_of_a_group_add_up_in_the_base(self) -> None:
        lines, missing = forecast_lines([sums("EUR", None, open_amount=1000, raw=100_000),
                                         sums("USD", Decimal("0.9"), open_amount=1000, raw=50_000)], "EUR")
        assert missing == []
        assert (lines[0].pipeline, lines[0].weighted) == (1900, 1450)


class TestCategories:
    def test_commit_best_case_pipeline_and_weighted(self) -> None:
        deals = [
            deal("ann", "open", 10_000, 60, category=Category.COMMIT),
            deal("ann", "open", 20_000, 30, category=Category.BEST_CASE),
            deal("ann", "open", 40_000, 10),
            deal("ann", "open", 80_000, 90, category=Category.OMITTED),  # counts nowhere
            deal("ann", "won", 5_000, day=date(2026, 3, 31)),
            deal("ann", "lost", 7_000),  # counts nowhere
            deal("bob", "open", 1_000, 50, day=date(2026, 4, 1)),  # next quarter
        ]
        lines, _ = forecast_lines(sums_of(deals, Q), "EUR")
        assert lines == [
            ForecastLine(date(2026, 1, 1), "ann", weighted=6_000 + 6_000 + 4_000, commit=15_000,
                         best_case=35_000, pipeline=70_000, won=5_000, open_count=3, won_count=1),
            ForecastLine(date(2026, 4, 1), "bob", weighted=500, commit=0, best_case=0, pipeline=1_000,
                         won=0, open_count=1, won_count=0),
        ]

    def test_compare_pairs_every_group_of_either_side(self) -> None:
        before, _ = forecast_lines(sums_of([deal("ann", "open", 1000, 50), deal("bob", "open", 300, 10)], Q),
                                   "EUR")
        after, _ = forecast_lines(sums_of([deal("ann", "open", 1000, 80), deal("cy", "won", 200)], Q), "EUR")
        changes = compare(before, after)
        assert [(c.group, c.delta("weighted"), c.delta("commit")) for c in changes] == [
            ("ann", 300, 0), ("bob", -30, 0), ("cy", 0, 200)]
        assert changes[1].after is None
        assert changes[2].before is None


class TestTeams:
    def test_members_are_trimmed_and_deduplicated(self) -> None:
        assert team_fields({"name": " East ", "members": ["a", " a", "b"]}) == ("East", ["a", "b"])

    def test_every_bad_field_is_named(self) -> None:
        with pytest.raises(InvalidFields) as raised:
            team_fields({"name": "", "members": ["", 3]})
        assert [e.field for e in raised.value.errors] == ["name", "members"]
