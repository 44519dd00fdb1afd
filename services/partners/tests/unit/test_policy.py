"""The data policy: every field of every public payload is classified, and personal data is
hashed or left out."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest
from google.protobuf.descriptor import FieldDescriptor

from crm.common.v1 import common_pb2
from crm.contacts.v1 import contacts_pb2
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ingest.v1 import interaction_pb2
from crm.pipeline.v1 import events_pb2 as pipeline_events
from crm.ticketing.v1 import events_pb2 as ticket_events
from crm.ticketing.v1 import ticketing_pb2
from crm_partners.domain.policy import (
    CONTACT_ERASED,
    DOMAINS,
    POLICIES,
    EventPolicy,
    PolicyError,
    Rule,
    hash_value,
    is_nested,
    problems,
    project,
    published_fields,
    walk,
)
from crmkit.topics import PUBLIC

KEY = b"workspace key"
WS = "ws-1"


def _digest(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


def _unclassified(policy: EventPolicy) -> list[str]:
    """An independent walk of the descriptor: every leaf needs a rule, unless an ancestor is omitted."""
    missing = []
    for path, f in walk(policy.descriptor):
        parts = path.split(".")
        if any(policy.rules.get(".".join(parts[:i])) is Rule.OMIT for i in range(1, len(parts))):
            continue
        if not is_nested(f) and path not in policy.rules:
            missing.append(path)
    return missing


@pytest.mark.parametrize("event_type", sorted(POLICIES))
def test_every_field_of_every_public_payload_is_classified(event_type: str) -> None:
    policy = POLICIES[event_type]
    assert _unclassified(policy) == []
    assert problems(policy) == []


def test_a_new_field_without_a_rule_is_caught() -> None:
    policy = POLICIES["crm.pipeline.deal.won.v1"]
    rules = {path: rule for path, rule in policy.rules.items() if path != "deal.title"}
    weakened = replace(policy, rules=rules)
    assert "deal.title: not classified" in problems(weakened)
    assert "deal.title" in _unclassified(weakened)


def test_a_rule_for_a_field_that_does_not_exist_or_cannot_be_hashed_is_caught() -> None:
    policy = POLICIES["crm.pipeline.deal.won.v1"]
    rules = {**policy.rules, "deal.nickname": Rule.PUBLISH, "deal.amount_minor": Rule.HASH}
    broken = replace(policy, rules=rules)
    found = problems(broken)
    assert "deal.nickname: no such field" in found
    assert "deal.amount_minor: only strings can be hashed" in found


def test_personal_fields_are_never_published_in_clear() -> None:
    """Names, addresses, bodies and subjects are hashed or omitted wherever they occur."""
    personal = {"display_name", "first_name", "last_name", "text", "quoted_text", "sender_name", "comment",
                "note", "close_note", "title", "subject", "url", "error", "value"}
    for policy in POLICIES.values():
        for path, f in walk(policy.descriptor):
            if f.name in personal and f.type == FieldDescriptor.TYPE_STRING:
                assert policy.rules.get(path) in (Rule.HASH, Rule.OMIT, None), (policy.type, path)


def test_every_public_topic_has_events_and_every_domain_is_a_topic() -> None:
    assert {p.topic for p in POLICIES.values()} == set(PUBLIC)
    assert set(DOMAINS) == {"contacts", "tickets", "pipeline", "campaigns", "interactions"}


def _won() -> pipeline_events.DealWon:
    deal = pipeline_events.Deal(
        id="d1", workspace_id=WS, pipeline_id="p1", stage_id="s9", title="Renewal for Ann Smith",
        amount_minor=150_000,
        currency="EUR", owner_id="user-7", contact_id="c1", status=pipeline_events.DEAL_STATUS_WON,
        close_note="Ann said yes", tags=["vip"],
        participants=[pipeline_events.DealParticipant(contact_id="c2", role="champion")])
    deal.closed_at.FromJsonString("2026-01-15T09:30:00Z")
    deal.custom_fields.update({"spouse": "Bob"})
    return pipeline_events.DealWon(deal=deal, reason_id="r1", reason="Price", note="off the record",
                                   actor="ann@example.com")


def test_a_won_deal_is_projected_with_the_policy_applied() -> None:
    projected = project(POLICIES["crm.pipeline.deal.won.v1"], _won().SerializeToString(), WS, KEY)
    data = projected.data
    # The deal's fields are at the top level, beside the event's own.
    assert data["id"] == "d1"
    assert data["pipeline_id"] == "p1"
    assert data["reason"] == "Price"
    assert data["amount_minor"] == "150000"
    assert data["currency"] == "EUR"
    assert data["status"] == "DEAL_STATUS_WON"
    assert data["closed_at"] == "2026-01-15T09:30:00Z"
    assert data["participants"] == [{"contact_id": "c2", "role": "champion"}]
    assert data["owner_id"] == _digest("user-7")
    assert data["actor"] == _digest("ann@example.com")
    for gone in ("title", "close_note", "custom_fields", "note", "deal"):
        assert gone not in data
    assert "Ann" not in str(data)
    assert "Bob" not in str(data)
    assert projected.contact_ids == ("c1", "c2")


def test_hashing_normalises_and_depends_on_the_workspace_key() -> None:
    assert hash_value(KEY, "  Ann@Example.COM ") == _digest("ann@example.com")
    assert hash_value(b"another workspace", "ann@example.com") != _digest("ann@example.com")
    assert hash_value(KEY, "") == ""


def test_a_contacts_identities_keep_their_kind_and_hash_their_value() -> None:
    contact = contacts_pb2.Contact(
        id="c1", workspace_id=WS, display_name="Ann Smith", first_name="Ann", last_name="Smith",
        lifecycle_stage="lead", tags=["vip"],
        identities=[common_pb2.Identity(kind=common_pb2.IDENTITY_KIND_EMAIL, value="Ann@Example.com")],
        companies=[contacts_pb2.CompanyLink(company_id="co1", name="Acme", role="CTO")])
    payload = contacts_events.ContactUpdated(contact=contact, changed=["first_name"]).SerializeToString()
    projected = project(POLICIES["crm.contacts.contact.updated.v1"], payload, WS, KEY)
    data = projected.data
    assert data["identities"] == [{"kind": "IDENTITY_KIND_EMAIL", "value": _digest("ann@example.com")}]
    assert data["first_name"] == _digest("ann")
    assert data["display_name"] == _digest("ann smith")
    assert data["companies"] == [{"company_id": "co1", "name": "Acme", "role": "CTO"}]
    assert data["changed"] == ["first_name"]
    assert data["lifecycle_stage"] == "lead"
    assert projected.contact_ids == ("c1",)


def test_an_interaction_is_published_without_its_content() -> None:
    item = interaction_pb2.Interaction(
        id="i1", workspace_id=WS, contact_id="c1", channel=common_pb2.CHANNEL_EMAIL,
        direction=interaction_pb2.DIRECTION_INBOUND, subject="My divorce", text="Dear support...",
        sender=common_pb2.Identity(kind=common_pb2.IDENTITY_KIND_EMAIL, value="ann@example.com"),
        sender_name="Ann", metadata={"chat": "42"})
    item.occurred_at.FromJsonString("2026-01-15T09:30:00Z")
    payload = ingest_events.InteractionRecorded(interaction=item).SerializeToString()
    data = project(POLICIES["crm.interactions.interaction.recorded.v1"], payload, WS, KEY).data
    assert data["channel"] == "CHANNEL_EMAIL"
    assert data["direction"] == "DIRECTION_INBOUND"
    assert data["occurred_at"] == "2026-01-15T09:30:00Z"
    assert data["contact_id"] == "c1"
    assert data["sender"] == {"kind": "IDENTITY_KIND_EMAIL", "value": _digest("ann@example.com")}
    for gone in ("subject", "text", "sender_name", "metadata", "thread", "media", "attachments"):
        assert gone not in data


def test_a_ticket_event_leaves_out_its_subject_and_hashes_its_agent() -> None:
    ticket = ticketing_pb2.Ticket(id="t1", workspace_id=WS, contact_id="c1", subject="Refund for Ann")
    fields = ticket_events.TicketFields(assignee="agent@example.com", team_id="team-1")
    payload = ticket_events.TicketAssigned(ticket=ticket, fields=fields, assignee="agent@example.com",
                                           team_id="team-1", reason="manual").SerializeToString()
    data = project(POLICIES["crm.tickets.ticket.assigned.v1"], payload, WS, KEY).data
    assert "subject" not in data
    assert data["id"] == "t1"
    assert data["team_id"] == "team-1"
    assert data["assignee"] == _digest("agent@example.com")
    assert data["fields"]["assignee"] == _digest("agent@example.com")
    assert "custom_fields" not in data["fields"]


def test_a_payload_of_another_workspace_or_not_the_declared_message_is_refused() -> None:
    policy = POLICIES["crm.pipeline.deal.won.v1"]
    with pytest.raises(PolicyError):
        project(policy, _won().SerializeToString(), "another-ws", KEY)
    with pytest.raises(PolicyError):
        project(policy, b"\xff\xff\xff", WS, KEY)


def test_published_fields_name_what_a_filter_may_use() -> None:
    won = published_fields("crm.pipeline.deal.won.v1")
    assert {"pipeline_id", "stage_id", "amount_minor", "reason_id", "owner_id"} <= won
    assert not {"title", "deal", "note", "custom_fields"} & won
    assert published_fields(CONTACT_ERASED) == {"contact_id", "erased_at"}
    assert published_fields("crm.pipeline.deal.rotting.v1") == frozenset()
