"""Saved views' pure rules: filters and view fields checked, every bad field named at once;
and the reports' ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from crm_ticketing.domain.errors import InvalidFields
from crm_ticketing.domain.model import TicketPriority, TicketStatus
from crm_ticketing.domain.views import TicketFilter, parse_filter, parse_view
from crm_ticketing.service.reports import report_range


def fields_of(call: Any, *args: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(InvalidFields) as caught:
        call(*args, **kwargs)
    return [e.field for e in caught.value.errors]


def test_a_full_filter_parses_and_round_trips_through_its_stored_form() -> None:
    raw = {"status": ["open", "new", "open"], "priority": "urgent", "channel": ["email", "chat"],
           "type": ["incident"], "tags": {"all": ["VIP", " refund "]}, "assignee": "me",
           "team_id": "unassigned", "contact_id": "0190d2a0-0000-7000-8000-000000000001",
           "created": {"from": "2026-01-01T00:00:00+00:00", "to": "2026-02-01T00:00:00Z"},
           "updated": {"from": "2026-01-15T00:00:00+01:00"}}
    found = parse_filter(raw)
    assert found.status == (TicketStatus.OPEN, TicketStatus.NEW)
    assert found.priority == (TicketPriority.URGENT,)
    assert found.tags_all == ("vip", "refund")
    assert (found.assignee, found.team_id) == ("me", "unassigned")
    assert found.contact_id == UUID("0190d2a0-0000-7000-8000-000000000001")
    assert found.created_to == datetime(2026, 2, 1, tzinfo=UTC)
    assert found.updated_to is None
    assert parse_filter(found.as_json()) == found
    assert parse_filter({}) == TicketFilter()


def test_every_bad_filter_is_named_at_once() -> None:
    raw = {"status": ["open", "done"], "priority": 3, "channel": ["fax"], "type": ["bug"],
           "tags": {"some": ["x"]}, "assignee": "two words", "team_id": "me", "contact_id": "nope",
           "created": {"from": "yesterday"}, "updated": {"from": "2026-02-01T00:00:00Z",
                                                         "to": "2026-01-01T00:00:00Z"},
           "colour": "red"}
    assert sorted(fields_of(parse_filter, raw)) == sorted([
        "filters.colour", "filters.status", "filters.priority", "filters.channel", "filters.type",
        "filters.tags", "filters.assignee", "filters.team_id", "filters.contact_id", "filters.created.from",
        "filters.updated.from"])


@pytest.mark.parametrize(("raw", "field"), [
    ({"tags": {"any": []}}, "filters.tags.any"),
    ({"tags": {"any": ["a b"]}}, "filters.tags.any"),
    ({"tags": {"all": ["a"], "any": ["b"]}}, "filters.tags"),
    ({"created": {"from": "2026-01-01T00:00:00"}}, "filters.created.from"),  # no zone
    ({"created": {}}, "filters.created"),
    ({"status": ["open"] * 51}, "filters.status"),
])
def test_edge_filters(raw: dict[str, Any], field: str) -> None:
    assert fields_of(parse_filter, raw) == [field]


def test_query_parameters_are_named_without_a_prefix() -> None:
    assert fields_of(parse_filter, {"status": ["nope"]}, prefix="") == ["status"]


def test_a_view_needs_a_name_to_be_created_and_names_every_bad_field() -> None:
    spec = parse_view({"name": "  Mine ", "filters": {"status": ["open"]}}, creating=True)
    assert (spec.name, spec.shared, spec.sort) == ("Mine", None, None)
    assert spec.filters == TicketFilter(status=(TicketStatus.OPEN,))
    assert fields_of(parse_view, {}, creating=True) == ["name"]
    assert parse_view({"shared": True}, creating=False).shared is True
    assert sorted(fields_of(parse_view, {"name": "", "shared": "yes", "sort": "priority", "owner": "x",
                                         "filters": {"status": "closed!"}}, creating=False)) == [
        "filters.status", "name", "owner", "shared", "sort"]
    assert fields_of(parse_view, ["not", "an", "object"], creating=True) == ["body"]


def test_report_ranges_default_to_30_days_and_refuse_reversed_or_long_ones() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    span = report_range(None, None, now)
    assert (span.start, span.end) == (now - timedelta(days=30), now)
    assert fields_of(report_range, now, now - timedelta(seconds=1), now) == ["from"]
    assert fields_of(report_range, now - timedelta(days=732), now, now) == ["from"]
    assert report_range(now - timedelta(days=731), now, now).start == now - timedelta(days=731)
    assert fields_of(report_range, datetime(2026, 1, 1), None, now) == ["from"]
