"""Subscription filters: equality and any-of on the fields the chosen event types publish."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crm_partners.domain.filters import FilterError, matches, parse_filters
from crm_partners.domain.model import PublicEvent

WON = "crm.pipeline.deal.won.v1"
ERASED = "crm.contacts.contact.erased.v1"


def event(type_: str, **data: Any) -> PublicEvent:
    return PublicEvent(id="e1", workspace_id="ws", topic="crm.public.pipeline.v1", type=type_,
                       source="/crm/pipeline", subject="d1", key="ws:d1", time=datetime.now(UTC), data=data)


def test_no_filters_match_everything() -> None:
    assert parse_filters({}, [WON]) == {}
    assert matches({}, event(WON, pipeline_id="p1"))


def test_equality_on_a_published_field() -> None:
    filters = parse_filters({"pipeline_id": "p1"}, [WON])
    assert matches(filters, event(WON, pipeline_id="p1"))
    assert not matches(filters, event(WON, pipeline_id="p2"))
    assert not matches(filters, event(WON))


def test_a_list_is_any_of_and_conditions_are_anded() -> None:
    filters = parse_filters({"pipeline_id": ["p1", "p2", "p1"], "currency": "EUR"}, [WON])
    assert filters == {"pipeline_id": ["p1", "p2"], "currency": "EUR"}
    assert matches(filters, event(WON, pipeline_id="p2", currency="EUR"))
    assert not matches(filters, event(WON, pipeline_id="p2", currency="USD"))
    assert not matches(filters, event(WON, pipeline_id="p3", currency="EUR"))


def test_a_list_valued_field_matches_when_one_of_its_items_does() -> None:
    filters = parse_filters({"tags": ["vip", "enterprise"]}, [WON])
    assert matches(filters, event(WON, tags=["new", "vip"]))
    assert not matches(filters, event(WON, tags=["new"]))
    assert not matches(filters, event(WON, tags=[]))


def test_a_condition_applies_only_to_the_types_that_publish_its_field() -> None:
    filters = parse_filters({"pipeline_id": "p1"}, [WON, ERASED])
    assert matches(filters, event(ERASED, contact_id="c1", erased_at="2026-01-01T00:00:00+00:00"))
    assert not matches(filters, event(WON, pipeline_id="p2"))


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    assert matches(parse_filters({"probability": 100}, [WON]), event(WON, probability=100.0))
    assert not matches(parse_filters({"probability": 1}, [WON]), event(WON, probability=True))
    assert not matches(parse_filters({"probability": True}, [WON]), event(WON, probability=1))
    assert not matches(parse_filters({"version": "1"}, [WON]), event(WON, version=1))


@pytest.mark.parametrize(("raw", "reason"), [
    ({"nothing_publishes_this": "x"}, "publishes the field"),
    ({"pipeline_id": None}, "only equality"),
    ({"pipeline_id": {"$ne": "p1"}}, "only equality"),
    ({"pipeline_id": [["p1"]]}, "only equality"),
    ({"pipeline_id": []}, "between 1 and"),
    ({"pipeline_id": ["p"] * 101}, "between 1 and"),
    ({"pipeline_id": "x" * 501}, "at most 500"),
    ({"amount_minor": float("nan")}, "finite"),
    ({f"f{i}": 1 for i in range(21)}, "at most 20"),
])
def test_bad_filters_are_refused_with_a_reason(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(FilterError, match=reason):
        parse_filters(raw, [WON])


def test_a_field_of_an_event_type_not_chosen_is_refused() -> None:
    with pytest.raises(FilterError, match="erased_at"):
        parse_filters({"erased_at": "x"}, [WON])
    assert parse_filters({"erased_at": "x"}, [WON, ERASED]) == {"erased_at": "x"}


def test_unknown_event_types_publish_nothing() -> None:
    with pytest.raises(FilterError):
        parse_filters({"pipeline_id": "p1"}, ["crm.nothing.v1"])
