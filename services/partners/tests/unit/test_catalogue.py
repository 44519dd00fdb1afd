"""The event catalogue: a valid AsyncAPI 3.0 document, committed as generated, with examples
that match their schemas, and a compatibility check that fails on breaking changes only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from crm_partners.catalogue import BASELINE, DOCUMENT, render
from crm_partners.domain.catalogue import asyncapi, breaking_changes, payload_schema
from crm_partners.domain.policy import CONTACT_ERASED, POLICIES
from crmkit.topics import PUBLIC, RETENTION_DAYS

SCHEMA = Path(__file__).resolve().parents[4] / "docs" / "events" / "schema" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_the_document_is_valid_asyncapi_3(validator: jsonschema.Draft7Validator) -> None:
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(asyncapi())]
    assert errors == []


def test_the_official_schema_does_reject_a_broken_document(validator: jsonschema.Draft7Validator) -> None:
    broken = asyncapi()
    broken["channels"]["crm.public.pipeline.v1"]["address"] = 42
    del broken["info"]["title"]
    assert len(list(validator.iter_errors(broken))) >= 2


def test_the_committed_document_is_the_generated_one() -> None:
    assert DOCUMENT.read_text() == render(asyncapi()), "run: python -m crm_partners.catalogue"


def test_the_catalogue_does_not_break_the_published_contract() -> None:
    assert breaking_changes(json.loads(BASELINE.read_text()), asyncapi()) == []


def test_every_public_topic_and_event_type_is_described_with_its_retention() -> None:
    document = asyncapi()
    assert set(document["channels"]) == set(PUBLIC)
    assert set(document["components"]["messages"]) == set(POLICIES)
    for topic in PUBLIC:
        channel = document["channels"][topic]
        retention = channel["bindings"]["kafka"]["topicConfiguration"]["retention.ms"]
        assert retention == RETENTION_DAYS[topic] * 86_400_000
        # Every topic tells its readers about erasures.
        assert CONTACT_ERASED in channel["messages"]


@pytest.mark.parametrize("event_type", sorted(POLICIES))
def test_each_example_matches_its_payload_schema(event_type: str) -> None:
    message = asyncapi()["components"]["messages"][event_type]
    example = message["examples"][0]["payload"]
    jsonschema.validate(example, message["payload"])
    assert example.keys() == message["payload"]["properties"].keys()


def test_hashed_fields_are_marked_in_the_schema() -> None:
    schema = payload_schema(POLICIES["crm.contacts.contact.created.v1"])["properties"]
    assert schema["first_name"]["x-crm-policy"] == "hash"
    assert schema["identities"]["items"]["properties"]["value"]["x-crm-policy"] == "hash"
    assert schema["lifecycle_stage"]["x-crm-policy"] == "publish"
    assert "custom_fields" not in schema


def _payload(document: dict[str, Any], event_type: str) -> dict[str, Any]:
    payload: dict[str, Any] = document["components"]["messages"][event_type]["payload"]
    return payload


def test_additions_are_compatible() -> None:
    old = asyncapi()
    new = copy.deepcopy(old)
    _payload(new, "crm.pipeline.deal.won.v1")["properties"]["new_field"] = {"type": "string"}
    new["components"]["messages"]["crm.pipeline.deal.new.v1"] = {"payload": {"type": "object"}}
    assert breaking_changes(old, new) == []


@pytest.mark.parametrize("change", ["field removed", "type changed", "hashed now published",
                                    "enum value removed", "event type removed", "topic removed"])
def test_breaking_changes_are_found(change: str) -> None:
    old = asyncapi()
    new = copy.deepcopy(old)
    won = _payload(new, "crm.pipeline.deal.won.v1")["properties"]
    if change == "field removed":
        del won["pipeline_id"]
    elif change == "type changed":
        won["probability"] = {"type": "string", "x-crm-policy": "publish"}
    elif change == "hashed now published":
        won["owner_id"] = {"type": "string", "x-crm-policy": "publish"}
    elif change == "enum value removed":
        won["status"]["enum"].remove("DEAL_STATUS_LOST")
    elif change == "event type removed":
        del new["components"]["messages"]["crm.pipeline.deal.won.v1"]
        del new["channels"]["crm.public.pipeline.v1"]["messages"]["crm.pipeline.deal.won.v1"]
    else:
        del new["channels"]["crm.public.pipeline.v1"]
    assert breaking_changes(old, new) != []
