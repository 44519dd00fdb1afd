"""A campaign's fan-out to a large audience, next to the raw broker measured in the same run:
how long campaigns takes from "send" to the last OutboundMessage on ``crm.outbound.v1`` for
``--recipients`` contacts (stream the segment from contacts, render, check consent and the
suppression list, write the send documents, hand the messages to the outbound topic), and how
long the broker alone takes to take the same number of records of the same size.

    .venv/bin/python bench/campaigns_fanout.py [--recipients 1000000] [--timeout 1800] [--logs DIR]

Contacts and campaigns are started as `make dev` starts them (deploy/local/devstack.py) but
isolated (bench/_platform.py). The audience is real: ``--recipients`` contacts are loaded into
contacts' own PostgreSQL with COPY (bench/contacts_data.py, no planted duplicates), each given
consent to marketing email with one INSERT ... SELECT, and a segment over the whole workspace
is created through contacts' REST API (its full evaluation is timed apart). So campaigns reads
the audience the way it does in production, over gRPC ``StreamSegmentMemberPages`` from the
contacts process, and that stream is part of the fan-out time. Campaigns runs while the
audience is seeded, and the send waits until contacts' outbox is drained and campaigns has
consumed contacts' events (the new segment's membership events, one per member), so that the
fan-out shares the CPU with neither. Ingest is not started: the messages stay on the outbound
topic. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from _platform import (
    Platform,
    create_topic,
    machine,
    number,
    open_reader,
    per_second,
    print_log_tails,
    producer,
    progress,
    ratio,
    read_until,
    table,
)
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from contacts_data import fill
from pymongo import AsyncMongoClient

from crmkit.auth import issue_token
from crmkit.topics import CONTACTS, OUTBOUND

POLL = 0.5
SENDER_BATCH = 1000  # CAMPAIGNS_SENDER_BATCH_SIZE's default
STALL = 60.0  # seconds without a new message, once every send is written, that end the wait
TEMPLATE = {
    "name": "bench fan-out",
    "subject": "News for {{ contact.first_name | default('you') }}",
    "html": ("<p>Hello {{ contact.first_name | default('there') }},</p><p>Our autumn news: "
             "<a href=\"https://example.com/news\">read it here</a>.</p>"
             + "<p>Lorem ipsum dolor sit amet. </p>" * 8),
    "text": "Hello {{ contact.first_name | default('there') }}, our autumn news: https://example.com/news",
}


@dataclass
class Fanout:
    recipients: int
    seconds: float | None
    sends: int
    outbound: int
    first_record_after: float | None
    elapsed: float  # until the last message on the topic
    expected: int  # send documents that are not suppressed: one message each


async def seed(platform: Platform, workspace: str, recipients: int) -> tuple[str, int, float, float]:
    """Contacts with consent and a segment of them all: the segment id, its member count, the
    load and the segment's evaluation times."""
    dsn = platform.infra["CRM_POSTGRES_DSN"].rsplit("/", 1)[0] + f"/{platform.database_prefix}contacts"
    started = time.perf_counter()
    await fill(dsn, workspace, recipients, duplicate_rate=0.0)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO consents (workspace_id, contact_id, channel, purpose, status, source, at)"
            " SELECT workspace_id, id, 'email', 'marketing', 'granted', 'bench', now() FROM contacts"
            " WHERE workspace_id = $1 ON CONFLICT DO NOTHING", workspace)
        await conn.execute("ANALYZE consents")
    finally:
        await conn.close()
    loaded = time.perf_counter() - started
    token = issue_token(platform.secret, subject="bench", workspace_id=workspace, roles=["admin"])
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=platform.url("contacts"), timeout=3600,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        created = await client.post("/v1/segments", json={"name": "Everyone", "rules": {"all": []}})
        created.raise_for_status()
    evaluated = time.perf_counter() - started
    conn = await asyncpg.connect(dsn)
    try:
        members = await conn.fetchval("SELECT count(*) FROM segment_members WHERE segment_id = $1",
                                      UUID(created.json()["id"]))
        # The new segment's membership events (one per member) leave through contacts' outbox
        # relay: wait for it to drain, so that the fan-out does not share the CPU with it.
        started = time.perf_counter()
        while await conn.fetchval("SELECT count(*) FROM outbox"):  # noqa: ASYNC110 - another process
            await asyncio.sleep(1)
        progress(f"contacts' own events relayed in {time.perf_counter() - started:,.1f} s")
    finally:
        await conn.close()
    return created.json()["id"], members, loaded, evaluated


