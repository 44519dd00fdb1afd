"""The segment rule language: a tree of conditions, parsed from JSON and validated. Pure.

A rule is ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": rule}`` or a leaf:
``{"field": "<field>", "op": "<op>", "value": ...}``, ``{"has_identity": "<kind>"}`` or
``{"consent": {"channel": ..., "purpose": ..., "status": "granted"}}``. The fields are the
contact columns below, ``tags``, ``custom.<key>`` (typed by the workspace's field definitions)
and ``company.<attribute>``. docs/segments.md describes the language for its users.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from crm_contacts.domain.errors import ContactsError
from crm_contacts.domain.model import IdentityKind, LifecycleStage
from crmkit.fields import FieldDefinition, FieldType

MAX_DEPTH = 8
MAX_RULES = 100
MAX_LIST = 500
MAX_TEXT = 500
MAX_DAYS = 36_500
MAX_NAME = 200
_INT64 = 2**63
_MAX_NUMBER = Decimal(10) ** 15


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IS_SET = "is_set"
    IS_NOT_SET = "is_not_set"
    WITHIN_DAYS = "within_days"
    OLDER_THAN_DAYS = "older_than_days"
    HAS = "has"
    HAS_ANY = "has_any"
    HAS_ALL = "has_all"
    CONTAINS_ANY = "contains_any"
    CONTAINS_ALL = "contains_all"


class Kind(StrEnum):
    """What a field holds, which decides its operators and how its values compare."""

    TEXT = "text"
    STAGE = "lifecycle_stage"
    INTEGER = "integer"
    NUMBER = "number"
    TIMESTAMP = "timestamp"
    DATE = "date"
    ENUM = "enum"
    MULTI_ENUM = "multi_enum"
    BOOLEAN = "boolean"
    TAGS = "tags"
    DOMAINS = "domains"


_PRESENCE = {Op.IS_SET, Op.IS_NOT_SET}
_ORDER = {Op.GT, Op.GTE, Op.LT, Op.LTE}
_RECENCY = {Op.WITHIN_DAYS, Op.OLDER_THAN_DAYS}
LIST_OPS = frozenset({Op.IN, Op.HAS_ANY, Op.HAS_ALL, Op.CONTAINS_ANY, Op.CONTAINS_ALL})

OPS: dict[Kind, frozenset[Op]] = {
    Kind.TEXT: frozenset({Op.EQ, Op.NE, Op.IN, Op.CONTAINS, Op.STARTS_WITH, *_PRESENCE}),
    Kind.STAGE: frozenset({Op.EQ, Op.NE, Op.IN}),
    Kind.INTEGER: frozenset({Op.EQ, Op.NE, Op.IN, *_ORDER, *_PRESENCE}),
    Kind.NUMBER: frozenset({Op.EQ, Op.NE, Op.IN, *_ORDER, *_PRESENCE}),
    Kind.TIMESTAMP: frozenset({*_ORDER, *_RECENCY, *_PRESENCE}),
    Kind.DATE: frozenset({Op.EQ, Op.NE, *_ORDER, *_RECENCY, *_PRESENCE}),
    Kind.ENUM: frozenset({Op.EQ, Op.NE, Op.IN, *_PRESENCE}),
    Kind.MULTI_ENUM: frozenset({Op.CONTAINS, Op.CONTAINS_ANY, Op.CONTAINS_ALL, *_PRESENCE}),
    Kind.BOOLEAN: frozenset({Op.EQ, *_PRESENCE}),
    Kind.TAGS: frozenset({Op.HAS, Op.HAS_ANY, Op.HAS_ALL, *_PRESENCE}),
    Kind.DOMAINS: frozenset({Op.EQ, Op.NE, Op.IN, *_PRESENCE}),
}

LIFECYCLE_STAGES = tuple(s.value for s in LifecycleStage)
CONTACT_FIELDS: dict[str, Kind] = {
    "first_name": Kind.TEXT, "last_name": Kind.TEXT, "display_name": Kind.TEXT,
    "owner_id": Kind.TEXT, "lifecycle_stage": Kind.STAGE, "created_at": Kind.TIMESTAMP,
    "updated_at": Kind.TIMESTAMP, "last_seen_at": Kind.TIMESTAMP, "interaction_count": Kind.INTEGER,
}
COMPANY_FIELDS: dict[str, Kind] = {
    "name": Kind.TEXT, "industry": Kind.TEXT, "size": Kind.INTEGER, "domain": Kind.DOMAINS,
}
CUSTOM_KINDS: dict[FieldType, Kind] = {
    FieldType.TEXT: Kind.TEXT, FieldType.NUMBER: Kind.NUMBER, FieldType.DATE: Kind.DATE,
    FieldType.ENUM: Kind.ENUM, FieldType.MULTI_ENUM: Kind.MULTI_ENUM, FieldType.BOOLEAN: Kind.BOOLEAN,
}
CONSENT_STATUSES = ("granted", "withdrawn")
_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


Scalar = str | int | bool | Decimal | datetime | date
Value = Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class Condition:
    """``field`` is a contact column, ``tags``, ``custom.<key>`` or ``company.<attribute>``."""

    field: str
    kind: Kind
    op: Op
    value: Value = None


@dataclass(frozen=True)
class HasIdentity:
    kind: IdentityKind


@dataclass(frozen=True)
class HasConsent:
    channel: str
    purpose: str
    status: str


Rule = AllOf | AnyOf | Not | Condition | HasIdentity | HasConsent


@dataclass(frozen=True)
class RuleError:
    path: str
    message: str


class InvalidSegment(ContactsError):
    """A segment's name or rules are not valid; each error names where, e.g. ``rules.all[2].op``."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in errors))
        self.errors = tuple(errors)


