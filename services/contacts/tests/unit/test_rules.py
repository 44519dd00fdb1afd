from datetime import UTC, datetime
from uuid import uuid4

import pytest

from crm_contacts.domain.errors import FieldError
from crm_contacts.domain.fields import Entity
from crm_contacts.domain.model import Contact, Identity, IdentityKind, LifecycleStage, normalise_phone
from crm_contacts.domain.rules import merge_choices, merged_identities, merged_values, validate_changes
from crm_contacts.service.contacts import search_query
from crmkit.fields import FieldDefinition, FieldType, parse_text_value, validate_custom

PLAN = FieldDefinition(Entity.CONTACT, "plan", "Plan", FieldType.ENUM, ("free", "pro"))
SEATS = FieldDefinition(Entity.CONTACT, "seats", "Seats", FieldType.NUMBER)
TOPICS = FieldDefinition(Entity.CONTACT, "topics", "Topics", FieldType.MULTI_ENUM, ("api", "billing"))
DEFINED = {d.key: d for d in (PLAN, SEATS, TOPICS)}


def test_phone_numbers_become_e164_national_ones_with_a_region() -> None:
    assert normalise_phone("+1 (415) 555-2671") == "+14155552671"
    assert normalise_phone("020 7946 0958", "gb") == "+442079460958"
    assert normalise_phone("020 7946 0958") is None
    assert normalise_phone("call me") is None


def test_custom_values_are_checked_against_their_type() -> None:
    clean, errors = validate_custom(DEFINED, {"plan": "pro", "seats": 3.5, "topics": ["api", "api"]})
    assert clean == {"plan": "pro", "seats": 3.5, "topics": ["api"]}
    assert errors == []
    _, errors = validate_custom(DEFINED, {"plan": "gold", "seats": True, "topics": "api", "x": 1})
    assert [e.field for e in errors] == [
        "custom_fields.plan",
        "custom_fields.seats",
        "custom_fields.topics",
        "custom_fields.x",
    ]


@pytest.mark.parametrize(
    ("definition", "text", "value"),
    [
        (SEATS, " 12 ", 12),
        (SEATS, "2.5", 2.5),
        (TOPICS, "api| billing", ["api", "billing"]),
        (FieldDefinition(Entity.CONTACT, "vip", "VIP", FieldType.BOOLEAN), "Yes", True),
    ],
)
def test_csv_cells_are_read_as_their_type(definition: FieldDefinition, text: str, value: object) -> None:
    assert parse_text_value(definition, text) == value


def test_a_write_collects_every_error_with_its_path() -> None:
    changes, errors = validate_changes(
        {
            "emails": ["ok@example.com", "nope"],
            "identities": [{"kind": "email", "value": "x@example.com"}, {"kind": "telegram", "value": "tg"}],
            "tags": ["Good", "bad!tag"],
            "lifecycle_stage": "customer",
        },
        DEFINED,
    )
    assert errors == [
        FieldError("tags[1]", "letters, digits, space . : / - _; at most 64"),
        FieldError("emails[1]", "not an email address"),
        FieldError("identities[0].kind", "emails and phones have fields of their own"),
    ]
    assert changes.lifecycle_stage is LifecycleStage.CUSTOMER
    assert changes.identities["identities"] == (Identity(IdentityKind.TELEGRAM, "tg"),)


def test_a_group_of_identities_replaces_only_its_kinds() -> None:
    current = (Identity(IdentityKind.EMAIL, "a@example.com"), Identity(IdentityKind.TELEGRAM, "t"))
    changes, _ = validate_changes({"emails": ["b@example.com"]}, {})
    assert merged_identities(current, changes) == [
        Identity(IdentityKind.TELEGRAM, "t"),
        Identity(IdentityKind.EMAIL, "b@example.com"),
    ]


def contact(**fields: object) -> Contact:
    base: dict[str, object] = {
        "id": uuid4(),
        "workspace_id": "w",
        "display_name": "",
        "identities": (),
        "created_at": datetime.now(UTC),
        "last_seen_at": None,
    }
    return Contact(**{**base, **fields})  # type: ignore[arg-type]


def test_a_merge_takes_chosen_sides_fills_gaps_and_unions_tags_and_custom_fields() -> None:
    survivor = contact(first_name="Sam", last_name="", tags=("a",), custom={"plan": "free"})
    loser = contact(
        first_name="Samuel",
        last_name="Jones",
        tags=("b",),
        custom={"plan": "pro", "seats": 3},
        owner_id="u-2",
    )
    values = merged_values(survivor, loser, {"custom_fields.plan": "loser"})
    assert (values["first_name"], values["last_name"], values["owner_id"]) == ("Sam", "Jones", "u-2")
    assert values["tags"] == ("a", "b")
    assert values["custom"] == {"plan": "pro", "seats": 3}
    _, errors = merge_choices({"emails": "loser", "first_name": "both"})
    assert [e.field for e in errors] == ["fields.emails", "fields.first_name"]


def test_search_words_match_prefixes_and_phone_numbers_their_digits() -> None:
    assert search_query("Xia.Chen@mail") == "xia:* & chen:* & mail:*"
    assert search_query("+33 1 23 45 67 89") == "33123456789:*"
    assert search_query("  ;; ") is None
