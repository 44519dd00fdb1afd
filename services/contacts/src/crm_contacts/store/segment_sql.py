"""Segment rules compiled to SQL: one boolean expression over the contacts row aliased ``c``.

Every value, custom field keys included, is a positional parameter; the SQL text comes only
from this module. A compiled predicate keeps its text in pieces around its parameters, so it
can be numbered from any position and several can share one statement.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from crm_contacts.domain.segments import (
    CONTACT_FIELDS,
    AllOf,
    AnyOf,
    Condition,
    HasConsent,
    HasIdentity,
    InvalidSegment,
    Kind,
    Not,
    Op,
    Rule,
    parse_rules,
)
from crmkit.fields import FieldDefinition


@dataclass(frozen=True)
class Predicate:
    """SQL text with ``len(params)`` holes: parameter i goes between ``parts[i]`` and ``parts[i + 1]``."""

    parts: tuple[str, ...]
    params: tuple[Any, ...]

    def render(self, first: int = 1) -> str:
        """The SQL with its parameters numbered ``$first``, ``$first + 1``, ..."""
        holes = (f"${first + i}" for i in range(len(self.params)))
        return "".join(part + hole for part, hole in zip(self.parts, holes, strict=False)) + self.parts[-1]


class _Sql:
    def __init__(self) -> None:
        self.parts: list[str] = [""]
        self.params: list[Any] = []

    def __call__(self, text: str) -> _Sql:
        self.parts[-1] += text
        return self

    def param(self, value: Any, cast: str) -> _Sql:
        self.params.append(value)
        self.parts.append(f"::{cast}")
        return self

    def done(self) -> Predicate:
        return Predicate(tuple(self.parts), tuple(self.params))


Expr = Callable[[_Sql], object]


def compile_rule(rule: Rule) -> Predicate:
    sql = _Sql()
    _rule(sql, rule)
    return sql.done()


@lru_cache(maxsize=2048)
def compiled_rules(rules_json: str, fields: tuple[FieldDefinition, ...]) -> Predicate | InvalidSegment:
    """A stored segment's predicate under the workspace's field definitions now, remembered
    per (rules, definitions); the InvalidSegment when a field it uses was removed or retyped."""
    try:
        return compile_rule(parse_rules(json.loads(rules_json), {f.key: f for f in fields}))
    except InvalidSegment as exc:
        return exc


def _rule(sql: _Sql, rule: Rule) -> None:
    match rule:
        case AllOf(rules) | AnyOf(rules):
            if not rules:
                sql("TRUE" if isinstance(rule, AllOf) else "FALSE")
                return
            joiner = " AND " if isinstance(rule, AllOf) else " OR "
            for index, inner in enumerate(rules):
                sql(joiner if index else "")("(")
                _rule(sql, inner)
                sql(")")
        case Not(inner):
            # An unknown (NULL) condition counts as false, so ``not`` is its exact complement.
            sql("NOT COALESCE((")
            _rule(sql, inner)
            sql("), FALSE)")
        case HasIdentity(kind):
            sql("EXISTS (SELECT 1 FROM identities i WHERE i.contact_id = c.id"
                " AND i.workspace_id = c.workspace_id AND i.kind = ").param(kind.value, "text")(")")
        case HasConsent(channel, purpose, status):
            sql("EXISTS (SELECT 1 FROM consents k WHERE k.contact_id = c.id"
                " AND k.workspace_id = c.workspace_id AND k.channel = ").param(channel, "text")
            sql(" AND k.purpose = ").param(purpose, "text")(" AND k.status = ").param(status, "text")(")")
        case Condition():
            _condition(sql, rule)


def _condition(sql: _Sql, rule: Condition) -> None:
    prefix, _, rest = rule.field.partition(".")
    if rule.field == "tags":
        _tags(sql, rule)
    elif prefix == "custom":
        _custom(sql, rule, rest)
    elif prefix == "company":
        _company(sql, rule, rest)
    else:
        assert rule.field in CONTACT_FIELDS, rule.field
        column = f"c.{rule.field}"
        _compare(sql, lambda s: s(column), rule)


_CASTS = {Kind.INTEGER: "bigint", Kind.NUMBER: "numeric", Kind.TIMESTAMP: "timestamptz"}
_SYMBOLS = {Op.EQ: "=", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_TEXTUAL = {Kind.TEXT, Kind.STAGE, Kind.ENUM, Kind.DATE}


def _compare(sql: _Sql, expr: Expr, rule: Condition) -> None:
    """A comparison of a scalar expression (a column, a custom value, a company attribute)."""
    op, kind, value = rule.op, rule.kind, rule.value
    cast = _CASTS.get(kind, "text")
    if isinstance(value, date) and kind is Kind.DATE:
        value = value.isoformat()  # custom dates are stored as YYYY-MM-DD, which sorts by date
    if op is Op.IS_SET or op is Op.IS_NOT_SET:
        if kind in _TEXTUAL:
            sql("COALESCE(")
            expr(sql)
            sql(", '') <> ''" if op is Op.IS_SET else ", '') = ''")
        else:
            expr(sql)
            sql(" IS NOT NULL" if op is Op.IS_SET else " IS NULL")
    elif op is Op.NE:
        expr(sql)
        sql(" IS DISTINCT FROM ").param(value, cast)
    elif op is Op.IN:
        expr(sql)
        sql(" = ANY(").param(list(value) if isinstance(value, tuple) else [value], f"{cast}[]")(")")
    elif op in _SYMBOLS:
        expr(sql)
        sql(f" {_SYMBOLS[op]} ").param(value, cast)
    elif op is Op.CONTAINS:
        sql("strpos(lower(")
        expr(sql)
        sql("), lower(").param(value, "text")(")) > 0")
    elif op is Op.STARTS_WITH:
        sql("starts_with(lower(")
        expr(sql)
        sql("), lower(").param(value, "text")("))")
    elif op is Op.WITHIN_DAYS or op is Op.OLDER_THAN_DAYS:
        expr(sql)
        sql(" >= " if op is Op.WITHIN_DAYS else " < ")
        if kind is Kind.DATE:
            sql("to_char((now() AT TIME ZONE 'UTC')::date - ").param(value, "int")(", 'YYYY-MM-DD')")
        else:
            sql("now() - make_interval(days => ").param(value, "int")(")")
    else:
        raise AssertionError(f"{op} on {kind}")


def _tags(sql: _Sql, rule: Condition) -> None:
    op, value = rule.op, rule.value
    if op is Op.IS_SET or op is Op.IS_NOT_SET:
        sql("cardinality(c.tags) > 0" if op is Op.IS_SET else "cardinality(c.tags) = 0")
        return
    values = list(value) if isinstance(value, tuple) else [value]
    sql("c.tags && " if op is Op.HAS_ANY else "c.tags @> ").param(values, "text[]")


def _custom(sql: _Sql, rule: Condition, key: str) -> None:
    kind, op = rule.kind, rule.op

    def text(s: _Sql) -> None:
        s("(c.custom ->> ").param(key, "text")(")")

    def number(s: _Sql) -> None:
        s("(CASE WHEN jsonb_typeof(c.custom -> ").param(key, "text")(") = 'number'"
          " THEN (c.custom ->> ").param(key, "text")(")::numeric END)")

    def iso_date(s: _Sql) -> None:
        s("(CASE WHEN (c.custom ->> ").param(key, "text")(") ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}'"
          " THEN left(c.custom ->> ").param(key, "text")(", 10) END)")

    if kind is Kind.MULTI_ENUM:
        if op is Op.IS_SET or op is Op.IS_NOT_SET:
            sql("COALESCE(c.custom -> ").param(key, "text")(", '[]') ")
            sql("NOT IN ('[]', 'null')" if op is Op.IS_SET else "IN ('[]', 'null')")
        elif op is Op.CONTAINS:
            sql("COALESCE(c.custom -> ").param(key, "text")(", '[]') @> ")
            sql.param(json.dumps([rule.value]), "jsonb")
        else:
            values = list(rule.value) if isinstance(rule.value, tuple) else [rule.value]
            sql("(c.custom -> ").param(key, "text")(") ")
            sql("?| " if op is Op.CONTAINS_ANY else "?& ").param(values, "text[]")
    elif kind is Kind.BOOLEAN and op is Op.EQ:
        sql("(c.custom -> ").param(key, "text")(") = ").param(json.dumps(rule.value), "jsonb")
    elif kind is Kind.BOOLEAN:
        _compare(sql, text, Condition(rule.field, Kind.TEXT, op))
    else:
        _compare(sql, {Kind.NUMBER: number, Kind.DATE: iso_date}.get(kind, text), rule)


def _company(sql: _Sql, rule: Condition, attribute: str) -> None:
    """Some linked company matches; ``ne`` and ``is_not_set`` mean that none does."""
    negative = {Op.NE: Op.EQ, Op.IS_NOT_SET: Op.IS_SET}.get(rule.op)
    op = negative or rule.op
    sql("NOT EXISTS" if negative else "EXISTS")
    sql(" (SELECT 1 FROM contact_companies cc JOIN companies co ON co.id = cc.company_id"
        " WHERE cc.contact_id = c.id AND co.workspace_id = c.workspace_id AND ")
    if rule.kind is Kind.DOMAINS:
        if op is Op.IS_SET:
            sql("cardinality(co.domains) > 0")
        else:
            values = list(rule.value) if isinstance(rule.value, tuple) else [rule.value]
            sql("co.domains && " if op is Op.IN else "co.domains @> ").param(values, "text[]")
    else:
        column = {"name": "co.name", "industry": "co.industry", "size": "co.size"}[attribute]
        _compare(sql, lambda s: s(column), Condition(rule.field, rule.kind, op, rule.value))
    sql(")")
