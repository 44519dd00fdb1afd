"""The Kafka topics of the platform with their partition counts: the one list that the local
provisioning, the services and the Kubernetes topic resources are made from."""

from __future__ import annotations

INGEST_RAW = "crm.ingest.raw.v1"
INTERACTIONS = "crm.interactions.v1"
CONTACTS = "crm.contacts.v1"
TICKETS = "crm.tickets.v1"
PIPELINE = "crm.pipeline.v1"
CAMPAIGNS = "crm.campaigns.v1"
OUTBOUND = "crm.outbound.v1"

PARTITIONS: dict[str, int] = {
    INGEST_RAW: 6,
    INTERACTIONS: 6,
    CONTACTS: 6,
    TICKETS: 6,
    PIPELINE: 6,
    CAMPAIGNS: 6,
    OUTBOUND: 6,
}


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> dict[str, int]:
    """Every topic with its partitions, dead-letter topics included (one partition each)."""
    topics = dict(PARTITIONS)
    topics.update({dlq(name): 1 for name in PARTITIONS})
    return topics
