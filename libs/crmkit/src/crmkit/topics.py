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

# The public topics partners read (published by the partners service under a declared data
# policy; JSON CloudEvents). One per domain, versioned apart from the internal topics.
PUBLIC_CONTACTS = "crm.public.contacts.v1"
PUBLIC_TICKETS = "crm.public.tickets.v1"
PUBLIC_PIPELINE = "crm.public.pipeline.v1"
PUBLIC_CAMPAIGNS = "crm.public.campaigns.v1"
PUBLIC_INTERACTIONS = "crm.public.interactions.v1"

PARTITIONS: dict[str, int] = {
    INGEST_RAW: 6,
    INTERACTIONS: 6,
    CONTACTS: 6,
    TICKETS: 6,
    PIPELINE: 6,
    CAMPAIGNS: 6,
    OUTBOUND: 6,
    PUBLIC_CONTACTS: 6,
    PUBLIC_TICKETS: 6,
    PUBLIC_PIPELINE: 6,
    PUBLIC_CAMPAIGNS: 6,
    PUBLIC_INTERACTIONS: 6,
}

PUBLIC: tuple[str, ...] = (PUBLIC_CONTACTS, PUBLIC_TICKETS, PUBLIC_PIPELINE, PUBLIC_CAMPAIGNS,
                           PUBLIC_INTERACTIONS)
# How long a topic keeps its records, in days. Partners replay public topics from the broker
# for this long (the partners service keeps its own replay store as long, see its settings);
# other topics keep the broker's default (7 days).
RETENTION_DAYS: dict[str, int] = {name: 30 for name in PUBLIC}


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> dict[str, int]:
    """Every topic with its partitions, dead-letter topics included (one partition each; the
    public topics have none: only partners read them)."""
    topics = dict(PARTITIONS)
    topics.update({dlq(name): 1 for name in PARTITIONS if name not in PUBLIC})
    return topics
