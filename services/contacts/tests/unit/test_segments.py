"""The segment rule language: parsing, validation with precise paths, and compilation to SQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm_contacts.domain.fields import Entity
from crm_contacts.domain.model import IdentityKind
from crm_contacts.domain.segments import (
    MAX_DEPTH,
    MAX_RULES,
    AllOf,
    AnyOf,
    Condition,
    HasConsent,
    HasIdentity,
    InvalidSegment,
    Kind,
    Not,
    Op,
    parse_rules,
    validate_name,
)
from crm_contacts.store.segment_sql import Predicate, compile_rule, compiled_rules
from crmkit.fields import FieldDefinition, FieldType

FIELDS = {
    f.key: f for f in (
        FieldDefinition(Entity.CONTACT, "plan", "Plan", FieldType.ENUM, ("free", "pro")),
        FieldDefinition(Entity.CONTACT, "seats", "Seats", FieldType.NUMBER),
        FieldDefinition(Entity.CONTACT, "renewal", "Renewal", FieldType.DATE),
        FieldDefinition(Entity.CONTACT, "topics", "Topics", FieldType.MULTI_ENUM, ("ai", "crm", "web")),
        FieldDefinition(Entity.CONTACT, "vip", "VIP", FieldType.BOOLEAN),
        FieldDefinition(Entity.CONTACT, "nickname", "Nickname", FieldType.TEXT),
    )
}


def errors_of(raw: Any, fields: dict[str, FieldDefinition] = FIELDS) -> dict[str, str]:
    with pytest.raises(InvalidSegment) as caught:
        parse_rules(raw, fields)
    return {e.path: e.message for e in caught.value.errors}


def sql_of(raw: Any) -> Predicate:
    return compile_rule(parse_rules(raw, FIELDS))


def test_a_tree_of_every_node_kind_parses_into_the_model() -> None:
    rule = parse_rules({"all": [
        {"field": "lifecycle_stage", "op": "in", "value": ["lead", "customer"]},
        {"any": [{"has_identity": "whatsapp"},
                 {"consent": {"channel": "email", "purpose": "marketing", "status": "granted"}}]},
        {"not": {"field": "tags", "op": "has", "value": "churned"}},
        {"field": "custom.seats", "op": "gte", "value": 10},
        {"field": "last_seen_at", "op": "within_days", "value": 30},
    ]}, FIELDS)
    assert rule == AllOf((
        Condition("lifecycle_stage", Kind.STAGE, Op.IN, ("lead", "customer")),
        AnyOf((HasIdentity(IdentityKind.WHATSAPP), HasConsent("email", "marketing", "granted"))),
        Not(Condition("tags", Kind.TAGS, Op.HAS, "churned")),
        Condition("custom.seats", Kind.NUMBER, Op.GTE, Decimal(10)),
        Condition("last_seen_at", Kind.TIMESTAMP, Op.WITHIN_DAYS, 30),
    ))


def test_values_take_the_type_of_their_field() -> None:
    rule = parse_rules({"all": [
        {"field": "created_at", "op": "gte", "value": "2026-01-31"},
        {"field": "updated_at", "op": "lt", "value": "2026-02-01T10:00:00+02:00"},
        {"field": "custom.renewal", "op": "lte", "value": "2026-03-01"},
        {"field": "company.domain", "op": "eq", "value": " Acme.COM "},
        {"field": "tags", "op": "has_any", "value": [" VIP ", "vip", "Beta"]},
    ]}, FIELDS)
    assert isinstance(rule, AllOf)
    assert [c.value for c in rule.rules if isinstance(c, Condition)] == [
        datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 1, 8, tzinfo=UTC), date(2026, 3, 1), "acme.com",
        ("vip", "beta"),
    ]


@pytest.mark.parametrize(("raw", "path", "needle"), [
    ({"all": [{"field": "first_name", "op": "eq", "value": "a"}, {"field": "nope", "op": "eq", "value": 1}]},
     "rules.all[1].field", "unknown field"),
    ({"all": [{}, {}, {"field": "first_name", "op": "like", "value": "a"}]}, "rules.all[2].op",
     "unknown operator"),
    ({"field": "created_at", "op": "contains", "value": "x"}, "rules.op", "does not apply to a timestamp"),
    ({"field": "tags", "op": "eq", "value": "x"}, "rules.op", "has, has_all, has_any"),
    ({"any": [{"field": "interaction_count", "op": "in", "value": [1, "two"]}]},
     "rules.any[0].value[1]", "whole number"),
    ({"field": "lifecycle_stage", "op": "eq", "value": "prospect"}, "rules.value", "not an option"),
    ({"field": "custom.plan", "op": "eq", "value": "gold"}, "rules.value", "free, pro"),
    ({"field": "custom.missing", "op": "eq", "value": "x"}, "rules.field", "no custom contact field"),
    ({"field": "custom.vip", "op": "eq", "value": "yes"}, "rules.value", "true or false"),
    ({"field": "custom.seats", "op": "gt", "value": 1e300}, "rules.value", "number"),
    ({"field": "last_seen_at", "op": "is_set", "value": True}, "rules.value", "takes no value"),
    ({"field": "last_seen_at", "op": "within_days", "value": 0}, "rules.value", "days"),
    ({"field": "last_seen_at", "op": "gt", "value": "2026-01-31T10:00:00"}, "rules.value", "zone"),
    ({"field": "first_name", "op": "eq"}, "rules.value", "required"),
    ({"field": "first_name", "value": "a"}, "rules.op", "required"),
    ({"field": "first_name", "op": "eq", "value": "a\x00b"}, "rules.value", "string"),
    ({"field": "first_name", "op": "in", "value": ["ok", "\ud800"]}, "rules.value[1]", "string"),
    ({"field": "first_name", "op": "eq", "value": "a", "extra": 1}, "rules.extra", "unknown key"),
    ({"all": [], "any": []}, "rules.any", "unexpected key"),
    ({"any": []}, "rules.any", "at least one"),
    ({"all": {"field": "first_name"}}, "rules.all", "list of rules"),
    ({"not": [1]}, "rules.not", "expected an object"),
    ({"has_identity": "pigeon"}, "rules.has_identity", "identity kind"),
    ({"consent": {"channel": "email", "purpose": "marketing", "status": "maybe"}},
     "rules.consent.status", "granted"),
    ({"consent": {"channel": "Email!", "purpose": "marketing"}}, "rules.consent.channel", "lowercase"),
    ({"field": "company.revenue", "op": "gt", "value": 1}, "rules.field", "unknown field"),
    ({"field": "tags", "op": "has_any", "value": []}, "rules.value", "list of 1 to"),
    ([], "rules", "expected an object"),
    ({"something": 1}, "rules", "expected one of the keys"),
])
def test_invalid_rules_are_refused_naming_the_place(raw: Any, path: str, needle: str) -> None:
    errors = errors_of(raw)
    assert path in errors, errors
    assert needle in errors[path]


def test_every_problem_is_reported_at_once() -> None:
    errors = errors_of({"any": [
        {"field": "nope", "op": "eq", "value": 1},
        {"field": "first_name", "op": "eq", "value": "ok"},
        {"field": "interaction_count", "op": "gt", "value": "3"},
    ]})
    assert set(errors) == {"rules.any[0].field", "rules.any[2].value"}


def test_nesting_and_size_are_limited() -> None:
    deep: dict[str, Any] = {"field": "first_name", "op": "is_set"}
    for _ in range(MAX_DEPTH):
        deep = {"not": deep}
    assert "nest at most" in " ".join(errors_of(deep).values())
    wide = {"any": [{"field": "first_name", "op": "is_set"}] * (MAX_RULES + 50)}
    [(path, message)] = errors_of(wide).items()
    assert path == f"rules.any[{MAX_RULES - 1}]"
    assert "at most" in message


def test_a_custom_field_of_another_entity_is_not_a_contact_field() -> None:
    company_field = {"size": FieldDefinition(Entity.COMPANY, "size", "Size", FieldType.NUMBER)}
    assert "rules.field" in errors_of({"field": "custom.size", "op": "gt", "value": 1}, company_field)


def test_names_are_one_to_two_hundred_printable_characters() -> None:
    assert validate_name("  VIPs ") == "VIPs"
    for bad in ("", "   ", "x" * 201, "tab\there", "lone \udc00"):
        with pytest.raises(InvalidSegment) as caught:
            validate_name(bad)
        assert caught.value.errors[0].path == "name"


def test_values_are_parameters_never_sql_text() -> None:
    hostile = "x'); DROP TABLE contacts; --"
    predicate = sql_of({"all": [{"field": "first_name", "op": "contains", "value": hostile},
                                {"field": "custom.nickname", "op": "eq", "value": hostile}]})
    text = predicate.render()
    assert hostile not in text
    assert hostile in predicate.params
    assert "nickname" not in text  # even custom field keys are parameters
    assert text.count("$") == len(predicate.params)


def test_a_predicate_renders_its_parameters_from_any_position() -> None:
    predicate = sql_of({"all": [{"field": "first_name", "op": "eq", "value": "Ada"},
                                {"field": "interaction_count", "op": "gte", "value": 3}]})
    assert predicate.render(5) == "(c.first_name = $5::text) AND (c.interaction_count >= $6::bigint)"
    assert predicate.params == ("Ada", 3)


@pytest.mark.parametrize(("raw", "sql", "params"), [
    ({"field": "owner_id", "op": "ne", "value": "u1"}, "c.owner_id IS DISTINCT FROM $1::text", ("u1",)),
    ({"field": "lifecycle_stage", "op": "in", "value": ["lead", "mql"]},
     "c.lifecycle_stage = ANY($1::text[])", (["lead", "mql"],)),
    ({"field": "display_name", "op": "starts_with", "value": "Ad"},
     "starts_with(lower(c.display_name), lower($1::text))", ("Ad",)),
    ({"field": "first_name", "op": "is_not_set"}, "COALESCE(c.first_name, '') = ''", ()),
    ({"field": "last_seen_at", "op": "older_than_days", "value": 90},
     "c.last_seen_at < now() - make_interval(days => $1::int)", (90,)),
    ({"field": "last_seen_at", "op": "is_set"}, "c.last_seen_at IS NOT NULL", ()),
    ({"field": "tags", "op": "has_all", "value": ["a", "b"]}, "c.tags @> $1::text[]", (["a", "b"],)),
    ({"field": "tags", "op": "has_any", "value": ["a"]}, "c.tags && $1::text[]", (["a"],)),
    ({"has_identity": "email"}, "i.kind = $1::text)", ("email",)),
    ({"field": "custom.topics", "op": "contains", "value": "ai"}, "@> $2::jsonb", ("topics", '["ai"]')),
    ({"field": "custom.topics", "op": "contains_any", "value": ["ai", "web"]}, "?| $2::text[]",
     ("topics", ["ai", "web"])),
    ({"field": "custom.vip", "op": "eq", "value": True}, "(c.custom -> $1::text) = $2::jsonb",
     ("vip", "true")),
    ({"field": "custom.seats", "op": "gt", "value": 2.5}, "::numeric END) > $3::numeric",
     ("seats", "seats", Decimal("2.5"))),
    ({"field": "custom.renewal", "op": "within_days", "value": 7}, "to_char((now() AT TIME ZONE 'UTC')::date",
     ("renewal", "renewal", 7)),
    ({"field": "company.industry", "op": "ne", "value": "retail"}, "NOT EXISTS", ("retail",)),
    ({"field": "company.domain", "op": "in", "value": ["a.com"]}, "co.domains && $1::text[]", (["a.com"],)),
])
def test_each_leaf_compiles_to_its_sql(raw: Any, sql: str, params: tuple[Any, ...]) -> None:
    predicate = sql_of(raw)
    assert sql in predicate.render()
    assert predicate.params == params


def test_not_treats_an_unknown_condition_as_false() -> None:
    predicate = sql_of({"not": {"field": "owner_id", "op": "contains", "value": "x"}})
    assert predicate.render().startswith("NOT COALESCE((")


def test_empty_all_matches_everyone() -> None:
    assert sql_of({"all": []}).render() == "TRUE"


def test_stored_rules_compile_once_and_go_invalid_when_their_field_is_removed() -> None:
    rules = json.dumps({"field": "custom.plan", "op": "eq", "value": "pro"})
    fields = tuple(FIELDS.values())
    first = compiled_rules(rules, fields)
    assert isinstance(first, Predicate)
    assert compiled_rules(rules, fields) is first
    without_plan = tuple(f for f in fields if f.key != "plan")
    assert isinstance(compiled_rules(rules, without_plan), InvalidSegment)
