"""Lead scoring: a workspace's model (a list of rules) and a contact's score under it. Pure.

A score at time t is the sum of its rules' contributions:

- an attribute rule gives its points when the contact's attribute matches (lifecycle stage is
  ``lead``, a custom field at least 100, the contact has a company, carries a tag...);
- a behaviour rule gives its points for each event of its kind, halved every ``half_life_days``
  of the event's age at t (no decay without a half-life), the sum kept within ``cap``.

Each rule's contribution is rounded once, half up to 0.01, from its exact sum; the score is the
sum of the rounded contributions (then kept within the model's ``max_score``), so an
explanation always adds up to the score it explains.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from crm_pipeline.domain.errors import FieldError, InvalidFields

CENT = Decimal("0.01")
MAX_RULES = 100
MAX_THRESHOLDS = 20
MAX_POINTS = Decimal(100_000)
# Events shown under a behaviour rule's explanation: the heaviest ones.
EVENTS_EXPLAINED = 20


class Behaviour(StrEnum):
    """The events behaviour rules count, whatever service they come from."""

    EMAIL_OPENED = "email_opened"  # campaigns
    EMAIL_CLICKED = "email_clicked"  # campaigns
    EMAIL_RECEIVED = "email_received"  # an inbound email (interactions)
    CHAT_MESSAGE = "chat_message"  # an inbound chat, WhatsApp, Messenger... message (interactions)
    ORDER_PLACED = "order_placed"  # commerce (interactions)
    TICKET_OPENED = "ticket_opened"  # ticketing
    PAGE_VISIT = "page_visit"  # no producer yet: accepted so models can be written ahead


class Op(StrEnum):
    EQUALS = "equals"  # a list field (tags, companies): contains the value
    IN = "in"  # one of the values; a list field: contains any of them
    EXISTS = "exists"  # set and not empty
    GTE = "gte"  # a number at least the value


# The contact attributes rules can test, besides ``custom_fields.<key>``.
ATTRIBUTES = frozenset({"lifecycle_stage", "owner_id", "tags", "companies"})
CUSTOM_PREFIX = "custom_fields."


@dataclass(frozen=True)
class AttributeRule:
    id: str
    field: str
    op: Op
    value: Any  # str or number for equals/gte, a list for in, None for exists
    points: Decimal


@dataclass(frozen=True)
class BehaviourRule:
    id: str
    event: Behaviour
    points: Decimal  # per event, before decay
    cap: Decimal | None = None  # the most (in absolute value) the rule gives in all
    half_life_days: Decimal | None = None  # None: events never fade


Rule = AttributeRule | BehaviourRule


@dataclass(frozen=True)
class ScoringModel:
    rules: tuple[Rule, ...] = ()
    # Scores a contact crossing any of them is worth telling about, however small the change.
    thresholds: tuple[Decimal, ...] = ()
    max_score: Decimal | None = None
    version: int = 0


@dataclass(frozen=True)
class ContactAttributes:
    """What contacts last told about a contact, as far as rules can test it."""

    lifecycle_stage: str = ""
    owner_id: str = ""
    tags: tuple[str, ...] = ()
    companies: tuple[str, ...] = ()
    custom_fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BehaviourEvent:
    event_id: str
    kind: Behaviour
    occurred_at: datetime


@dataclass(frozen=True)
class BehaviourSeen:
    """A behaviour event of a contact, as a consumer read it off its topic."""

    contact_id: UUID
    kind: Behaviour
    occurred_at: datetime


@dataclass(frozen=True)
class ContactSeen:
    """A contact's attributes as of its ``version``, from contact.created or contact.updated."""

    contact_id: UUID
    version: int
    attributes: ContactAttributes


@dataclass(frozen=True)
class EventPoints:
    """One event behind a behaviour rule and what it is worth now (rounded for display)."""

    event_id: str
    occurred_at: datetime
    points: Decimal


