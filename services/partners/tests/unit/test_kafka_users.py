"""A partner's Strimzi KafkaUser: topics from its enabled kafka subscriptions, its group prefix."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from crm_partners.domain.accounts import Delivery, Partner, Subscription, SubscriptionStatus
from crm_partners.domain.kafka_users import kafka_user

NOW = datetime.now(UTC)
PARTNER = Partner(uuid4(), "ws-1", "Acme", "", "active", 1, NOW, NOW)


def sub(*types: str, delivery: Delivery = "kafka", status: SubscriptionStatus = "enabled",
        partner: Partner = PARTNER) -> Subscription:
    return Subscription(uuid4(), "ws-1", partner.id, "s", types, delivery,
                        url="https://example.com/hook" if delivery == "webhook" else None, status=status)


def acls(user: dict[str, Any]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"],
             tuple(a["operations"])) for a in user["spec"]["authorization"]["acls"]]


def test_the_resource_is_a_strimzi_scram_user_of_the_crm_cluster() -> None:
    user = kafka_user(PARTNER, [])
    assert user["apiVersion"] == "kafka.strimzi.io/v1"
    assert user["kind"] == "KafkaUser"
    assert user["metadata"]["name"] == f"partner-{PARTNER.id}"
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "crm"
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert user["spec"]["authorization"]["type"] == "simple"


def test_read_and_describe_on_each_topic_of_its_kafka_subscriptions_and_its_group_prefix() -> None:
    user = kafka_user(PARTNER, [
        sub("crm.pipeline.deal.won.v1", "crm.pipeline.deal.lost.v1"),
        sub("crm.contacts.contact.erased.v1", "crm.pipeline.deal.created.v1"),
    ])
    assert acls(user) == [
        ("topic", "crm.public.contacts.v1", "literal", ("Read", "Describe")),
        ("topic", "crm.public.pipeline.v1", "literal", ("Read", "Describe")),
        ("group", f"partner.{PARTNER.id}.", "prefix", ("Read",)),
    ]


def test_only_enabled_kafka_subscriptions_of_this_partner_give_topics() -> None:
    other = Partner(uuid4(), "ws-1", "Other", "", "active", 1, NOW, NOW)
    user = kafka_user(PARTNER, [
        sub("crm.tickets.ticket.created.v1", delivery="webhook"),
        sub("crm.campaigns.message.sent.v1", delivery="pull"),
        sub("crm.contacts.contact.created.v1", status="disabled"),
        sub("crm.interactions.interaction.recorded.v1", partner=other),
    ])
    assert acls(user) == [("group", f"partner.{PARTNER.id}.", "prefix", ("Read",))]


def test_a_suspended_partner_has_no_acl() -> None:
    suspended = Partner(PARTNER.id, "ws-1", "Acme", "", "suspended", 2, NOW, NOW)
    assert acls(kafka_user(suspended, [sub("crm.pipeline.deal.won.v1")])) == []
