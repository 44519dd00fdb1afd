"""Campaign reports and conversions (pure): what a row means, attribution, time buckets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from crm_campaigns.domain.errors import FieldError, InvalidFields

Interval = Literal["hour", "day"]
INTERVALS: tuple[Interval, ...] = ("hour", "day")
# Send statuses meaning ingest handed the message to the provider.
SENT_STATUSES = ("sent", "delivered", "bounced")
_COUNTERS = ("sent", "delivered", "bounced", "failed", "suppressed", "opened_unique", "opened_total",
             "bot_opens", "clicked_unique", "clicked_total", "unsubscribed", "conversions")


@dataclass(frozen=True, slots=True)
class Conversion:
    """A deal won or an order placed by a contact: a conversion when the contact clicked a
    campaign link within the window before it (last touch)."""

    source: Literal["deal", "order"]
    reference: str
    contact_id: str
    at: datetime
    amount_minor: int = 0
    currency: str = ""


@dataclass
class VariantFigures:
    variant: str
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    failed: int = 0
    suppressed: int = 0
    opened_unique: int = 0
    opened_total: int = 0
    bot_opens: int = 0
    clicked_unique: int = 0
    clicked_total: int = 0
    unsubscribed: int = 0
    conversions: int = 0
    revenue: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def rate(count: int) -> float:
            return round(count / self.delivered, 4) if self.delivered else 0.0

        return {"variant": self.variant, **{name: getattr(self, name) for name in _COUNTERS},
                "revenue": [{"currency": c, "amount_minor": a} for c, a in sorted(self.revenue.items())],
                "open_rate": rate(self.opened_unique), "click_rate": rate(self.clicked_unique)}


def parse_interval(value: str) -> Interval:
    if value not in INTERVALS:
        raise InvalidFields([FieldError("interval", "must be hour or day")])
    return "hour" if value == "hour" else "day"


def attribution_window(at: datetime, days: int) -> tuple[datetime, datetime]:
    """The clicks a conversion at ``at`` may be attributed to: those in ``[at - days, at]``."""
    return at - timedelta(days=days), at


def bucket(at: datetime, interval: Interval) -> datetime:
    at = at.replace(minute=0, second=0, microsecond=0)
    return at if interval == "hour" else at.replace(hour=0)


def figures(status_rows: Iterable[Mapping[str, Any]], conversion_rows: Iterable[Mapping[str, Any]]
            ) -> list[VariantFigures]:
    """Per-variant figures from the sends aggregation (one row per variant with the counts)
    and the conversions one (one row per variant and currency)."""
    found: dict[str, VariantFigures] = {}
    for row in status_rows:
        item = found.setdefault(row["variant"], VariantFigures(row["variant"]))
        for name in _COUNTERS:
            if name in row and name != "conversions":
                setattr(item, name, int(row[name]))
    for row in conversion_rows:
        item = found.setdefault(row["variant"], VariantFigures(row["variant"]))
        item.conversions += int(row["count"])
        if row.get("currency"):
            item.revenue[row["currency"]] = item.revenue.get(row["currency"], 0) + int(row["amount_minor"])
    return [found[name] for name in sorted(found)]


def series(hits: Iterable[Mapping[str, Any]], interval: Interval) -> list[dict[str, Any]]:
    """Human opens, clicks and unsubscribes per bucket and variant, from raw engagement rows
    ``{variant, kind, at}`` (bots already left out), oldest bucket first."""
    counts: dict[tuple[datetime, str], dict[str, int]] = {}
    for hit in hits:
        key = (bucket(hit["at"], interval), hit["variant"])
        row = counts.setdefault(key, {"opens": 0, "clicks": 0, "unsubscribes": 0})
        name = {"open": "opens", "click": "clicks", "unsubscribe": "unsubscribes"}.get(hit["kind"])
        if name:
            row[name] += 1
    return [{"at": at.isoformat(), "variant": variant, **row}
            for (at, variant), row in sorted(counts.items())]