@dataclass(frozen=True)
class Contribution:
    rule_id: str
    kind: str  # attribute or behaviour
    points: Decimal
    event_count: int = 0
    events: tuple[EventPoints, ...] = ()  # the heaviest EVENTS_EXPLAINED of them
    capped: bool = False


@dataclass(frozen=True)
class Score:
    value: Decimal
    contributions: tuple[Contribution, ...]  # every rule that gave points, heaviest first
    capped: bool = False  # max_score cut the sum

    def top(self, n: int) -> tuple[Contribution, ...]:
        return self.contributions[:n]


def rounded(value: float | Decimal) -> Decimal:
    """Half up to 0.01, the same on every machine: floats go through their shortest repr."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(value))
    result = exact.quantize(CENT, rounding=ROUND_HALF_UP)
    return result + 0  # normalises -0.00 to 0.00


def score(model: ScoringModel, attributes: ContactAttributes | None, events: Iterable[BehaviourEvent],
          at: datetime) -> Score:
    """The contact's score at ``at`` under ``model``, with what each rule contributed."""
    by_kind: dict[Behaviour, list[BehaviourEvent]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    contributions: list[Contribution] = []
    for rule in model.rules:
        if isinstance(rule, AttributeRule):
            if attributes is not None and matches(rule, attributes):
                contributions.append(Contribution(rule.id, "attribute", rounded(rule.points)))
        else:
            found = _behaviour(rule, by_kind.get(rule.event, []), at)
            if found is not None:
                contributions.append(found)
    contributions.sort(key=lambda c: (-abs(c.points), c.rule_id))
    total = sum((c.points for c in contributions), Decimal(0))
    capped = model.max_score is not None and total > model.max_score
    if capped:
        assert model.max_score is not None
        total = model.max_score
    return Score(rounded(total), tuple(contributions), capped)


def decayed(points: Decimal, half_life_days: Decimal | None, occurred_at: datetime, at: datetime) -> float:
    """``points`` halved for every half-life of the event's age at ``at``. An event from the
    future (clocks differ) counts as new."""
    if half_life_days is None:
        return float(points)
    age_days = max((at - occurred_at).total_seconds(), 0.0) / 86400
    return float(points) * math.pow(0.5, age_days / float(half_life_days))


def _behaviour(rule: BehaviourRule, events: Sequence[BehaviourEvent], at: datetime) -> Contribution | None:
    if not events:
        return None
    worth = [(decayed(rule.points, rule.half_life_days, e.occurred_at, at), e) for e in events]
    # Summed in a fixed order, so that the float sum is the same whatever order events came in.
    worth.sort(key=lambda pair: (-abs(pair[0]), pair[1].event_id))
    exact = math.fsum(points for points, _ in worth)
    capped = rule.cap is not None and abs(exact) > float(rule.cap)
    if capped:
        assert rule.cap is not None
        exact = math.copysign(float(rule.cap), exact)
    shown = tuple(EventPoints(e.event_id, e.occurred_at, rounded(points))
                  for points, e in worth[:EVENTS_EXPLAINED])
    return Contribution(rule.id, "behaviour", rounded(exact), len(worth), shown, capped)


def matches(rule: AttributeRule, attributes: ContactAttributes) -> bool:
    value = attribute(attributes, rule.field)
    if rule.op is Op.EXISTS:
        return value not in (None, "", [], (), {})
    if isinstance(value, (list, tuple)):
        wanted = rule.value if rule.op is Op.IN else [rule.value]
        return rule.op is not Op.GTE and any(_same(item, w) for item in value for w in wanted)
    if rule.op is Op.EQUALS:
        return _same(value, rule.value)
    if rule.op is Op.IN:
        return any(_same(value, w) for w in rule.value)
    number = _number(value)
    return number is not None and number >= Decimal(str(rule.value))


def attribute(attributes: ContactAttributes, name: str) -> Any:
    if name.startswith(CUSTOM_PREFIX):
        return attributes.custom_fields.get(name.removeprefix(CUSTOM_PREFIX))
    return getattr(attributes, name)


def _same(value: Any, wanted: Any) -> bool:
    """Equal, strings without regard to case, numbers whatever their type (3 == 3.0)."""
    if isinstance(value, str) and isinstance(wanted, str):
        return value.casefold() == wanted.casefold()
    left, right = _number(value), _number(wanted)
    if left is not None and right is not None:
        return left == right
    return bool(value == wanted)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Decimal(str(value))


def crossed(before: Decimal, after: Decimal, thresholds: Iterable[Decimal]) -> list[Decimal]:
    """The thresholds between two scores: reached going up, or fallen below going down."""
    low, high = min(before, after), max(before, after)
    if before <= after:
        return sorted(t for t in thresholds if low < t <= high)
    return sorted((t for t in thresholds if low < t <= high), reverse=True)


def worth_telling(before: Decimal, after: Decimal, thresholds: Iterable[Decimal],
                  min_change: Decimal) -> bool:
    """Whether a move from the score last published to this one is news: at least
    ``min_change`` points, or across a threshold."""
    if before == after:
        return False
    return abs(after - before) >= min_change or bool(crossed(before, after, thresholds))


# The model as JSON (the API's body and the stored form) -------------------------------------


def parse_model(raw: Mapping[str, Any], version: int = 0) -> ScoringModel:
    """A model from its JSON form, or InvalidFields naming every bad rule and field."""
    errors: list[FieldError] = []
    rules: list[Rule] = []
    raw_rules = raw.get("rules", [])
    if not isinstance(raw_rules, list):
        errors.append(FieldError("rules", "must be a list"))
        raw_rules = []
    if len(raw_rules) > MAX_RULES:
        errors.append(FieldError("rules", f"at most {MAX_RULES} rules"))
    seen: set[str] = set()
    for index, item in enumerate(raw_rules):
        where = f"rules[{index}]"
        rule = _rule(item, where, errors)
        if rule is None:
            continue
        if rule.id in seen:
            errors.append(FieldError(f"{where}.id", f"another rule is {rule.id!r}"))
        seen.add(rule.id)
        rules.append(rule)
    thresholds: list[Decimal] = []
    raw_thresholds = raw.get("thresholds", [])
    if not isinstance(raw_thresholds, list) or len(raw_thresholds) > MAX_THRESHOLDS:
        errors.append(FieldError("thresholds", f"must be a list of at most {MAX_THRESHOLDS} numbers"))
    else:
        for index, value in enumerate(raw_thresholds):
            number = _points(value, f"thresholds[{index}]", errors)
            if number is not None:
                thresholds.append(number)
    max_score = None
    if raw.get("max_score") is not None:
        max_score = _points(raw["max_score"], "max_score", errors, positive=True)
    unknown = set(raw) - {"rules", "thresholds", "max_score"}
    errors.extend(FieldError(name, "not a field of the model") for name in sorted(unknown))
    if errors:
        raise InvalidFields(errors)
    return ScoringModel(tuple(rules), tuple(sorted(set(thresholds))), max_score, version)


def _rule(item: Any, where: str, errors: list[FieldError]) -> Rule | None:
    if not isinstance(item, dict):
        errors.append(FieldError(where, "must be an object"))
        return None
    before = len(errors)
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not 1 <= len(rule_id) <= 64:
        errors.append(FieldError(f"{where}.id", "must be a name of 1 to 64 characters"))
    points = _points(item.get("points"), f"{where}.points", errors)
    kind = item.get("kind")
    if kind == "attribute":
        allowed = {"id", "kind", "field", "op", "value", "points"}
        name, op, value = item.get("field"), item.get("op"), item.get("value")
        if not isinstance(name, str) or not (
                name in ATTRIBUTES or (name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX))):
            errors.append(FieldError(f"{where}.field", "must be one of " + ", ".join(sorted(ATTRIBUTES))
                                     + f" or {CUSTOM_PREFIX}<key>"))
        if op not in set(Op):
            errors.append(FieldError(f"{where}.op", "must be one of " + ", ".join(o.value for o in Op)))
        else:
            _value(Op(op), value, f"{where}.value", errors)
    elif kind == "behaviour":
        allowed = {"id", "kind", "event", "points", "cap", "half_life_days"}
        if item.get("event") not in set(Behaviour):
            errors.append(FieldError(f"{where}.event",
                                     "must be one of " + ", ".join(b.value for b in Behaviour)))
        cap = half_life = None
        if item.get("cap") is not None:
            cap = _points(item["cap"], f"{where}.cap", errors, positive=True)
        if item.get("half_life_days") is not None:
            half_life = _points(item["half_life_days"], f"{where}.half_life_days", errors, positive=True)
    else:
        errors.append(FieldError(f"{where}.kind", "must be attribute or behaviour"))
        return None
    errors.extend(FieldError(f"{where}.{name}", "not a field of this rule")
                  for name in sorted(set(item) - allowed))
    if len(errors) > before:
        return None
    assert isinstance(rule_id, str)
    assert points is not None
    if kind == "attribute":
        value = item.get("value")
        if isinstance(value, list):
            value = tuple(value)
        return AttributeRule(rule_id, item["field"], Op(item["op"]), value, points)
    return BehaviourRule(rule_id, Behaviour(item["event"]), points, cap, half_life)


