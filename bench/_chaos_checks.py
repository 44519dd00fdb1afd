"""What bench/chaos.py checks once the platform has drained, read from each service's own store
(and the event stream): every accepted message stored once, on its contact's timeline once,
threaded into its conversation's one ticket, and counted once by every consumer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from _platform import Platform, open_reader, progress, table
from aiokafka import TopicPartition
from pymongo import AsyncMongoClient

from crm.ingest.v1 import events_pb2 as ingest_events
from crm_ingest.domain.events import INTERACTION_RECORDED
from crmkit.topics import INGEST_RAW, INTERACTIONS, PARTITIONS

# The consumers that apply every InteractionRecorded (their processed-event ids are counted).
INTERACTION_CONSUMERS = ("contacts.timeline", "ticketing.threading", "pipeline.activity",
                         "pipeline.activities", "campaigns.engagement")
POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Sent:
    workspace: str
    messages: list[Any]  # chaos.Message
    accepted: set[int]  # serials
    external_ids: dict[int, str]  # serial -> the provider message id (chat: the text)
    chat_visitors: dict[int, str]  # chat sender -> visitor id


@dataclass(frozen=True)
class Expected:
    conversation_of: dict[str, tuple[str, int]]  # external id -> (channel, sender)
    conversations: int  # with at least one accepted message: one ticket each

    @classmethod
    def of(cls, sent: Sent) -> Expected:
        conversation_of = {sent.external_ids[m.serial]: (m.channel, m.sender) for m in sent.messages}
        accepted = {(m.channel, m.sender) for m in sent.messages if m.serial in sent.accepted}
        return cls(conversation_of, len(accepted))


# --- the stores -----------------------------------------------------------------------------

def postgres_dsn(platform: Platform, service: str) -> str:
    parts = urlsplit(platform.infra["CRM_POSTGRES_DSN"])
    return str(urlunsplit(parts._replace(path=f"/{platform.database_prefix}{service}")))


async def pg_fetch(platform: Platform, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(postgres_dsn(platform, service), timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def mongo(platform: Platform) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(platform.infra["CRM_MONGO_URI"])


async def store_counts(platform: Platform, workspace: str) -> dict[str, int]:
    """How much each consumer has applied so far, from its store."""
    client = mongo(platform)
    try:
        ingest = client[f"{platform.database_prefix}ingest"]
        campaigns = client[f"{platform.database_prefix}campaigns"]
        stored = await ingest.interactions.count_documents({"workspace_id": workspace})
        engaged = 0
        async for doc in campaigns.contact_engagement.find({"workspace_id": workspace}):
            engaged += int(doc.get("interaction_count", 0))
    finally:
        await client.close()
    timeline = await pg_fetch(platform, "contacts", "SELECT count(*) AS n, (SELECT coalesce(sum("
                              "interaction_count), 0) FROM contacts WHERE workspace_id = $1) AS c "
                              "FROM timeline_entries WHERE workspace_id = $1 AND entry_id LIKE "
                              "'interaction:%'", workspace)
    threaded = await pg_fetch(platform, "ticketing", "SELECT count(*) AS n FROM ticket_messages "
                              "WHERE workspace_id = $1", workspace)
    activity = await pg_fetch(platform, "pipeline", "SELECT coalesce(sum(interaction_count), 0) AS n "
                              "FROM contact_activity WHERE workspace_id = $1", workspace)
    return {"ingest": stored, "timeline": timeline[0]["n"], "contacts counted": int(timeline[0]["c"]),
            "ticketing": threaded[0]["n"], "pipeline": int(activity[0]["n"]), "campaigns": engaged}


async def drained_counts(platform: Platform, workspace: str, wanted: int, settle: float,
                         timeout: float) -> dict[str, int]:
    """Wait until every store has applied ``wanted`` interactions, or its counts have not
    moved for ``settle`` seconds, or ``timeout``; returns the last counts."""
    deadline = time.perf_counter() + timeout
    last: dict[str, int] = {}
    moved = time.perf_counter()
    while True:
        try:
            counts = await store_counts(platform, workspace)
        except (OSError, asyncpg.PostgresError) as exc:  # a store not made yet
            progress(f"drain: stores not readable yet ({exc!r})")
            counts = {}
        if counts and all(value >= wanted for value in counts.values()):
            return counts
        if counts != last:
            last, moved = counts, time.perf_counter()
            progress(f"drain: {counts} of {wanted}")
        if time.perf_counter() - moved > settle or time.perf_counter() > deadline:
            progress(f"drain: gave up waiting at {counts}")
            return counts
        await asyncio.sleep(POLL_SECONDS)


async def read_topic(platform: Platform, topic: str, workspace: str) -> list[tuple[str, bytes, str]]:
    """(ce_id, value, ce_type) of every record of ``workspace`` on ``topic``, from its start to its end."""
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS[topic])]
    reader = await open_reader(platform.bootstrap, partitions)
    found: list[tuple[str, bytes, str]] = []
    try:
        ends = await reader.end_offsets(partitions)
        idle = 0  # a broker that lost records may never serve up to its end offsets
        while idle < 10 and [p for p in partitions if await reader.position(p) < ends[p]]:
            batches = await reader.getmany(timeout_ms=1000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers or ())
                    if headers.get("workspace") == workspace.encode():
                        found.append((headers.get("ce_id", b"").decode(), record.value,
                                      headers.get("ce_type", b"").decode()))
    finally:
        await reader.stop()
    return found


async def processed(platform: Platform, event_ids: set[str]) -> Counter[str]:
    """How many of ``event_ids`` each consumer recorded as applied, in every service's store."""
    counts: Counter[str] = Counter()
    ids = sorted(event_ids)
    for service in ("contacts", "ticketing", "pipeline"):
        for row in await pg_fetch(platform, service, "SELECT consumer, count(*) AS n FROM processed_events"
                                  " WHERE event_id = ANY($1::text[]) GROUP BY consumer", ids):
            counts[row["consumer"]] += row["n"]
    client = mongo(platform)
    try:
        for service in ("ingest", "campaigns"):
            database = client[f"{platform.database_prefix}{service}"]
            async for doc in database.processed_events.find({}, {"_id": 1}):
                consumer, _, event_id = str(doc["_id"]).partition(":")
                if event_id in event_ids:
                    counts[consumer] += 1
    finally:
        await client.close()
    return counts


