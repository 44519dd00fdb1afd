"""Ingest end to end: how fast inbound emails are accepted, become interactions on
crm.interactions.v1 and open tickets on crm.tickets.v1, next to the raw rate of the broker
underneath, both measured in the same run.

    .venv/bin/python bench/ingest_e2e.py [-n 2000] [--concurrency 32] [--timeout 300]

The platform is started as `make dev` starts it (deploy/local/devstack.py), but isolated: its
own data folder, free loopback ports, a random JWT secret, and its own database and
consumer-group prefixes. Everything it started is stopped, and its data removed, at the end.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import httpx
from _platform import (
    Platform,
    create_topic,
    machine,
    number,
    open_reader,
    per_second,
    percentile_ms,
    print_log_tails,
    producer,
    progress,
    ratio,
    read_until,
    run_concurrently,
    table,
    wait_for_reader,
)
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ticketing.v1 import events_pb2 as ticketing_events
from crm_ingest.domain.events import INTERACTION_RECORDED
from crm_ticketing.domain.events import TICKET_CREATED
from crmkit.auth import issue_token
from crmkit.topics import INTERACTIONS, PARTITIONS, TICKETS

SENDERS = 200  # distinct senders, so most emails resolve to a contact that already exists
BASELINE_PARTITIONS = PARTITIONS[INTERACTIONS]  # the same shape as the platform's topics
HTTP_TIMEOUT = 30.0


# --- figures ---------------------------------------------------------------------------------

@dataclass
class BrokerFigures:
    """aiokafka against the same broker: the baseline."""

    records: int
    produced: int = 0
    produce_seconds: float = 0.0
    ack_latencies: list[float] = field(default_factory=list)
    tailed: int = 0
    tail_seconds: float = 0.0  # first send -> last record read by the consumer started before
    tail_latencies: list[float] = field(default_factory=list)
    cold_read: int = 0
    cold_read_seconds: float = 0.0  # a fresh consumer reading back what is stored


@dataclass
class PlatformFigures:
    emails: int
    accepted: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    post_seconds: float = 0.0  # first POST sent -> last answer
    accept_latencies: list[float] = field(default_factory=list)
    interactions: int = 0
    interactions_seconds: float = 0.0  # first POST sent -> last interaction read
    interaction_latencies: list[float] = field(default_factory=list)
    tickets: int = 0
    tickets_seconds: float = 0.0  # first POST sent -> last ticket read
    ticket_latencies: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.interactions == self.emails and self.tickets == self.emails


# --- the baseline: aiokafka on the same broker ------------------------------------------------

async def measure_broker(bootstrap: str, records: int, record_size: int, concurrency: int,
                         timeout: float) -> BrokerFigures:
    """Produce ``records`` to a fresh topic (acks=all, ``concurrency`` sends awaiting their ack,
    like the HTTP load) while a consumer started first reads them; then read them all back
    with a fresh consumer."""
    figures = BrokerFigures(records)
    topic = f"bench.baseline.{secrets.token_hex(4)}"
    partitions = await create_topic(bootstrap, topic, BASELINE_PARTITIONS)
    value = os.urandom(record_size)
    sent_at: dict[bytes, float] = {}
    read_at: dict[bytes, float] = {}

    def tail(record: ConsumerRecord, now: float) -> None:
        read_at.setdefault(record.key, now)

    sender = producer(bootstrap)
    tail_reader = await open_reader(bootstrap, partitions)
    await sender.start()
    try:
        reader = asyncio.create_task(read_until(tail_reader, tail, lambda: len(read_at) >= records))

        async def send(index: int) -> None:
            key = str(index).encode()
            start = sent_at[key] = time.perf_counter()
            await (await sender.send(topic, value=value, key=key))
            figures.ack_latencies.append(time.perf_counter() - start)

        first_send = time.perf_counter()
        await run_concurrently(records, concurrency, send, first_send + timeout)
        figures.produced = len(figures.ack_latencies)
        figures.produce_seconds = time.perf_counter() - first_send
        await wait_for_reader(reader, time.perf_counter() + timeout,
                              lambda: f"{len(read_at)}/{records} baseline records read")
    finally:
        await sender.stop()
        await tail_reader.stop()
    figures.tailed = len(read_at)
    figures.tail_seconds = max(read_at.values(), default=first_send) - first_send
    figures.tail_latencies = [read_at[key] - sent_at[key] for key in read_at if key in sent_at]

    cold: set[bytes] = set()
    cold_reader = await open_reader(bootstrap, partitions)
    try:
        start = time.perf_counter()
        reader = asyncio.create_task(read_until(
            cold_reader, lambda record, _: cold.add(record.key), lambda: len(cold) >= figures.produced))
        await wait_for_reader(reader, start + timeout, lambda: f"{len(cold)} records read back")
        figures.cold_read_seconds = time.perf_counter() - start
    finally:
        await cold_reader.stop()
    figures.cold_read = len(cold)
    return figures


# --- the platform -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Email:
    message_id: str  # as ingest stores it: without the angle brackets
    raw: bytes


def make_emails(run_id: str, count: int) -> list[Email]:
    """``count`` distinct new messages (no In-Reply-To: each one opens a ticket) from at most
    SENDERS senders, about 1 KB each."""
    now = format_datetime(datetime.now(UTC))
    body = "\n".join(f"Line {n} of a benchmark message about an order that needs some help."
                     for n in range(1, 12))
    emails = []
    for index in range(count):
        sender = index % SENDERS
        message_id = f"bench-{run_id}-{index}@bench.example"
        message = EmailMessage()
        message["From"] = f"Bench Sender {sender} <sender{sender}@bench.example>"
        message["To"] = "support@acme.example"
        message["Subject"] = f"Benchmark message {index}"
        message["Message-ID"] = f"<{message_id}>"
        message["Date"] = now
        message.set_content(body)
        emails.append(Email(message_id, message.as_bytes()))
    return emails


@dataclass
class Downstream:
    """What the observer read of this run's workspace on crm.interactions.v1 and crm.tickets.v1."""

    workspace: bytes
    wanted: set[str]
    interaction_at: dict[str, float] = field(default_factory=dict)  # message id -> read at
    message_of: dict[str, str] = field(default_factory=dict)  # interaction id -> message id
    ticket_at: dict[str, float] = field(default_factory=dict)  # interaction id -> read at

    def on_record(self, record: ConsumerRecord, now: float) -> None:
        headers = dict(record.headers or ())
        if headers.get("workspace") != self.workspace:
            return
        event_type = headers.get("ce_type", b"").decode()
        if record.topic == INTERACTIONS and event_type == INTERACTION_RECORDED:
            interaction = ingest_events.InteractionRecorded.FromString(record.value).interaction
            if interaction.thread.message_id in self.wanted:
                self.interaction_at.setdefault(interaction.thread.message_id, now)
                self.message_of[interaction.id] = interaction.thread.message_id
        elif record.topic == TICKETS and event_type == TICKET_CREATED:
            created = ticketing_events.TicketCreated.FromString(record.value)
            self.ticket_at.setdefault(created.interaction_id, now)

    def done(self) -> bool:
        return len(self.interaction_at) >= len(self.wanted) and len(self.ticket_at) >= len(self.wanted)

    def status(self) -> str:
        return (f"{len(self.interaction_at)}/{len(self.wanted)} interactions, "
                f"{len(self.ticket_at)}/{len(self.wanted)} tickets")