def _value(op: Op, value: Any, where: str, errors: list[FieldError]) -> None:
    scalar = (str, int, float)
    if op is Op.EXISTS:
        if value is not None:
            errors.append(FieldError(where, "exists takes no value"))
    elif op is Op.IN:
        if (not isinstance(value, list) or not 1 <= len(value) <= 100
                or not all(isinstance(v, scalar) and not isinstance(v, bool) for v in value)):
            errors.append(FieldError(where, "in takes a list of 1 to 100 strings or numbers"))
    elif op is Op.GTE:
        if _number(value) is None:
            errors.append(FieldError(where, "gte takes a number"))
    elif not isinstance(value, scalar) or isinstance(value, bool) or value == "":
        errors.append(FieldError(where, "equals takes a string or a number"))


def _points(value: Any, where: str, errors: list[FieldError], *, positive: bool = False) -> Decimal | None:
    number = _number(value)
    if number is None or abs(number) > MAX_POINTS or number != number.quantize(CENT):
        errors.append(FieldError(where, f"must be a number of at most {MAX_POINTS} with at most 2 decimals"))
        return None
    if positive and number <= 0:
        errors.append(FieldError(where, "must be more than 0"))
        return None
    return number


def model_to_dict(model: ScoringModel) -> dict[str, Any]:
    """The model's JSON form: what ``parse_model`` reads back."""
    rules: list[dict[str, Any]] = []
    for rule in model.rules:
        if isinstance(rule, AttributeRule):
            value = list(rule.value) if isinstance(rule.value, tuple) else rule.value
            item: dict[str, Any] = {"id": rule.id, "kind": "attribute", "field": rule.field,
                                    "op": rule.op.value, "points": float(rule.points)}
            if rule.op is not Op.EXISTS:
                item["value"] = value
        else:
            item = {"id": rule.id, "kind": "behaviour", "event": rule.event.value,
                    "points": float(rule.points)}
            if rule.cap is not None:
                item["cap"] = float(rule.cap)
            if rule.half_life_days is not None:
                item["half_life_days"] = float(rule.half_life_days)
        rules.append(item)
    result: dict[str, Any] = {"rules": rules, "thresholds": [float(t) for t in model.thresholds]}
    if model.max_score is not None:
        result["max_score"] = float(model.max_score)
    return result
