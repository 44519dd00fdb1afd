"""Money: integer minor units of an ISO 4217 currency, and conversion into a workspace's base
currency with dated exchange rates. Pure; never floats.

Rounding is banker's rounding (half to even, ``ROUND_HALF_EVEN``) wherever a result falls
between two minor units: reports add up many converted amounts, and half-even does not drift
upwards the way half-up does. Intermediate results are exact ``Decimal``s (a 60-digit context),
so only the final value is rounded, once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

# Minor-unit exponents of the active ISO 4217 currencies that are not 2 (the default).
_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                     "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
_TWO_DIGIT = (  # noqa: SIM905 - a table reads better as words
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP "
    "GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK "
    "LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK "
    "NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD "
    "SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD YER "
    "ZAR ZMW ZWL"
).split()
EXPONENTS: Mapping[str, int] = {**dict.fromkeys(_TWO_DIGIT, 2), **_EXPONENTS}

DEFAULT_BASE_CURRENCY = "EUR"
MAX_MINOR = 2**63 - 1  # what a bigint column holds
_CODE = re.compile(r"^[A-Z]{3}$")
_RATE = re.compile(r"^\d{1,12}(\.\d{1,12})?$")
_EXACT = Context(prec=60)


class UnknownCurrency(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(f"{code!r} is not an ISO 4217 currency code")
        self.code = code


class MissingRate(LookupError):
    """No exchange rate on or before the date for a currency."""

    def __init__(self, currency: str, on: date) -> None:
        super().__init__(f"no exchange rate for {currency} on or before {on.isoformat()}")
        self.currency = currency
        self.on = on


def is_currency(code: str) -> bool:
    return bool(_CODE.match(code)) and code in EXPONENTS


def exponent(code: str) -> int:
    """How many decimal digits the currency's minor unit has: JPY 0, EUR 2, BHD 3."""
    if not is_currency(code):
        raise UnknownCurrency(code)
    return EXPONENTS[code]


def parse_rate(text: str) -> Decimal:
    """A positive exchange rate written as a plain decimal string ("1.0842"); ValueError else."""
    if not _RATE.match(text):
        raise ValueError("a positive decimal number such as 1.0842 (at most 12 decimal places)")
    rate = Decimal(text)
    if rate <= 0:
        raise ValueError("must be more than 0")
    return rate


def to_major(amount_minor: int, currency: str) -> Decimal:
    """1234 EUR -> Decimal('12.34'); exact."""
    return Decimal(amount_minor).scaleb(-exponent(currency), _EXACT)


def convert(amount_minor: int, currency: str, base: str, rate: Decimal) -> int:
    """``amount_minor`` of ``currency`` in minor units of ``base``, ``rate`` being units of base
    per unit of currency; rounded half to even once, at the end."""
    if currency == base:
        exponent(currency)
        return amount_minor
    try:
        exact = _EXACT.multiply(to_major(amount_minor, currency), rate).scaleb(exponent(base), _EXACT)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_EXACT))
    except InvalidOperation as exc:  # pragma: no cover - 60 digits hold any bigint times any rate
        raise ValueError("amount too large to convert") from exc


def rate_on(rates: Mapping[date, Decimal], on: date) -> Decimal | None:
    """The rate in force on ``on``: the latest dated on or before it."""
    dated = [d for d in rates if d <= on]
    return rates[max(dated)] if dated else None


def convert_on(amount_minor: int, currency: str, base: str, on: date,
               rates: Mapping[str, Mapping[date, Decimal]]) -> int:
    """``convert`` with the rate in force on ``on`` from ``rates`` (currency -> date -> rate);
    MissingRate when there is none."""
    if currency == base:
        return convert(amount_minor, currency, base, Decimal(1))
    rate = rate_on(rates.get(currency, {}), on)
    if rate is None:
        raise MissingRate(currency, on)
    return convert(amount_minor, currency, base, rate)


def weighted(amount_minor: int, probability: int) -> int:
    """The amount times a 0-100 win probability, rounded half to even."""
    exact = _EXACT.divide(_EXACT.multiply(Decimal(amount_minor), Decimal(probability)), Decimal(100))
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_EXACT))
