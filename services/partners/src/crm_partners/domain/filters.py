"""Subscription filters: which of the chosen event types a subscription receives.

A filter is a flat JSON object of equality conditions on top-level fields of an event's public
``data`` (what the data policy publishes): ``{"pipeline_id": "p1"}`` keeps the events whose
``pipeline_id`` is ``p1``; a list is any-of: ``{"status": ["won", "lost"]}``. A field whose
value is itself a list (``tags``) matches when one of its items does. Conditions are ANDed.
A condition applies only to the event types that publish its field, so one subscription can
take ``deal.won`` in one pipeline and every ``contact.erased``; a field that none of the
subscription's types publish is a mistake (422), never a filter that silently drops everything.
Pure: the published fields come from the data policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_partners.domain.model import PublicEvent
from crm_partners.domain.policy import published_fields

MAX_CONDITIONS = 20
MAX_CHOICES = 100
MAX_TEXT = 500

Scalar = str | int | float | bool


class FilterError(ValueError):
    """A filter that cannot be applied: unknown field, wrong type, bad operator."""


def parse_filters(raw: Mapping[str, Any], event_types: list[str]) -> dict[str, Any]:
    """The filters, checked against the fields the event types publish: scalars stay scalars,
    lists lose duplicates. Raises FilterError with the first reason found."""
    if not isinstance(raw, Mapping):
        raise FilterError("filters must be a JSON object of field: value")
    if len(raw) > MAX_CONDITIONS:
        raise FilterError(f"at most {MAX_CONDITIONS} conditions")
    fields: set[str] = set()
    for event_type in event_types:
        fields |= published_fields(event_type)
    parsed: dict[str, Any] = {}
    for field, value in raw.items():
        if field not in fields:
            raise FilterError(f"no chosen event type publishes the field {field!r}")
        parsed[field] = _value(field, value)
    return parsed


def _value(field: str, value: Any) -> Scalar | list[Scalar]:
    if isinstance(value, list):
        if not value or len(value) > MAX_CHOICES:
            raise FilterError(f"{field}: a list needs between 1 and {MAX_CHOICES} values")
        choices: list[Scalar] = []
        for item in value:
            checked = _scalar(field, item)
            if not any(_equal(checked, seen) for seen in choices):
                choices.append(checked)
        return choices
    return _scalar(field, value)


def _scalar(field: str, value: Any) -> Scalar:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FilterError(f"{field}: numbers must be finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise FilterError(f"{field}: strings are at most {MAX_TEXT} characters")
        return value
    raise FilterError(f"{field}: only equality on a string, number or boolean, or a list of them")


def matches(filters: Mapping[str, Any], event: PublicEvent) -> bool:
    """Whether the event passes every condition on a field its type publishes."""
    if not filters:
        return True
    fields = published_fields(event.type)
    for field, wanted in filters.items():
        if field not in fields:
            continue
        found = event.data.get(field)
        values = found if isinstance(found, list) else [found]
        choices = wanted if isinstance(wanted, list) else [wanted]
        if not any(_equal(value, choice) for value in values for choice in choices):
            return False
    return True


def _equal(found: Any, wanted: Any) -> bool:
    """JSON equality: true is not 1, and 1 is 1.0."""
    if isinstance(found, bool) or isinstance(wanted, bool):
        return isinstance(found, bool) and isinstance(wanted, bool) and found == wanted
    if isinstance(found, int | float) and isinstance(wanted, int | float):
        return found == wanted
    return type(found) is type(wanted) and bool(found == wanted)
