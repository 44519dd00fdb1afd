"""Money: currency exponents, dated conversion with half-to-even rounding, huge amounts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from crm_pipeline.domain.money import (
    MAX_MINOR,
    MissingRate,
    UnknownCurrency,
    convert,
    convert_on,
    exponent,
    is_currency,
    parse_rate,
    rate_on,
    to_major,
    weighted,
)


@pytest.mark.parametrize(("code", "digits"), [("JPY", 0), ("KRW", 0), ("EUR", 2), ("USD", 2), ("BHD", 3),
                                              ("KWD", 3), ("CLF", 4)])
def test_each_currency_has_its_minor_unit_exponent(code: str, digits: int) -> None:
    assert exponent(code) == digits


@pytest.mark.parametrize("code", ["eur", "EURO", "XXX", "", "E1R", "ZZZ"])
def test_codes_that_are_not_iso_4217_are_refused(code: str) -> None:
    assert not is_currency(code)
    with pytest.raises(UnknownCurrency):
        exponent(code)


def test_minor_units_become_major_units_exactly() -> None:
    assert to_major(1234, "EUR") == Decimal("12.34")
    assert to_major(1234, "JPY") == Decimal("1234")
    assert to_major(1234, "BHD") == Decimal("1.234")


def test_conversion_scales_between_exponents() -> None:
    # 1000 JPY at 0.0062 EUR per yen is 6.20 EUR.
    assert convert(1000, "JPY", "EUR", Decimal("0.0062")) == 620
    # 12.34 EUR at 160.5 yen per euro is 1980.57 yen, rounded to 1981 (no minor unit).
    assert convert(1234, "EUR", "JPY", Decimal("160.5")) == 1981
    # 1.000 BHD at 2.4420 EUR is 2.44 EUR (2.442 rounds down).
    assert convert(1000, "BHD", "EUR", Decimal("2.442")) == 244


def test_the_same_currency_converts_to_itself() -> None:
    assert convert(MAX_MINOR, "EUR", "EUR", Decimal("123")) == MAX_MINOR


@pytest.mark.parametrize(("amount", "expected"), [(5, 2), (15, 8), (25, 12), (35, 18), (-5, -2)])
def test_halves_round_to_even(amount: int, expected: int) -> None:
    # amount cents of USD at 0.5 EUR per dollar: exactly half a cent each time.
    assert convert(amount, "USD", "EUR", Decimal("0.5")) == expected


def test_just_above_a_half_rounds_up() -> None:
    assert convert(5, "USD", "EUR", Decimal("0.5000001")) == 3


def test_huge_amounts_convert_without_losing_digits() -> None:
    converted = convert(MAX_MINOR, "USD", "EUR", Decimal("1.000000000001"))
    assert converted == MAX_MINOR + 9223372  # 9223372036854775807e-12 = 9223372.04 -> 9223372
    # MAX_MINOR yen at 0.0025 BHD (3 decimals) is MAX_MINOR * 2.5 fils: ...517.5, half to even ...518.
    assert convert(MAX_MINOR, "JPY", "BHD", Decimal("0.0025")) == 23058430092136939518


def test_the_rate_in_force_is_the_latest_on_or_before_the_day() -> None:
    rates = {date(2026, 1, 1): Decimal("1.10"), date(2026, 3, 1): Decimal("1.20")}
    assert rate_on(rates, date(2025, 12, 31)) is None
    assert rate_on(rates, date(2026, 1, 1)) == Decimal("1.10")
    assert rate_on(rates, date(2026, 2, 28)) == Decimal("1.10")
    assert rate_on(rates, date(2026, 6, 1)) == Decimal("1.20")
    assert convert_on(1000, "USD", "EUR", date(2026, 3, 1), {"USD": rates}) == 1200


def test_conversion_without_a_rate_says_which() -> None:
    with pytest.raises(MissingRate) as missing:
        convert_on(1000, "USD", "EUR", date(2026, 1, 1), {})
    assert missing.value.currency == "USD"
    assert convert_on(1000, "EUR", "EUR", date(2026, 1, 1), {}) == 1000


@pytest.mark.parametrize("text", ["1.0842", "0.5", "160", "0.000000000001"])
def test_rates_parse_from_plain_decimals(text: str) -> None:
    assert parse_rate(text) == Decimal(text)


@pytest.mark.parametrize("text", ["0", "0.000", "-1.2", "1e3", "abc", "1,5", "", "NaN", "Infinity",
                                  "1.0000000000001"])
def test_rates_that_are_not_positive_plain_decimals_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"must be more than 0|positive decimal"):
        parse_rate(text)


@pytest.mark.parametrize(("amount", "probability", "expected"),
                         [(1000, 0, 0), (1000, 100, 1000), (1000, 25, 250), (1, 50, 0), (3, 50, 2),
                          (MAX_MINOR, 100, MAX_MINOR)])
def test_weighted_amounts_round_half_to_even(amount: int, probability: int, expected: int) -> None:
    assert weighted(amount, probability) == expected
