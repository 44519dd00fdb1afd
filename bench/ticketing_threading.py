"""Ticketing's threading: how many interactions a second ticketing threads from
crm.interactions.v1 into tickets, next to a plain consumer reading the same records and raw
asyncpg inserts of as many rows into the same PostgreSQL, all measured in the same run.

    .venv/bin/python bench/ticketing_threading.py [-n 20000] [--batch 500] [--timeout 600] [--logs DIR]

The infrastructure is started as `make dev` starts it, but isolated (bench/_platform.py); `n`
InteractionRecorded events of one workspace are put on crm.interactions.v1 first, then the
baselines run, then ticketing alone is started on that backlog. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import httpx
from _load import cpu_seconds, machine_busy
from _platform import (
    Platform,
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
    wait_for_reader,
)
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from crmkit.ids import uuid7
from crmkit.kafka import Event
from crmkit.postgres import ensure_database
from crmkit.testing import interaction_event
from crmkit.topics import INTERACTIONS, PARTITIONS

POLL_SECONDS = 0.25  # how often the threaded count is read from PostgreSQL
READY_POLL_SECONDS = 0.02
SEED = 20261124
WORDS = ("order", "invoice", "delivery", "refund", "account", "password", "subscription", "parcel",
         "address", "payment", "card", "discount", "warranty", "replacement", "size", "colour",
         "tracking", "return", "label", "support", "please", "thanks", "still", "waiting", "today")


# --- the backlog ------------------------------------------------------------------------------

@dataclass
class Mix:
    """The events of the run, and what ticketing should make of them."""

    events: list[Event] = field(default_factory=list)
    rows: list[tuple[str, str, UUID, datetime, str, str]] = field(default_factory=list)  # baseline
    thread_of: dict[str, str] = field(default_factory=dict)  # interaction id -> its thread
    new_threads: int = 0
    replies: int = 0
    chats: int = 0
    conversations: set[int] = field(default_factory=set)  # the chat conversations written in
    contacts: set[str] = field(default_factory=set)

    @property
    def expected_tickets(self) -> int:
        return self.new_threads + len(self.conversations)

    @property
    def record_size(self) -> int:
        return round(sum(len(e.envelope.data) + sum(len(k) + len(v) for k, v in e.envelope.headers())
                         for e in self.events) / max(1, len(self.events)))


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def make_mix(workspace: str, run_id: str, count: int) -> Mix:
    """``count`` inbound interactions of ``workspace``, in the order they are produced: about
    40 % emails opening a thread (a fresh Message-ID), 40 % replies to an earlier email of the
    run (In-Reply-To its thread's last message, References its last ten), 20 % chat messages in
    ``count / 20`` conversations; from ``count / 4`` contacts. A thread's messages all come from
    one contact, so they share a partition key (as ingest keys them) and stay in order."""
    rng = random.Random(SEED)
    contacts = [str(uuid7()) for _ in range(max(1, count // 4))]
    conversation_contact = [rng.randrange(len(contacts)) for _ in range(max(1, count // 20))]
    threads: list[tuple[int, str, list[str]]] = []  # contact index, subject, Message-IDs
    start = datetime.now(UTC) - timedelta(seconds=count)
    mix = Mix()
    ticket_ids: dict[str, UUID] = {}  # thread -> the ticket id its baseline rows carry
    for index in range(count):
        occurred_at = start + timedelta(seconds=index)
        interaction_id = str(uuid7())
        draw = rng.random()
        if draw < 0.4 or (draw < 0.8 and not threads):
            contact = len(threads) % len(contacts)  # every contact writes at least once
            subject = f"{words(rng, 3).capitalize()} #{len(threads)}"
            message_id = f"bench-{run_id}-{index}@mail.example"
            thread = f"email:{len(threads)}"
            threads.append((contact, subject, [message_id]))
            mix.new_threads += 1
            text = words(rng, rng.randint(40, 120))
            event = interaction_event(
                workspace, contacts[contact], interaction_id, occurred_at, subject=subject,
                message_id=message_id, sender=("email", f"customer{contact}@example.net"), text=text)
        elif draw < 0.8:
            number_ = rng.randrange(len(threads))
            contact, subject, chain = threads[number_]
            message_id = f"bench-{run_id}-{index}@mail.example"
            thread = f"email:{number_}"
            text = words(rng, rng.randint(20, 80))
            event = interaction_event(
                workspace, contacts[contact], interaction_id, occurred_at, subject=f"Re: {subject}",
                message_id=message_id, in_reply_to=chain[-1], references=tuple(chain[-10:]),
                sender=("email", f"customer{contact}@example.net"), text=text)
            chain.append(message_id)
            mix.replies += 1
        else:
            conversation = rng.randrange(len(conversation_contact))
            contact = conversation_contact[conversation]
            thread = f"chat:{conversation}"
            text = words(rng, rng.randint(3, 20))
            event = interaction_event(
                workspace, contacts[contact], interaction_id, occurred_at, channel="chat",
                conversation_id=f"chat-{run_id}-{conversation}",
                sender=("chat_visitor", f"visitor-{run_id}-{contact}"), text=text)
            mix.conversations.add(conversation)
            mix.chats += 1
        mix.events.append(event)
        mix.thread_of[interaction_id] = thread
        mix.contacts.add(contacts[contact])
        ticket = ticket_ids.setdefault(thread, uuid7())
        mix.rows.append((workspace, interaction_id, ticket, occurred_at, contacts[contact], text))
    return mix


async def produce(bootstrap: str, events: list[Event]) -> float:
    """Put ``events`` on their topic in order (acks=all, crmkit's producer settings); returns
    the seconds it took."""
    sender = producer(bootstrap)
    await sender.start()
    try:
        begin = time.perf_counter()
        pending = []
        for event in events:
            pending.append(await sender.send(event.topic, key=event.key.encode(),
                                             value=event.envelope.data, headers=event.envelope.headers()))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return time.perf_counter() - begin
    finally:
        await sender.stop()


# --- the baselines ----------------------------------------------------------------------------

async def consume_all(bootstrap: str, count: int, timeout: float) -> tuple[int, float]:
    """A plain consumer (no group) reading the topic from its beginning: records read, seconds
    from positioned to the last one read."""
    partitions = [TopicPartition(INTERACTIONS, p) for p in range(PARTITIONS[INTERACTIONS])]
    consumer = await open_reader(bootstrap, partitions)
    seen = 0
    last = begin = time.perf_counter()

    def on_record(_record: ConsumerRecord, now: float) -> None:
        nonlocal seen, last
        seen += 1
        last = now

    try:
        begin = time.perf_counter()
        reader = asyncio.create_task(read_until(consumer, on_record, lambda: seen >= count))
        await wait_for_reader(reader, begin + timeout, lambda: f"{seen}/{count} records read")
    finally:
        await consumer.stop()
    return seen, last - begin


def dsn_for(admin_dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{database}"))


async def insert_all(admin_dsn: str, database: str, rows: list[tuple[str, str, UUID, datetime, str, str]],
                     batch: int) -> float:
    """The rows ticketing writes per message, raw: ``executemany`` of ``batch`` rows a
    transaction into a scratch table shaped like ticket_messages (the same primary key)."""
    await ensure_database(admin_dsn, database)
    conn = await asyncpg.connect(dsn_for(admin_dsn, database))
    try:
        await conn.execute(
            "CREATE TABLE scratch_messages (workspace_id text NOT NULL, interaction_id text NOT NULL,"
            " ticket_id uuid NOT NULL, occurred_at timestamptz NOT NULL,"
            " direction text NOT NULL DEFAULT 'inbound', author text NOT NULL, body text NOT NULL,"
            " PRIMARY KEY (workspace_id, interaction_id))")
        begin = time.perf_counter()
        for offset in range(0, len(rows), batch):
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO scratch_messages (workspace_id, interaction_id, ticket_id, occurred_at,"
                    " author, body) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    rows[offset:offset + batch])
        return time.perf_counter() - begin
    finally:
        await conn.close()


# --- ticketing --------------------------------------------------------------------------------

def postgres_cpu() -> float:
    """CPU seconds of every process named ``postgres`` on the machine (the server and its
    backends; those that exited meanwhile are not counted): PostgreSQL's share, whether the
    platform started it or uses the shared server."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        if name == "postgres":
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass
class Threading:
    spawn_to_ready: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)  # seconds after ready, threaded
    cpu: float = 0.0  # ticketing's CPU seconds, ready -> all threaded
    busy: dict[str, float] = field(default_factory=dict)  # cores busy, same span
    tickets: int = 0
    misthreaded: int = 0  # interactions not in the ticket of the rest of their thread
    exited: int | None = None  # ticketing's exit code, if it stopped

    @property
    def threaded(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def reached(self, count: int) -> tuple[float, int] | None:
        return next((sample for sample in self.samples if sample[1] >= count), None)


async def wait_ready(url: str, proc_poll: Callable[[], int | None], timeout: float) -> bool:
    """Poll ``url`` until it answers 200 (True), the process exits or ``timeout`` (False)."""
    deadline = time.perf_counter() + timeout
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
        while time.perf_counter() < deadline:
            if proc_poll() is not None:
                return False
            try:
                if (await client.get(url)).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(READY_POLL_SECONDS)
    return False


async def measure_ticketing(platform: Platform, workspace: str, mix: Mix, timeout: float) -> Threading:
    """Start ticketing on the backlog and count the workspace's threaded messages every
    POLL_SECONDS from its readiness until all are there (or ``timeout``)."""
    figures = Threading()
    count = len(mix.events)
    spawned = time.perf_counter()
    proc = platform.spawn("ticketing")
    if not await wait_ready(f"{platform.url('ticketing')}/readyz", proc.poll, 120.0):
        figures.exited = proc.poll()
        progress("ticketing did not become ready")
        return figures
    ready = time.perf_counter()
    figures.spawn_to_ready = ready - spawned
    pid = platform.pid("ticketing")
    kafka_pid = platform.pid("kafka")
    assert pid is not None
    cpu_before = cpu_seconds(pid)
    kafka_before = cpu_seconds(kafka_pid) if kafka_pid else 0.0
    own_before, machine_before, postgres_before = time.process_time(), machine_busy(), postgres_cpu()
    database = f"{platform.database_prefix}ticketing"
    conn = await asyncpg.connect(dsn_for(platform.infra["CRM_POSTGRES_DSN"], database))
    try:
        next_report = ready + 10.0
        while True:
            threaded = await conn.fetchval(
                "SELECT count(*) FROM ticket_messages WHERE workspace_id = $1", workspace)
            now = time.perf_counter()
            figures.samples.append((now - ready, int(threaded)))
            if threaded >= count:
                break
            if proc.poll() is not None:
                figures.exited = proc.returncode
                progress(f"ticketing exited with code {proc.returncode}")
                break
            if now - ready > timeout:
                progress(f"gave up after {timeout:.0f}s: {threaded}/{count} threaded")
                break
            if now >= next_report:
                progress(f"{threaded}/{count} threaded")
                next_report = now + 10.0
            await asyncio.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - ready
        figures.cpu = cpu_seconds(pid) - cpu_before
        figures.busy = {"ticketing": figures.cpu / seconds}
        if kafka_pid:
            figures.busy["kafka"] = (cpu_seconds(kafka_pid) - kafka_before) / seconds
        figures.busy["postgres"] = (postgres_cpu() - postgres_before) / seconds
        figures.busy["bench"] = (time.process_time() - own_before) / seconds
        figures.busy["others"] = max(0.0, (machine_busy() - machine_before) / seconds
                                     - sum(figures.busy.values()))
        figures.tickets = int(await conn.fetchval(
            "SELECT count(*) FROM tickets WHERE workspace_id = $1", workspace))
        rows = await conn.fetch("SELECT interaction_id, ticket_id FROM ticket_messages"
                                " WHERE workspace_id = $1", workspace)
    finally:
        await conn.close()
    figures.misthreaded = misthreaded(mix.thread_of, {r["interaction_id"]: r["ticket_id"] for r in rows})
    return figures


def misthreaded(thread_of: dict[str, str], ticket_of: dict[str, UUID]) -> int:
    """Threaded interactions not where they belong: each thread's interactions in one ticket
    (the one most of them are in), and no two threads in the same ticket."""
    by_thread: dict[str, dict[UUID, int]] = {}
    for interaction, ticket in ticket_of.items():
        counts = by_thread.setdefault(thread_of.get(interaction, "?"), {})
        counts[ticket] = counts.get(ticket, 0) + 1
    wrong = 0
    owner: dict[UUID, str] = {}  # ticket -> the thread it belongs to
    for thread, counts in by_thread.items():
        main = max(counts, key=lambda ticket: counts[ticket])
        wrong += sum(counts.values()) - counts[main]
        if main in owner or thread == "?":
            wrong += counts[main]
        owner.setdefault(main, thread)
    return wrong


# --- the report -------------------------------------------------------------------------------

@dataclass
class Baselines:
    produce_seconds: float = 0.0
    consumed: int = 0
    consume_seconds: float = 0.0
    inserted: int = 0
    insert_seconds: float = 0.0


def report(args: argparse.Namespace, host: str, servers: str, mix: Mix, base: Baselines,
           figures: Threading) -> tuple[str, bool]:
    count = len(mix.events)
    done = figures.reached(count)
    overall = per_second(count, done[0]) if done else None
    low, high = figures.reached(count // 10 or 1), figures.reached(count - count // 10)
    steady = (per_second(high[1] - low[1], high[0] - low[0])
              if low and high and high[0] > low[0] else None)
    consume = per_second(base.consumed, base.consume_seconds)
    insert = per_second(base.inserted, base.insert_seconds)
    consume_label = "records read/s, plain aiokafka consumer (no group)"
    insert_label = f"rows inserted/s, asyncpg executemany per {args.batch}"
    rows = [
        ["", "ticketing", "baseline (same run, same servers)", "", "ticketing/baseline"],
        ["interactions threaded/s, ready -> all threaded", number(overall, "/s"), consume_label,
         number(consume, "/s"), ratio(overall, consume)],
        ["", "", insert_label, number(insert, "/s"), ratio(overall, insert)],
        ["interactions threaded/s, steady (10 % -> 90 %)", number(steady, "/s"), consume_label,
         number(consume, "/s"), ratio(steady, consume)],
        ["", "", insert_label, number(insert, "/s"), ratio(steady, insert)],
    ]
    first = figures.reached(1)
    tickets_ok = figures.tickets == mix.expected_tickets
    complete = done is not None and figures.exited is None
    lines = [
        "",
        f"ticketing threading: {count} InteractionRecorded events of one workspace on "
        f"{INTERACTIONS} ({PARTITIONS[INTERACTIONS]} partitions, ~{mix.record_size} bytes a record)",
        f"machine: {host}",
        f"servers: {servers}; ticketing only, all on this machine",
        f"settings: -n {count}, --batch {args.batch}, --timeout {args.timeout:.0f}; the threaded count "
        f"read every {POLL_SECONDS} s; CRM_KAFKA_MAX_POLL_RECORDS "
        f"{os.environ.get('CRM_KAFKA_MAX_POLL_RECORDS', '1000 (default)')}",
        f"mix: {mix.new_threads} new email threads, {mix.replies} email replies, {mix.chats} chat messages "
        f"in {len(mix.conversations)} conversations; {len(mix.contacts)} contacts",
        "",
    ]
    lines += table(rows, right=(1, 3, 4))
    cpu_ms = figures.cpu * 1000 / figures.threaded if figures.threaded else None
    lines += [
        "",
        f"threaded {figures.threaded}/{count}; spawn -> ready {figures.spawn_to_ready:.1f} s, "
        f"{figures.samples[0][1] if figures.samples else 0} threaded at ready, ready -> first "
        f"{number(first[0] if first else None, 's')}, ready -> all {number(done[0] if done else None, 's')}",
        f"tickets opened {figures.tickets}, expected {mix.expected_tickets} "
        f"({mix.new_threads} new email threads + {len(mix.conversations)} chat conversations): "
        + ("OK" if tickets_ok else "MISMATCH"),
        f"interactions not in their thread's ticket: {figures.misthreaded}",
        f"ticketing CPU: {figures.cpu:.1f} s, {number(cpu_ms, 'ms')} an interaction; cores busy, "
        "ready -> all threaded: " + ", ".join(f"{name} {value:.2f}" for name, value in figures.busy.items())
        + " (postgres: every postgres process on the machine; others: the rest of the machine)",
        f"baselines: produced {count} in {base.produce_seconds:.1f} s "
        f"({number(per_second(count, base.produce_seconds), '/s')}, acks=all), read {base.consumed} "
        f"in {base.consume_seconds:.2f} s, inserted {base.inserted} in {base.insert_seconds:.2f} s",
    ]
    ok = complete and tickets_ok and figures.misthreaded == 0
    if not complete:
        lines.append("INCOMPLETE: ticketing did not thread every interaction"
                     + (f" (it exited with code {figures.exited})" if figures.exited is not None
                        else f" within the {args.timeout:.0f}s timeout"))
    if not tickets_ok:
        lines.append(f"FAILURE: {figures.tickets} tickets opened where {mix.expected_tickets} were expected")
    if figures.misthreaded:
        lines.append(f"FAILURE: {figures.misthreaded} interactions threaded outside their thread's ticket")
    return "\n".join(lines), ok


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20000, help="interactions to thread (default 20000)")
    parser.add_argument("--batch", type=int, default=500,
                        help="rows an executemany in the insert baseline (default 500)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for ticketing to thread everything (default 600)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="copy the servers' and ticketing's logs to this folder at the end")
    args = parser.parse_args()
    if args.n < 20 or args.batch < 1 or args.timeout <= 0:
        parser.error("-n must be at least 20, --batch and --timeout positive")
    return args


async def benchmark(args: argparse.Namespace, host: str, platform: Platform) -> tuple[str, bool]:
    workspace = f"bench-{platform.run_id}"
    progress(f"building {args.n} interactions")
    mix = make_mix(workspace, platform.run_id, args.n)
    base = Baselines()
    progress(f"producing them to {INTERACTIONS}")
    base.produce_seconds = await produce(platform.bootstrap, mix.events)
    progress("baseline: a plain consumer reading them")
    base.consumed, base.consume_seconds = await consume_all(platform.bootstrap, args.n, args.timeout)
    progress(f"baseline: inserting {args.n} rows with asyncpg, {args.batch} a batch")
    base.insert_seconds = await insert_all(platform.infra["CRM_POSTGRES_DSN"],
                                           f"{platform.database_prefix}scratch", mix.rows, args.batch)
    base.inserted = len(mix.rows)
    progress("starting ticketing on the backlog")
    figures = await measure_ticketing(platform, workspace, mix, args.timeout)
    return report(args, host, platform.servers(), mix, base, figures)


def main() -> int:
    args = parse_args()
    host = machine()  # before starting anything, for the load average
    platform = Platform(keep_logs=args.logs)
    try:
        with platform:
            text, ok = asyncio.run(benchmark(args, host, platform))
            print(text, flush=True)
            if not ok:
                print_log_tails(platform.stack.log_dir)
            return 0 if ok else 1
    except platform.devstack.InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
