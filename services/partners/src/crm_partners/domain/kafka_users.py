"""A partner's own Kafka user, as a Strimzi ``KafkaUser`` resource.

Partners who run Kafka consumers read the public topics with their own SCRAM-SHA-512 user.
Its ACLs come from the partner's enabled ``kafka`` subscriptions: Read and Describe on each
public topic one of them needs (literal names), and Read on the consumer groups named
``partner.<partner id>.*`` (a prefix), so a partner can neither read other topics nor join or
reset another partner's groups. A suspended partner keeps its user with no ACL at all. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crm_partners.domain.accounts import Partner, Subscription
from crm_partners.domain.policy import POLICIES

API_VERSION = "kafka.strimzi.io/v1"  # the version deploy/k8s uses (Strimzi 1.x serves only v1)
CLUSTER = "crm"
# Which workspace a user belongs to, so the generated folder can hold every workspace's users.
WORKSPACE_LABEL = "crm.example/workspace"


def user_name(partner: Partner) -> str:
    return f"partner-{partner.id}"


def group_prefix(partner: Partner) -> str:
    return f"partner.{partner.id}."


def topics_of(subscriptions: Iterable[Subscription]) -> list[str]:
    """The public topics the partner's enabled Kafka subscriptions read, sorted."""
    return sorted({POLICIES[event_type].topic
                   for sub in subscriptions if sub.delivery == "kafka" and sub.status == "enabled"
                   for event_type in sub.event_types if event_type in POLICIES})


def kafka_user(partner: Partner, subscriptions: Iterable[Subscription]) -> dict[str, Any]:
    acls: list[dict[str, Any]] = []
    if partner.status == "active":
        acls = [{"resource": {"type": "topic", "name": topic, "patternType": "literal"},
                 "operations": ["Read", "Describe"]}
                for topic in topics_of(s for s in subscriptions if s.partner_id == partner.id)]
        acls.append({"resource": {"type": "group", "name": group_prefix(partner), "patternType": "prefix"},
                     "operations": ["Read"]})
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaUser",
        "metadata": {
            "name": user_name(partner),
            "labels": {"strimzi.io/cluster": CLUSTER, "app.kubernetes.io/part-of": "crm",
                       WORKSPACE_LABEL: workspace_label(partner.workspace_id)},
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


def workspace_label(workspace_id: str) -> str:
    """The workspace as a Kubernetes label value: at most 63 alphanumerics, '-', '_' or '.',
    alphanumeric at both ends."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in workspace_id)[:63]
    return cleaned.strip("-_.")
