"""A/B tests of a campaign. Pure.

A campaign with variants first sends each variant to its test share of the audience; a
recipient's variant is a deterministic hash of (campaign id, contact id), so a restart assigns
everyone the same way again. After ``decide_after`` seconds the variant with the best unique
open (or click) rate wins — a tie goes to the first variant — and everyone not yet sent gets
the winner.

The campaign document carries the test as its ``ab`` field (see ``AbTest.as_doc``):
``{variants: [...], metric, decide_after, test_started_at, winner, decided_at}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from crmkit.fields import FieldError

Metric = Literal["open", "click"]
METRICS: tuple[str, ...] = ("open", "click")
MAX_VARIANTS = 5
MAX_DECIDE_AFTER = 30 * 24 * 3600
# A recipient hashed into [0, BUCKETS) falls into a variant's test slice or the remainder.
BUCKETS = 10_000
# The variant of a recipient who gets the remainder before a winner is known.
REMAINDER = ""


@dataclass(frozen=True)
class Variant:
    """One arm of the test: a whole other template, or the campaign's template with another
    subject. ``share_percent`` of the audience gets it during the test."""

    name: str
    share_percent: float
    template_id: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class AbTest:
    variants: tuple[Variant, ...]
    metric: Metric = "open"
    decide_after: int = 3600
    test_started_at: datetime | None = None
    winner: str | None = None
    decided_at: datetime | None = None

    def as_doc(self) -> dict[str, Any]:
        return {
            "variants": [{"name": v.name, "share_percent": v.share_percent, "template_id": v.template_id,
                          "subject": v.subject} for v in self.variants],
            "metric": self.metric, "decide_after": self.decide_after,
            "test_started_at": self.test_started_at, "winner": self.winner, "decided_at": self.decided_at,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AbTest:
        return cls(
            variants=tuple(Variant(name=v["name"], share_percent=float(v["share_percent"]),
                                   template_id=v.get("template_id"), subject=v.get("subject"))
                           for v in doc["variants"]),
            metric=doc.get("metric", "open"), decide_after=int(doc.get("decide_after", 3600)),
            test_started_at=doc.get("test_started_at"), winner=doc.get("winner"),
            decided_at=doc.get("decided_at"))

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def due_at(self) -> datetime | None:
        """When the winner may be chosen; None before the test share went out."""
        if self.test_started_at is None:
            return None
        return self.test_started_at + timedelta(seconds=self.decide_after)

    def is_due(self, now: datetime) -> bool:
        due = self.due_at()
        return self.winner is None and due is not None and now >= due


def validate_test(raw: Mapping[str, Any]) -> tuple[AbTest | None, list[FieldError]]:
    """Check a ``PUT /variants`` body: 2..5 variants with unique names, each either a template
    id or a subject override, shares in (0, 50] summing to at most 100, a known metric and a
    positive ``decide_after``. Returns the test or every bad field at once."""
    errors: list[FieldError] = []
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, list) or not 2 <= len(variants_raw) <= MAX_VARIANTS:
        errors.append(FieldError("variants", f"give between 2 and {MAX_VARIANTS} variants"))
        variants_raw = variants_raw if isinstance(variants_raw, list) else []
    variants: list[Variant] = []
    seen: set[str] = set()
    for i, v in enumerate(variants_raw):
        where = f"variants[{i}]"
        if not isinstance(v, Mapping):
            errors.append(FieldError(where, "must be an object"))
            continue
        name = v.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 40:
            errors.append(FieldError(f"{where}.name", "must be a non-empty name of at most 40 characters"))
        elif name in seen:
            errors.append(FieldError(f"{where}.name", f"{name!r} is used twice"))
        else:
            seen.add(name)
        share = v.get("share_percent")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 50:
            errors.append(FieldError(f"{where}.share_percent", "must be a number above 0 and at most 50"))
        template_id, subject = v.get("template_id"), v.get("subject")
        if (template_id is None) == (subject is None):
            errors.append(FieldError(where, "give exactly one of template_id or subject"))
        elif subject is not None and (not isinstance(subject, str) or not subject.strip()
                                      or len(subject) > 500):
            errors.append(FieldError(f"{where}.subject", "must be a subject of at most 500 characters"))
        elif template_id is not None and (not isinstance(template_id, str) or not template_id):
            errors.append(FieldError(f"{where}.template_id", "must be a template id"))
        if isinstance(name, str) and isinstance(share, int | float):
            variants.append(Variant(name, float(share), template_id if isinstance(template_id, str) else None,
                                    subject if isinstance(subject, str) else None))
    if not errors and sum(v.share_percent for v in variants) > 100:
        errors.append(FieldError("variants", "the test shares add up to more than 100 percent"))
    metric = raw.get("metric", "open")
    if metric not in METRICS:
        errors.append(FieldError("metric", "must be open or click"))
    decide_after = raw.get("decide_after", 3600)
    if (isinstance(decide_after, bool) or not isinstance(decide_after, int)
            or not 0 < decide_after <= MAX_DECIDE_AFTER):
        errors.append(FieldError("decide_after", f"must be whole seconds between 1 and {MAX_DECIDE_AFTER}"))
    if errors:
        return None, errors
    return AbTest(tuple(variants), metric, decide_after), []


def bucket(campaign_id: str, contact_id: str) -> int:
    """The recipient's stable place in [0, BUCKETS): the same for every run of the campaign."""
    digest = hashlib.sha256(f"{campaign_id}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(test: AbTest, campaign_id: str, contact_id: str) -> str:
    """The variant a recipient gets in the test phase, or ``REMAINDER`` if they wait for the
    winner. Variant i owns the slice of buckets after variants 0..i-1."""
    b = bucket(campaign_id, contact_id)
    start = 0.0
    for v in test.variants:
        end = start + v.share_percent * BUCKETS / 100
        if start <= b < end:
            return v.name
        start = end
    return REMAINDER


@dataclass(frozen=True)
class VariantResult:
    name: str
    sent: int
    opened: int
    clicked: int
    rate: float = field(default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sent": self.sent, "opened": self.opened, "clicked": self.clicked,
                "rate": self.rate}


def results(test: AbTest, counts: Mapping[str, Mapping[str, int]]) -> list[VariantResult]:
    """Each variant's unique open/click rate (by the test's metric) from per-variant counts
    ``{name: {sent, opened, clicked}}``, in the variants' order."""
    out = []
    for v in test.variants:
        c = counts.get(v.name, {})
        sent, opened, clicked = int(c.get("sent", 0)), int(c.get("opened", 0)), int(c.get("clicked", 0))
        hits = opened if test.metric == "open" else clicked
        out.append(VariantResult(v.name, sent, opened, clicked, hits / sent if sent else 0.0))
    return out


def pick_winner(test: AbTest, counts: Mapping[str, Mapping[str, int]]) -> str:
    """The variant with the best rate; a tie (or no data) goes to the first variant."""
    best: VariantResult | None = None
    for r in results(test, counts):
        if best is None or r.rate > best.rate:
            best = r
    assert best is not None
    return best.name


def split(test: AbTest, campaign_id: str, contact_ids: Iterable[str]) -> dict[str, list[str]]:
    """Group a known audience exactly: recipients ordered by their hash, variant i takes the
    next ``round(share_i * N / 100)`` of them (10 % of 40 is 4), the rest is ``REMAINDER``.
    Deterministic: the same audience splits the same way after a restart."""
    ids = sorted(set(contact_ids), key=lambda c: (bucket(campaign_id, c), c))
    groups: dict[str, list[str]] = {}
    at = 0
    for v in test.variants:
        n = round(v.share_percent * len(ids) / 100)
        groups[v.name] = ids[at:at + n]
        at += n
    groups[REMAINDER] = ids[at:]
    return groups


def cut_points(test: AbTest, campaign_id: str, contact_ids: Iterable[str]) -> list[list[Any]]:
    """``split``'s groups as boundaries, small enough for the campaign document: the
    (bucket, contact id) key of each variant group's last member."""
    groups = split(test, campaign_id, contact_ids)
    bounds: list[list[Any]] = []
    last: list[Any] = [-1, ""]
    for v in test.variants:
        members = groups[v.name]
        if members:
            last = [bucket(campaign_id, members[-1]), members[-1]]
        bounds.append(last)
    return bounds


def assign_by_cuts(test: AbTest, cuts: list[list[Any]], campaign_id: str, contact_id: str) -> str:
    """A recipient's group under ``cut_points`` (the same as ``split`` gave it)."""
    key = (bucket(campaign_id, contact_id), contact_id)
    for v, bound in zip(test.variants, cuts, strict=True):
        if key <= (bound[0], bound[1]):
            return v.name
    return REMAINDER


def message_of(test: AbTest, variant: str) -> Variant | None:
    """What a recipient of ``variant`` gets: that variant, or the winner for the remainder
    once it is known (None = the campaign's own template and subject)."""
    if variant == REMAINDER:
        return test.variant(test.winner) if test.winner else None
    return test.variant(variant)