# --- the checks -----------------------------------------------------------------------------

class Report:
    def __init__(self) -> None:
        self.rows: list[list[str]] = [["check", "expected", "found", "lost", "duplicated", "misplaced"]]
        self.failed = False

    def add(self, check: str, expected: int, found: int, lost: int, duplicated: int,
            misplaced: int = 0) -> None:
        self.rows.append([check, str(expected), str(found), str(lost), str(duplicated), str(misplaced)])
        self.failed |= bool(lost or duplicated or misplaced or expected != found)


def counter_diff(expected: Counter[str], found: Iterable[tuple[str, int]]) -> tuple[int, int, int]:
    """(sum found, counted too few, counted too often) of per-contact counters."""
    got = Counter(dict(found))
    keys = set(expected) | set(got)
    return (sum(got.values()), sum(max(0, expected[k] - got[k]) for k in keys),
            sum(max(0, got[k] - expected[k]) for k in keys))


async def verify(platform: Platform, sent: Sent, expected: Expected) -> tuple[list[str], bool]:
    ws = sent.workspace
    report = Report()
    accepted_ids = {sent.external_ids[s] for s in sent.accepted}
    client = mongo(platform)
    try:
        docs = [doc async for doc in client[f"{platform.database_prefix}ingest"].interactions.find(
            {"workspace_id": ws}, {"channel": 1, "message_id": 1, "text": 1, "contact_id": 1,
                                   "sender_kind": 1, "sender": 1})]
        campaigns = client[f"{platform.database_prefix}campaigns"]
        engagement = [(doc["contact_id"], int(doc.get("interaction_count", 0)))
                      async for doc in campaigns.contact_engagement.find({"workspace_id": ws})]
    finally:
        await client.close()

    # 1. ingest's interaction store: each accepted message once, by its provider id.
    by_external: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        by_external[doc["text"] if doc["channel"] == "chat" else doc["message_id"]].append(doc)
    stored = [by_external[x][0] for x in accepted_ids if by_external.get(x)]
    unexpected = sum(len(v) for k, v in by_external.items() if k not in accepted_ids)
    report.add("stored in ingest (by provider message id)", len(accepted_ids), len(docs),
               sum(1 for x in accepted_ids if not by_external.get(x)),
               sum(max(0, len(by_external[x]) - 1) for x in accepted_ids) + unexpected)
    contact_of = {doc["_id"]: doc["contact_id"] for doc in stored}
    conversation = {doc["_id"]: expected.conversation_of[doc["text"] if doc["channel"] == "chat"
                                                         else doc["message_id"]] for doc in stored}

    # 2. the right contact: the one that owns the sender's identity; one per conversation.
    identities = {(r["kind"], r["value"]): str(r["contact_id"]) for r in await pg_fetch(
        platform, "contacts", "SELECT kind, value, contact_id FROM identities WHERE workspace_id = $1", ws)}
    wrong = sum(1 for doc in stored
                if identities.get((doc["sender_kind"], doc["sender"])) != doc["contact_id"])
    contacts_per_conversation: dict[tuple[str, int], set[str]] = defaultdict(set)
    for interaction_id, conv in conversation.items():
        contacts_per_conversation[conv].add(contact_of[interaction_id])
    split = sum(len(c) - 1 for c in contacts_per_conversation.values())
    report.add("sender resolved to its identity's contact", len(stored), len(stored) - wrong, 0, split, wrong)

    # 3. contacts: each interaction once on its contact's timeline, and counted once.
    timeline = {r["entry_id"].removeprefix("interaction:"): str(r["contact_id"]) for r in await pg_fetch(
        platform, "contacts", "SELECT entry_id, contact_id FROM timeline_entries WHERE workspace_id = $1"
        " AND entry_id LIKE 'interaction:%'", ws)}
    report.add("on the contact's timeline (contacts)", len(stored), len(timeline),
               sum(1 for i in contact_of if i not in timeline), len(set(timeline) - set(contact_of)),
               sum(1 for i, c in contact_of.items() if i in timeline and timeline[i] != c))
    per_contact = Counter(contact_of.values())
    rows = await pg_fetch(platform, "contacts", "SELECT id, interaction_count FROM contacts"
                          " WHERE workspace_id = $1 AND interaction_count > 0", ws)
    found, few, many = counter_diff(per_contact, ((str(r["id"]), r["interaction_count"]) for r in rows))
    report.add("counted per contact (contacts.interaction_count)", len(stored), found, few, many)

    # 4. ticketing: each interaction in exactly one ticket, one ticket per conversation.
    threaded = await pg_fetch(platform, "ticketing", "SELECT m.interaction_id, m.ticket_id, t.contact_id"
                              " FROM ticket_messages m JOIN tickets t ON t.id = m.ticket_id"
                              " WHERE m.workspace_id = $1", ws)
    ticket_of = {r["interaction_id"]: (str(r["ticket_id"]), str(r["contact_id"])) for r in threaded}
    report.add("threaded into a ticket (ticketing)", len(stored), len(threaded),
               sum(1 for i in contact_of if i not in ticket_of), len(threaded) - len(ticket_of)
               + len(set(ticket_of) - set(contact_of)),
               sum(1 for i, c in contact_of.items() if i in ticket_of and ticket_of[i][1] != c))
    tickets_per_conversation: dict[tuple[str, int], set[str]] = defaultdict(set)
    conversations_per_ticket: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for interaction_id, conv in conversation.items():
        if interaction_id in ticket_of:
            tickets_per_conversation[conv].add(ticket_of[interaction_id][0])
            conversations_per_ticket[ticket_of[interaction_id][0]].add(conv)
    tickets = await pg_fetch(platform, "ticketing", "SELECT count(*) AS n, coalesce(sum(message_count), 0)"
                             " AS m FROM tickets WHERE workspace_id = $1", ws)
    report.add("tickets: one per conversation", expected.conversations, tickets[0]["n"], 0,
               sum(len(t) - 1 for t in tickets_per_conversation.values()),
               sum(len(c) - 1 for c in conversations_per_ticket.values()))
    report.add("messages counted on tickets (message_count)", len(stored), int(tickets[0]["m"]),
               max(0, len(stored) - int(tickets[0]["m"])), max(0, int(tickets[0]["m"]) - len(stored)))

    # 5. pipeline and campaigns: activity counted once per interaction of each contact.
    rows = await pg_fetch(platform, "pipeline", "SELECT contact_id, interaction_count FROM contact_activity"
                          " WHERE workspace_id = $1", ws)
    found, few, many = counter_diff(per_contact,
                                    ((str(r["contact_id"]), r["interaction_count"]) for r in rows))
    report.add("activity counted per contact (pipeline)", len(stored), found, few, many)
    found, few, many = counter_diff(per_contact, engagement)
    report.add("engagement counted per contact (campaigns)", len(stored), found, few, many)

    # 6. the event stream and every consumer's processed events.
    raw = await read_topic(platform, INGEST_RAW, ws)
    recorded = [(ce_id, ingest_events.InteractionRecorded.FromString(value).interaction.id)
                for ce_id, value, kind in await read_topic(platform, INTERACTIONS, ws)
                if kind == INTERACTION_RECORDED]
    events_of: dict[str, set[str]] = defaultdict(set)
    for ce_id, interaction_id in recorded:
        events_of[interaction_id].add(ce_id)
    event_ids = {ce_id for ce_id, _ in recorded}
    report.add("published on crm.interactions.v1 (distinct event ids)", len(stored), len(event_ids),
               sum(1 for i in contact_of if i not in events_of),
               sum(len(e) - 1 for e in events_of.values()) + len(set(events_of) - set(contact_of)))
    raw_ids = {ce_id for ce_id, _, _ in raw}
    counts = await processed(platform, event_ids | raw_ids)
    report.add(f"raw records processed (ingest.raw, {len(raw)} records)", len(raw_ids),
               counts["ingest.raw"], len(raw_ids) - counts["ingest.raw"], 0)
    for consumer in INTERACTION_CONSUMERS:
        report.add(f"processed by {consumer}", len(event_ids), counts[consumer],
                   len(event_ids) - counts[consumer], 0)
    lines = table(report.rows, right=(1, 2, 3, 4, 5))
    lost = sum(int(row[3]) for row in report.rows[1:])
    duplicated = sum(int(row[4]) for row in report.rows[1:])
    lines += ["", f"lost = {lost}, duplicated = {duplicated}, misplaced = "
                  f"{sum(int(row[5]) for row in report.rows[1:])}: {'FAILED' if report.failed else 'OK'}"]
    return lines, not report.failed