def parse_rules(raw: object, fields: Mapping[str, FieldDefinition] | None = None) -> Rule:
    """The rule tree of ``raw`` (decoded JSON), with ``custom.<key>`` typed by ``fields`` (the
    workspace's contact field definitions by key); raises InvalidSegment naming every problem."""
    parser = _Parser(fields or {})
    rule = parser.node(raw, "rules", 1)
    if parser.errors or rule is None:
        raise InvalidSegment(parser.errors or [RuleError("rules", "not a valid rule")])
    return rule


def validate_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME or _CONTROL.search(cleaned) or not _storable(cleaned):
        raise InvalidSegment([RuleError("name", f"1 to {MAX_NAME} printable characters")])
    return cleaned


def _storable(text: str) -> bool:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON can spell)."""
    return "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text)


def _path(base: str, key: object) -> str:
    text = str(key)
    return f"{base}.{text[:40]}" if re.fullmatch(r"[A-Za-z0-9_]{1,40}", text) else f"{base}[{text[:40]!r}]"


def _choices(values: Sequence[str] | frozenset[Op]) -> str:
    return ", ".join(sorted(str(v) for v in values))


class _Parser:
    def __init__(self, fields: Mapping[str, FieldDefinition]) -> None:
        self.fields = fields
        self.errors: list[RuleError] = []
        self.count = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.append(RuleError(path, message))

    def node(self, raw: object, path: str, depth: int) -> Rule | None:
        self.count += 1
        if self.count > MAX_RULES:
            if self.count == MAX_RULES + 1:
                self.fail(path, f"a segment has at most {MAX_RULES} rules and conditions")
            return None
        if not isinstance(raw, dict):
            self.fail(path, "expected an object (all, any, not, field, has_identity or consent)")
            return None
        if depth > MAX_DEPTH:
            self.fail(path, f"rules nest at most {MAX_DEPTH} levels deep")
            return None
        for key in ("all", "any", "not", "has_identity", "consent"):
            if key in raw:
                for extra in sorted(set(raw) - {key}, key=str):
                    self.fail(_path(path, extra), f"unexpected key beside {key!r}")
                return self.compound(key, raw[key], path, depth)
        if "field" in raw:
            return self.condition(raw, path)
        self.fail(path, "expected one of the keys all, any, not, field, has_identity, consent")
        return None

    def compound(self, key: str, raw: object, path: str, depth: int) -> Rule | None:
        here = f"{path}.{key}"
        if key == "not":
            inner = self.node(raw, here, depth + 1)
            return Not(inner) if inner is not None else None
        if key == "has_identity":
            kinds = [k.value for k in IdentityKind]
            if isinstance(raw, str) and raw in kinds:
                return HasIdentity(IdentityKind(raw))
            self.fail(here, f"expected an identity kind: {_choices(kinds)}")
            return None
        if key == "consent":
            return self.consent(raw, here)
        if not isinstance(raw, list):
            self.fail(here, "expected a list of rules")
            return None
        if key == "any" and not raw:
            self.fail(here, "needs at least one rule")
            return None
        rules = []
        for index, item in enumerate(raw):
            if self.count >= MAX_RULES:
                self.node(item, f"{here}[{index}]", depth + 1)  # reports the limit once
                return None
            rules.append(self.node(item, f"{here}[{index}]", depth + 1))
        parsed = tuple(r for r in rules if r is not None)
        if len(parsed) != len(rules):
            return None
        return AllOf(parsed) if key == "all" else AnyOf(parsed)

    def consent(self, raw: object, path: str) -> Rule | None:
        if not isinstance(raw, dict):
            self.fail(path, "expected an object with channel, purpose and status")
            return None
        for extra in sorted(set(raw) - {"channel", "purpose", "status"}, key=str):
            self.fail(_path(path, extra), "unknown key; expected channel, purpose, status")
        channel, purpose = raw.get("channel"), raw.get("purpose")
        status = raw.get("status", "granted")
        for name, value in (("channel", channel), ("purpose", purpose)):
            if not isinstance(value, str) or not _SLUG.match(value):
                self.fail(f"{path}.{name}", "expected a lowercase name like email or marketing")
        if status not in CONSENT_STATUSES:
            self.fail(f"{path}.status", f"expected one of {_choices(CONSENT_STATUSES)}")
        if not (isinstance(channel, str) and isinstance(purpose, str) and isinstance(status, str)):
            return None
        return HasConsent(channel, purpose, status)

    def condition(self, raw: dict[str, Any], path: str) -> Rule | None:
        errors = len(self.errors)
        for extra in sorted(set(raw) - {"field", "op", "value"}, key=str):
            self.fail(_path(path, extra), "unknown key; expected field, op, value")
        name = raw["field"]
        target = self.target(name, f"{path}.field")
        op = self.op(raw.get("op"), target, f"{path}.op")
        if target is None or op is None:
            return None
        kind, options = target
        value = self.value(kind, op, options, raw, f"{path}.value")
        if len(self.errors) > errors:
            return None
        return Condition(name, kind, op, value)

    def target(self, name: object, path: str) -> tuple[Kind, tuple[str, ...]] | None:
        if not isinstance(name, str):
            self.fail(path, "expected a field name")
            return None
        if name in CONTACT_FIELDS:
            kind = CONTACT_FIELDS[name]
            return kind, LIFECYCLE_STAGES if kind is Kind.STAGE else ()
        if name == "tags":
            return Kind.TAGS, ()
        prefix, _, rest = name.partition(".")
        if prefix == "company" and rest in COMPANY_FIELDS:
            return COMPANY_FIELDS[rest], ()
        if prefix == "custom" and rest:
            field = self.fields.get(rest)
            if field is None or field.entity != "contact":
                self.fail(path, f"no custom contact field {rest[:40]!r} in this workspace")
                return None
            custom = CUSTOM_KINDS.get(field.type)
            if custom is None:
                self.fail(path, f"custom fields of type {field.type.value!r} cannot be used in segments")
                return None
            return custom, field.options
        self.fail(path, f"unknown field; expected one of {_choices(list(CONTACT_FIELDS))}, tags,"
                        f" custom.<key>, company.<{'|'.join(COMPANY_FIELDS)}>")
        return None

    def op(self, raw: object, target: tuple[Kind, tuple[str, ...]] | None, path: str) -> Op | None:
        if raw is None:
            self.fail(path, "required")
            return None
        known = {o.value for o in Op}
        if not isinstance(raw, str) or raw not in known:
            self.fail(path, f"unknown operator; expected one of {_choices(sorted(known))}")
            return None
        if target is None:
            return None
        allowed = OPS[target[0]]
        if Op(raw) not in allowed:
            self.fail(path, f"{raw!r} does not apply to a {target[0].value} field;"
                            f" expected one of {_choices(allowed)}")
            return None
        return Op(raw)

    def value(self, kind: Kind, op: Op, options: tuple[str, ...], raw: dict[str, Any], path: str) -> Value:
        if op in _PRESENCE:
            if "value" in raw:
                self.fail(path, f"{op.value} takes no value")
            return None
        if "value" not in raw:
            self.fail(path, "required")
            return None
        value = raw["value"]
        if op in _RECENCY:
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DAYS:
                return value
            self.fail(path, f"expected a whole number of days from 1 to {MAX_DAYS}")
            return None
        if op in LIST_OPS:
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
                self.fail(path, f"expected a list of 1 to {MAX_LIST} values")
                return None
            items = [self.scalar(kind, options, v, f"{path}[{i}]") for i, v in enumerate(value)]
            return tuple(dict.fromkeys(v for v in items if v is not None))
        return self.scalar(kind, options, value, path)

    def scalar(self, kind: Kind, options: tuple[str, ...], raw: object, path: str) -> Scalar | None:
        if kind is Kind.BOOLEAN:
            if isinstance(raw, bool):
                return raw
            self.fail(path, "expected true or false")
            return None
        if kind is Kind.INTEGER:
            if isinstance(raw, int) and not isinstance(raw, bool) and -_INT64 < raw < _INT64:
                return raw
            self.fail(path, "expected a whole number")
            return None
        if kind is Kind.NUMBER:
            if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
                number = Decimal(str(raw))
                if abs(number) < _MAX_NUMBER:
                    return number
            self.fail(path, "expected a number below 10^15 in size")
            return None
        if not isinstance(raw, str) or len(raw) > MAX_TEXT or not _storable(raw):
            self.fail(path, f"expected a string of at most {MAX_TEXT} characters")
            return None
        if kind is Kind.TIMESTAMP:
            return self.timestamp(raw, path)
        if kind is Kind.DATE:
            try:
                return date.fromisoformat(raw)
            except ValueError:
                self.fail(path, "expected a date like 2026-01-31")
                return None
        if kind in (Kind.STAGE, Kind.ENUM, Kind.MULTI_ENUM) and options and raw not in options:
            self.fail(path, f"not an option; expected one of {_choices(options)}")
            return None
        if kind is Kind.TAGS and not raw.strip():
            self.fail(path, "expected a tag")
            return None
        if kind in (Kind.TAGS, Kind.DOMAINS):  # stored trimmed and in lower case
            return raw.strip().lower()
        return raw

    def timestamp(self, raw: str, path: str) -> datetime | None:
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
            stamp = datetime.fromisoformat(raw)
        except ValueError:
            self.fail(path, "expected an ISO 8601 time like 2026-01-31T09:00:00Z, or a date")
            return None
        if stamp.tzinfo is None:
            self.fail(path, "a time needs a zone, e.g. 2026-01-31T09:00:00Z")
            return None
        return stamp.astimezone(UTC)