async def fanout(platform: Platform, workspace: str, segment_id: str, recipients: int,
                 timeout: float) -> Fanout:
    token = issue_token(platform.secret, subject="bench", workspace_id=workspace, roles=["admin"])
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(platform.infra["CRM_MONGO_URI"])
    sends = mongo[f"{platform.database_prefix}campaigns"].sends
    campaigns = mongo[f"{platform.database_prefix}campaigns"].campaigns
    # A plain consumer positioned at the topic's end reads every message as it comes (the end
    # offsets tansu reports were seen to lag behind the records a reader gets).
    probe = AIOKafkaConsumer(bootstrap_servers=platform.bootstrap, group_id=None)
    await probe.start()
    partitions = [TopicPartition(OUTBOUND, p) for p in sorted(await _partitions(probe))]
    await probe.stop()
    reader = await open_reader(platform.bootstrap, partitions, from_end=True)
    seen = {"count": 0, "last": time.perf_counter()}
    finished = False

    def on_record(record: ConsumerRecord[bytes, bytes], at: float) -> None:
        seen["count"] += 1
        seen["last"] = at

    reading = asyncio.create_task(read_until(reader, on_record, lambda: finished))
    try:
        async with httpx.AsyncClient(base_url=platform.url("campaigns"), timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            template = await client.post("/v1/templates", json=TEMPLATE)
            template.raise_for_status()
            campaign = await client.post("/v1/campaigns", json={
                "name": "bench fan-out", "template_id": template.json()["id"],
                "audience": {"segments": [segment_id], "exclude": []}})
            campaign.raise_for_status()
            campaign_id = campaign.json()["id"]
            started = time.perf_counter()
            sent = await client.post(f"/v1/campaigns/{campaign_id}/send",
                                     headers={"If-Match": campaign.headers.get("ETag", "*")})
            sent.raise_for_status()
        first: float | None = None
        last_report = last_count = started
        handed = 0
        expected: int | None = None  # messages to hand off: known once the campaign is sent
        while time.perf_counter() - started < timeout:
            await asyncio.sleep(POLL)
            handed, last_growth = int(seen["count"]), max(started, seen["last"])
            if handed and first is None:
                first = time.perf_counter() - started
            if expected is None and time.perf_counter() - last_count > 2:
                # Done writing when the campaign is sent. Counting the send documents on the
                # way would cost SecantusDB a scan of them all every time, taken from the run.
                last_count = time.perf_counter()
                doc = await campaigns.find_one({"_id": campaign_id}, {"status": 1})
                if doc and doc["status"] == "sent":
                    expected = await sends.count_documents(
                        {"workspace_id": workspace, "campaign_id": campaign_id,
                         "status": {"$nin": ["suppressed", "failed"]}})
            if expected is not None and (handed >= expected or time.perf_counter() - last_growth > STALL):
                break  # all handed off, or the outbox is drained and some never reached the topic
            if time.perf_counter() - last_report > 15:
                last_report = time.perf_counter()
                progress(f"  {handed:,} outbound records")
        elapsed = last_growth - started
        complete = expected is not None and handed >= expected
        written = await sends.count_documents({"workspace_id": workspace, "campaign_id": campaign_id})
        return Fanout(recipients, elapsed if complete else None, written, handed, first, elapsed,
                      expected or 0)
    finally:
        finished = True
        await asyncio.gather(reading, return_exceptions=True)
        await reader.stop()
        await mongo.close()


async def _partitions(reader: AIOKafkaConsumer) -> set[int]:
    await reader.topics()
    return reader.partitions_for_topic(OUTBOUND) or set()


async def record_size(platform: Platform, sample: int = 200) -> float:
    """The mean size (key + value + headers) of the last outbound records: the baseline's size."""
    reader = AIOKafkaConsumer(bootstrap_servers=platform.bootstrap, group_id=None)
    await reader.start()
    try:
        partitions = [TopicPartition(OUTBOUND, p) for p in sorted(await _partitions(reader))]
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        for tp, end in ends.items():
            reader.seek(tp, max(0, end - sample // len(partitions)))
        sizes: list[int] = []
        deadline = time.perf_counter() + 30
        while len(sizes) < sample and time.perf_counter() < deadline:
            for records in (await reader.getmany(timeout_ms=500)).values():
                sizes.extend(len(r.key or b"") + len(r.value or b"")
                             + sum(len(k) + len(v or b"") for k, v in (r.headers or ())) for r in records)
        return sum(sizes) / len(sizes) if sizes else 1024.0
    finally:
        await reader.stop()


async def baseline(platform: Platform, count: int, size: int, batch: int) -> float:
    """Seconds for aiokafka, with crmkit's producer settings, to have ``count`` records of
    ``size`` bytes acknowledged on a fresh 6-partition topic, sent as the sender hands a batch
    over (``batch`` at a time, every send awaited together)."""
    topic = f"bench.baseline.{platform.run_id}"
    await create_topic(platform.bootstrap, topic, 6)
    client = producer(platform.bootstrap)
    await client.start()
    try:
        value = os.urandom(max(1, size - 60))
        started = time.perf_counter()
        for offset in range(0, count, batch):
            futures = [await client.send(topic, value, key=f"bench:{n}".encode())
                       for n in range(offset, min(count, offset + batch))]
            await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await client.stop()


async def caught_up(platform: Platform, group: str, topic: str) -> float:
    """Seconds until ``group`` has committed everything ``topic`` holds now."""
    started = time.perf_counter()
    reader = AIOKafkaConsumer(bootstrap_servers=platform.bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        await reader.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        ends = await reader.end_offsets(partitions)
        while True:
            committed = {tp: await reader.committed(tp) or 0 for tp in partitions}
            if all(committed[tp] >= end for tp, end in ends.items()):
                return time.perf_counter() - started
            await asyncio.sleep(1)
    finally:
        await reader.stop()


async def benchmark(args: argparse.Namespace, platform: Platform, host: str) -> tuple[str, bool]:
    workspace = f"bench-{platform.run_id}"
    # Campaigns runs from the start, as it would in production: it consumes contacts' events
    # (one membership event per member of the new segment) while they are published.
    env = {"CAMPAIGNS_SENDER_BATCH_SIZE": str(args.batch_size)} if args.batch_size else {}
    await asyncio.to_thread(platform.start, ["campaigns"], env)
    progress(f"contacts: loading {args.recipients:,} contacts with consent (COPY), then a segment")
    segment_id, members, loaded, evaluated = await seed(platform, workspace, args.recipients)
    consumed = await caught_up(platform, platform.env["CRM_CONSUMER_GROUP_PREFIX"] + "campaigns", CONTACTS)
    progress(f"campaigns consumed contacts' events {consumed:,.1f} s after they were all published")
    progress(f"campaigns: sending to the segment ({members:,} members)")
    result = await fanout(platform, workspace, segment_id, members, args.timeout)
    size = await record_size(platform)
    progress(f"baseline: {result.outbound or members:,} records of {size:,.0f} bytes to a fresh topic")
    base = await baseline(platform, result.outbound or members, int(size), args.batch_size or SENDER_BATCH)
    rate = per_second(result.outbound, result.elapsed)  # when incomplete: the rate until the timeout
    base_rate = per_second(result.outbound or members, base)
    million = 1_000_000 / rate if rate else None
    rows = [
        ["figure", "campaigns", "broker alone", "ratio"],
        ["recipients", f"{members:,}", "", ""],
        ["send documents written", f"{result.sends:,}", "", ""],
        ["of them suppressed (no address, no consent)", f"{result.sends - result.expected:,}", "", ""],
        ["OutboundMessages on the topic", f"{result.outbound:,}", f"{result.outbound or members:,}", ""],
        ["record size (key + value + headers)", f"{size:,.0f} B", f"{size:,.0f} B", ""],
        ["send -> first message on the topic", number(result.first_record_after, "s"), "", ""],
        ["fan-out, send -> last message on the topic", number(result.seconds, "s"), number(base, "s"),
         ratio(result.seconds, base)],
        ["messages/s", number(rate, "/s"), number(base_rate, "/s"), ratio(rate, base_rate)],
        ["1M recipients at this rate", number(million, "s"),
         number(1_000_000 / base_rate if base_rate else None, "s"), ""],
        ["target: 1M within 600 s", "met" if million and million <= 600 else "NOT met", "", ""],
    ]
    lines = [
        f"campaign fan-out: {host}",
        f"servers: {platform.servers()}",
        f"contacts loaded with consent in {loaded:,.1f} s; the segment evaluated in {evaluated:,.1f} s "
        "(neither is part of the fan-out)",
        "",
        *table(rows, right=(1, 2, 3)),
    ]
    complete = result.seconds is not None
    if not complete:
        lines.append(f"INCOMPLETE: {result.outbound:,} of {result.expected or members:,} messages on the "
                     f"topic (timeout {args.timeout:,.0f} s; rates are until the last message seen)")
    return "\n".join(lines), complete


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=0,
                        help="CAMPAIGNS_SENDER_BATCH_SIZE (recipients per transaction); 0: the default")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the fan-out")
    parser.add_argument("--logs", type=Path, default=None,
                        help="copy the services' logs here at the end")
    args = parser.parse_args()
    host = machine()
    platform = Platform(keep_logs=args.logs)
    try:
        with platform:
            progress("starting contacts")
            platform.start(["contacts"])
            text, complete = asyncio.run(benchmark(args, platform, host))
            print(text, flush=True)
            if not complete:
                print_log_tails(platform.stack.log_dir)
            return 0 if complete else 1
    except platform.devstack.InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
