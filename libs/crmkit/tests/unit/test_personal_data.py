import json
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from crmkit import personal_data
from crmkit.personal_data import MAX_ITEMS, encode_part

PERSON = uuid4()


def test_a_part_is_json_with_its_records_as_stored_and_says_who_and_when() -> None:
    at = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    document = json.loads(encode_part("ticketing", "ws", [PERSON], {
        "tickets": [{"id": PERSON, "subject": "Grüße", "created_at": at, "naive": datetime(2026, 11, 2)}],
        "messages": [],
    }, exported_at=at))
    assert document == {
        "service": "ticketing", "workspace_id": "ws", "contact_ids": [str(PERSON)],
        "exported_at": "2026-11-02T09:30:00+00:00",
        "limits": {"max_items_per_section": MAX_ITEMS, "max_bytes": personal_data.MAX_PART_BYTES},
        "truncated": [],
        "tickets": [{"id": str(PERSON), "subject": "Grüße", "created_at": "2026-11-02T09:30:00+00:00",
                     "naive": "2026-11-02T00:00:00+00:00"}],
        "messages": [],
    }


def test_a_section_is_cut_at_the_item_limit_and_named_as_cut() -> None:
    document = json.loads(encode_part("ingest", "ws", [PERSON], {
        "interactions": [{"n": n} for n in range(MAX_ITEMS + 1)], "other": [{"n": 0}]}))
    assert len(document["interactions"]) == MAX_ITEMS
    assert document["truncated"] == ["interactions"]


def test_a_part_is_cut_to_its_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(personal_data, "MAX_PART_BYTES", 1024 * 1024)
    monkeypatch.setattr(personal_data, "_ENVELOPE_BYTES", 1024)
    body = "x" * 100_000
    part = encode_part("ingest", "ws", [UUID(int=1)], {
        "interactions": [{"text": body}] * 8, "more": [{"text": body}] * 8})
    document = json.loads(part)
    assert len(part) <= 1024 * 1024
    assert (len(document["interactions"]), len(document["more"])) == (8, 2)
    assert document["truncated"] == ["more"]