async def measure_platform(bootstrap: str, ingest_url: str, token: str, workspace: str,
                           emails: list[Email], concurrency: int, timeout: float) -> PlatformFigures:
    """POST every email with ``concurrency`` requests in flight while an observer, started
    first, reads crm.interactions.v1 and crm.tickets.v1 from their beginning."""
    figures = PlatformFigures(len(emails))
    downstream = Downstream(workspace.encode(), {e.message_id for e in emails})
    posted_at: dict[str, float] = {}
    partitions = [TopicPartition(topic, p) for topic in (INTERACTIONS, TICKETS)
                  for p in range(PARTITIONS[topic])]
    observer = await open_reader(bootstrap, partitions)
    try:
        reader = asyncio.create_task(read_until(observer, downstream.on_record, downstream.done))
        client = httpx.AsyncClient(
            base_url=ingest_url, timeout=HTTP_TIMEOUT, trust_env=False,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"},
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        async with client:
            async def post(index: int) -> None:
                email = emails[index]
                start = posted_at[email.message_id] = time.perf_counter()
                response = None
                for attempt in (1, 2):  # a dropped connection is retried once, as a provider would
                    try:
                        response = await client.post("/v1/channels/email/inbound", content=email.raw)
                        break
                    except httpx.TransportError as exc:
                        figures.errors[f"{type(exc).__name__} (attempt {attempt})"] += 1
                if response is not None and response.status_code == 202:
                    figures.accept_latencies.append(time.perf_counter() - start)
                    return
                if response is not None:
                    figures.errors[f"HTTP {response.status_code}"] += 1
                downstream.wanted.discard(email.message_id)  # never accepted: not waited for

            first_post = time.perf_counter()
            await run_concurrently(len(emails), concurrency, post, first_post + timeout)
            figures.post_seconds = time.perf_counter() - first_post
        figures.accepted = len(figures.accept_latencies)
        progress(f"{figures.accepted}/{len(emails)} accepted in {figures.post_seconds:.1f}s; "
                 f"so far {downstream.status()}")
        await wait_for_reader(reader, time.perf_counter() + timeout, downstream.status)
    finally:
        await observer.stop()

    interaction_at, ticket_at = downstream.interaction_at, downstream.ticket_at
    figures.interactions = len(interaction_at)
    figures.interactions_seconds = max(interaction_at.values(), default=first_post) - first_post
    figures.interaction_latencies = [at - posted_at[m] for m, at in interaction_at.items()]
    figures.tickets = len(ticket_at)
    figures.tickets_seconds = max(ticket_at.values(), default=first_post) - first_post
    figures.ticket_latencies = [at - posted_at[downstream.message_of[i]] for i, at in ticket_at.items()
                                if i in downstream.message_of]
    return figures


# --- the report -------------------------------------------------------------------------------

def report(args: argparse.Namespace, host: str, servers: str, record_size: int,
           broker: BrokerFigures, figures: PlatformFigures) -> str:
    def rate_row(label: str, count: int, seconds: float, baseline: tuple[str, int, float]) -> list[str]:
        ours, theirs = per_second(count, seconds), per_second(baseline[1], baseline[2])
        return [label, number(ours, "/s"), baseline[0], number(theirs, "/s"), ratio(ours, theirs)]

    def latency_rows(label: str, latencies: list[float],
                     baseline: tuple[str, list[float]]) -> list[list[str]]:
        rows: list[list[str]] = []
        for q in (50, 99):
            ours, theirs = percentile_ms(latencies, q), percentile_ms(baseline[1], q)
            rows.append([f"{label} p{q}", number(ours, "ms"), f"{baseline[0]} p{q}",
                         number(theirs, "ms"), ratio(ours, theirs)])
        return rows

    produce = ("produce, acks=all", broker.produced, broker.produce_seconds)
    tail = ("produce -> consume", broker.tailed, broker.tail_seconds)
    rows = [
        ["platform", "", "baseline (aiokafka, same broker)", "", "platform/baseline"],
        rate_row("accepted (POST -> 202)", figures.accepted, figures.post_seconds, produce),
        *latency_rows("accept latency", figures.accept_latencies, ("ack latency", broker.ack_latencies)),
        rate_row("interactions end to end", figures.interactions, figures.interactions_seconds, tail),
        rate_row("interactions end to end (through ticketing)", figures.tickets,
                 figures.tickets_seconds, tail),
        *latency_rows("POST -> crm.interactions.v1", figures.interaction_latencies,
                      ("send -> read", broker.tail_latencies)),
        *latency_rows("POST -> crm.tickets.v1", figures.ticket_latencies,
                      ("send -> read", broker.tail_latencies)),
        ["first POST -> last interaction", number(figures.interactions_seconds, "s"),
         "first send -> last read", number(broker.tail_seconds, "s"),
         ratio(figures.interactions_seconds, broker.tail_seconds)],
        ["first POST -> last ticket", number(figures.tickets_seconds, "s"),
         "first send -> last read", number(broker.tail_seconds, "s"),
         ratio(figures.tickets_seconds, broker.tail_seconds)],
        ["", "", "consume (fresh consumer, stored records)",
         number(per_second(broker.cold_read, broker.cold_read_seconds), "/s"), ""],
    ]
    lines = [
        "",
        f"ingest end to end: {figures.emails} emails from {min(SENDERS, figures.emails)} senders, "
        f"{args.concurrency} requests in flight, ~{record_size} bytes each",
        f"machine: {host}",
        f"servers: {servers} (all on this machine, with the five services)",
        "",
    ]
    lines += table(rows, right=(1, 3, 4))
    errors = ", ".join(f"{name}: {count}" for name, count in figures.errors.most_common()) or "none"
    lines += [
        "",
        f"accepted {figures.accepted}/{figures.emails} (errors: {errors}); "
        f"interactions {figures.interactions}/{figures.emails}; tickets {figures.tickets}/{figures.emails}",
        f"baseline: produced {broker.produced}/{broker.records} with {args.concurrency} in flight, "
        f"read {broker.tailed} while producing and {broker.cold_read} afterwards",
    ]
    if not figures.complete:
        lines.append(f"INCOMPLETE: not everything arrived within the {args.timeout:.0f}s timeout")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="emails to send (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="requests (and baseline sends) in flight (default 32)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for each phase before reporting what arrived (default 300)")
    args = parser.parse_args()
    if args.n < 1 or args.concurrency < 1 or args.timeout <= 0:
        parser.error("-n, --concurrency and --timeout must be positive")
    return args


async def benchmark(args: argparse.Namespace, host: str, platform: Platform) -> tuple[str, bool]:
    bootstrap = platform.bootstrap
    workspace = f"bench-{platform.run_id}"
    emails = make_emails(platform.run_id, args.n)
    record_size = round(sum(len(e.raw) for e in emails) / len(emails))

    progress(f"baseline: {args.n} records of {record_size} bytes through the broker")
    broker = await measure_broker(bootstrap, args.n, record_size, args.concurrency, args.timeout)

    progress(f"platform: posting {args.n} emails, {args.concurrency} in flight")
    token = issue_token(platform.secret, subject="bench", workspace_id=workspace, roles=["admin"])
    figures = await measure_platform(bootstrap, platform.url("ingest"), token, workspace, emails,
                                     args.concurrency, args.timeout)
    return report(args, host, platform.servers(), record_size, broker, figures), figures.complete


def main() -> int:
    args = parse_args()
    host = machine()  # before starting anything, for the load average
    platform = Platform()
    try:
        with platform:
            progress("starting the five services")
            platform.start(platform.devstack.SERVICES)
            text, complete = asyncio.run(benchmark(args, host, platform))
            print(text, flush=True)
            if not complete:
                print_log_tails(platform.stack.log_dir)
            return 0 if complete else 1
    except platform.devstack.InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
