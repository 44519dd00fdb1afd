"""Lead scoring's rules: decay, caps, rounding, explanations, thresholds and the model's
validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_pipeline.domain.errors import InvalidFields
from crm_pipeline.domain.scoring import (
    Behaviour,
    BehaviourEvent,
    ContactAttributes,
    crossed,
    model_to_dict,
    parse_model,
    rounded,
    score,
    worth_telling,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def model(*rules: dict[str, Any], **extra: Any) -> Any:
    return parse_model({"rules": list(rules), **extra}, version=1)


def event(n: int, kind: str, days_ago: float) -> BehaviourEvent:
    return BehaviourEvent(f"e{n}", Behaviour(kind), NOW - timedelta(days=days_ago))


def opens(**extra: Any) -> dict[str, Any]:
    return {"id": "opens", "kind": "behaviour", "event": "email_opened", "points": 10, **extra}


def test_an_event_is_worth_half_its_points_after_one_half_life_and_a_quarter_after_two() -> None:
    scoring = model(opens(half_life_days=7))
    assert score(scoring, None, [event(1, "email_opened", 0)], NOW).value == Decimal("10.00")
    assert score(scoring, None, [event(1, "email_opened", 7)], NOW).value == Decimal("5.00")
    assert score(scoring, None, [event(1, "email_opened", 14)], NOW).value == Decimal("2.50")


def test_without_a_half_life_events_never_fade_and_future_events_count_as_new() -> None:
    assert score(model(opens()), None, [event(1, "email_opened", 400)], NOW).value == Decimal("10.00")
    future = [event(1, "email_opened", -3)]
    assert score(model(opens(half_life_days=1)), None, future, NOW).value == Decimal("10.00")


def test_a_cap_bounds_a_rules_sum_and_says_so() -> None:
    result = score(model(opens(cap=25)), None, [event(n, "email_opened", 0) for n in range(4)], NOW)
    assert result.value == Decimal("25.00")
    (only,) = result.contributions
    assert (only.points, only.capped, only.event_count) == (Decimal("25.00"), True, 4)


def test_a_cap_bounds_negative_rules_too() -> None:
    rule = {"id": "tickets", "kind": "behaviour", "event": "ticket_opened", "points": -5, "cap": 12}
    result = score(model(rule), None, [event(n, "ticket_opened", 0) for n in range(5)], NOW)
    assert result.value == Decimal("-12.00")


def test_contributions_are_rounded_half_up_once_and_the_score_is_their_sum() -> None:
    # 1/3 of a point each: the rule's exact sum 1.0 is rounded once, not 0.33 three times.
    rule = {"id": "thirds", "kind": "behaviour", "event": "chat_message", "points": 1, "half_life_days": 1}
    third_days = 1.584962500721156  # log2(3): 0.5 ** (that) == 1/3
    result = score(model(rule), None, [event(n, "chat_message", third_days) for n in range(3)], NOW)
    assert result.value == Decimal("1.00")
    assert [e.points for e in result.contributions[0].events] == [Decimal("0.33")] * 3
    assert rounded(0.125) == Decimal("0.13")  # half up, not to even
    assert rounded(-0.001) == Decimal("0.00")
    assert str(rounded(-0.001)) == "0.00"


def test_the_same_events_in_any_order_give_the_same_score() -> None:
    rule = opens(half_life_days=3)
    events = [event(n, "email_opened", n * 0.37) for n in range(30)]
    first = score(model(rule), None, events, NOW)
    assert score(model(rule), None, list(reversed(events)), NOW) == first


def test_the_explanation_lists_each_rule_heaviest_first_with_its_heaviest_events() -> None:
    scoring = model(
        {"id": "is-lead", "kind": "attribute", "field": "lifecycle_stage", "op": "equals", "value": "Lead",
         "points": 5},
        opens(half_life_days=10),
        {"id": "orders", "kind": "behaviour", "event": "order_placed", "points": 30},
        {"id": "never", "kind": "behaviour", "event": "page_visit", "points": 1},
    )
    events = [event(1, "email_opened", 10), event(2, "email_opened", 0), event(3, "order_placed", 100)]
    result = score(scoring, ContactAttributes(lifecycle_stage="lead"), events, NOW)
    assert [(c.rule_id, c.points) for c in result.contributions] == [
        ("orders", Decimal("30.00")), ("opens", Decimal("15.00")), ("is-lead", Decimal("5.00"))]
    assert result.value == Decimal("50.00")
    assert [(e.event_id, e.points) for e in result.contributions[1].events] == [
        ("e2", Decimal("10.00")), ("e1", Decimal("5.00"))]


def test_attribute_rules_match_lists_custom_fields_and_numbers() -> None:
    contact = ContactAttributes(lifecycle_stage="mql", tags=("vip", "beta"), companies=("c-1",),
                                custom_fields={"employees": 750, "plan": "pro", "empty": ""})

    def gives(field: str, op: str, value: Any = None) -> bool:
        rule: dict[str, Any] = {"id": "r", "kind": "attribute", "field": field, "op": op, "points": 1}
        if op != "exists":
            rule["value"] = value
        return score(model(rule), contact, [], NOW).value == Decimal("1.00")

    assert gives("tags", "equals", "VIP")
    assert not gives("tags", "equals", "gold")
    assert gives("tags", "in", ["gold", "beta"])
    assert gives("companies", "exists")
    assert not gives("owner_id", "exists")
    assert not gives("custom_fields.empty", "exists")
    assert gives("custom_fields.employees", "gte", 500)
    assert not gives("custom_fields.employees", "gte", 1000)
    assert not gives("custom_fields.plan", "gte", 1)  # not a number: no match
    assert gives("custom_fields.employees", "equals", 750.0)
    assert gives("lifecycle_stage", "in", ["lead", "mql"])
    assert not gives("custom_fields.missing", "equals", "x")


def test_without_a_snapshot_of_the_contact_no_attribute_rule_matches() -> None:
    rule = {"id": "any", "kind": "attribute", "field": "lifecycle_stage", "op": "exists", "points": 3}
    assert score(model(rule), None, [], NOW).value == Decimal("0.00")


def test_max_score_caps_the_total() -> None:
    result = score(model(opens(), max_score=25), None, [event(n, "email_opened", 0) for n in range(3)], NOW)
    assert (result.value, result.capped) == (Decimal("25.00"), True)


def test_a_change_is_news_from_one_point_or_across_a_threshold() -> None:
    thresholds = [Decimal(50)]
    assert not worth_telling(Decimal("10"), Decimal("10.99"), thresholds, Decimal(1))
    assert worth_telling(Decimal("10"), Decimal("11"), thresholds, Decimal(1))
    assert worth_telling(Decimal("49.5"), Decimal("50"), thresholds, Decimal(1))
    assert worth_telling(Decimal("50"), Decimal("49.99"), thresholds, Decimal(1))
    assert not worth_telling(Decimal("50"), Decimal("50.5"), thresholds, Decimal(1))
    assert crossed(Decimal(10), Decimal(90), [Decimal(80), Decimal(50)]) == [Decimal(50), Decimal(80)]
    assert crossed(Decimal(90), Decimal(10), [Decimal(80), Decimal(50)]) == [Decimal(80), Decimal(50)]


def test_a_model_survives_its_json_form() -> None:
    raw = {"rules": [
        {"id": "a", "kind": "attribute", "field": "tags", "op": "in", "value": ["x", "y"], "points": 2.5},
        {"id": "b", "kind": "attribute", "field": "companies", "op": "exists", "points": 1},
        {"id": "c", "kind": "behaviour", "event": "email_clicked", "points": 4, "cap": 40,
         "half_life_days": 7},
    ], "thresholds": [80, 50], "max_score": 100}
    parsed = parse_model(raw)
    assert parse_model(model_to_dict(parsed)) == parsed
    assert parsed.thresholds == (Decimal(50), Decimal(80))


def test_a_bad_model_names_every_bad_rule_and_field() -> None:
    raw = {"rules": [
        {"id": "ok", "kind": "behaviour", "event": "email_opened", "points": 1},
        {"id": "ok", "kind": "behaviour", "event": "fax_sent", "points": "many", "cap": -1},
        {"id": "g", "kind": "attribute", "field": "shoe_size", "op": "gte", "value": "big", "points": 1},
        {"id": "h", "kind": "attribute", "field": "tags", "op": "exists", "value": "x", "points": 1.001},
        {"kind": "magic"},
        "not a rule",
    ], "thresholds": ["high"], "colour": "red"}
    with pytest.raises(InvalidFields) as caught:
        parse_model(raw)
    fields = {e.field for e in caught.value.errors}
    assert fields == {
        "rules[1].event", "rules[1].points", "rules[1].cap",
        "rules[2].field", "rules[2].value",
        "rules[3].value", "rules[3].points",
        "rules[4].id", "rules[4].points", "rules[4].kind",
        "rules[5]", "thresholds[0]", "colour",
    }


def test_two_rules_with_one_id_are_refused() -> None:
    with pytest.raises(InvalidFields) as caught:
        parse_model({"rules": [opens(), opens()]})
    assert [e.field for e in caught.value.errors] == ["rules[1].id"]
