"""Ingest's channel adapters and its worker, each next to the raw broker measured in the same
run: how many webhook requests each adapter accepts a second and how long it takes to answer
(p50, p99), and how many interactions a second the worker makes of raw records, resolving
every sender through contacts.

    .venv/bin/python bench/ingest_adapters.py [-n 2000] [--concurrency 32] [--rate 100]
                                              [--known-senders 200] [--new-senders 0.2]
                                              [--timeout 300] [--no-trace] [--logs DIR]

Only contacts and ingest are started, as `make dev` starts them (deploy/local/devstack.py) but
isolated (bench/_platform.py): own data folder, free loopback ports, a random JWT secret, own
database and consumer-group prefixes; all stopped and removed at the end. See bench/README.md
for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
from _ingest_traffic import Adapter, Record, Secrets, Sender, Senders, adapters, as_records, ingest_env
from _load import Clients, CpuMeter, Load, drive
from _platform import (
    Platform,
    create_topic,
    free_ports,
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
    table,
    wait_for_reader,
)
from _spans import Span, SpanSink
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from crm.contacts.v1 import contacts_pb2, contacts_pb2_grpc
from crm.ingest.v1 import events_pb2 as ingest_events
from crm_ingest.domain.events import INTERACTION_RECORDED
from crm_ingest.wire import channel_of
from crmkit.auth import issue_token
from crmkit.contacts import identity
from crmkit.topics import INGEST_RAW, INTERACTIONS, PARTITIONS

TARGET_RATE = 2000  # interactions/s through the worker (the issue's target)
TARGET_P99_MS = 20  # webhook ack p99
HANDLING = (f"{INGEST_RAW} process batch", f"{INGEST_RAW} process")  # the worker's own spans


# --- measuring ------------------------------------------------------------------------------

async def post_all(clients: Clients, adapter: Adapter, bodies: list[bytes], load: Load,
                   deadline: float) -> Load:
    async def post(index: int) -> bool:
        body = bodies[index]
        headers = {"Content-Type": adapter.content_type, **adapter.credentials(body)}
        try:
            response = await clients.post(adapter.path, body, headers)
        except httpx.TransportError as exc:
            load.errors[type(exc).__name__] += 1
            return False
        if 200 <= response.status_code < 300:
            return True
        load.errors[f"HTTP {response.status_code}"] += 1
        return False

    await drive(load, post, deadline)
    return load


async def produce_all(sender: AIOKafkaProducer, topic: str, records: list[list[Record]], load: Load,
                      deadline: float) -> Load:
    """The baseline: each request's records sent and acknowledged (acks=all), as the endpoint
    does before it answers."""
    async def send(index: int) -> bool:
        futures = [await sender.send(topic, value=value, key=key, headers=headers)
                   for key, value, headers in records[index]]
        await asyncio.gather(*futures)
        return True

    await drive(load, send, deadline)
    return load


@dataclass
class AdapterFigures:
    adapter: Adapter
    record_size: int
    produce: Load  # baseline, as many in flight
    accept: Load
    produce_paced: Load  # baseline, at the paced rate
    accept_paced: Load
    accepted: int = 0  # every accepted request, warm-up included: the worker's backlog


async def measure_adapter(platform: Platform, adapter: Adapter, senders: Senders, tag: str,
                          args: argparse.Namespace) -> AdapterFigures:
    """A warm-up that opens every connection (not counted), then the baseline and the adapter
    with ``--concurrency`` requests in flight, then both again at a steady ``--rate``."""
    n, concurrency, rate = args.n, args.concurrency, args.rate
    paced = max(1, n // 4)
    connections = max(concurrency, 64)  # the paced load may need more than --concurrency
    bodies = [adapter.body(tag, serial, senders.next(adapter.kind))
              for serial in range(connections + n + paced)]
    warm, full, steady = bodies[:connections], bodies[connections:connections + n], bodies[connections + n:]
    records = [as_records(adapter.records(body)) for body in full + steady]
    record_size = round(sum(len(v) for request in records for _, v, _ in request) / len(records))
    topic = f"bench.baseline.{platform.run_id}.{adapter.kind}.{secrets.token_hex(2)}"
    await create_topic(platform.bootstrap, topic, PARTITIONS[INGEST_RAW])
    meter = CpuMeter(platform)
    deadline = time.perf_counter() + args.timeout

    async def measured(run: Callable[[Load], Awaitable[Load]], load: Load) -> Load:
        meter.start()
        await run(load)
        load.cpu = meter.stop()
        return load

    kafka = producer(platform.bootstrap)
    await kafka.start()
    clients = Clients(platform.url("ingest"), connections)
    try:
        warm_up = await post_all(clients, adapter, warm, Load(connections, in_flight=connections), deadline)
        await produce_all(kafka, topic, records[:concurrency], Load(concurrency, in_flight=concurrency),
                          deadline)
        progress(f"{adapter.name}: {n} records through the broker, then {n} requests, "
                 f"{concurrency} in flight")
        produce = await measured(lambda load: produce_all(kafka, topic, records[:n], load, deadline),
                                 Load(n, in_flight=concurrency))
        accept = await measured(lambda load: post_all(clients, adapter, full, load, deadline),
                                Load(n, in_flight=concurrency))
        progress(f"{adapter.name}: {paced} records, then {paced} requests, at {rate:,.0f}/s")
        produce_paced = await measured(
            lambda load: produce_all(kafka, topic, records[n:], load, deadline), Load(paced, rate=rate))
        accept_paced = await measured(
            lambda load: post_all(clients, adapter, steady, load, deadline), Load(paced, rate=rate))
    finally:
        await kafka.stop()
        await clients.aclose()
    figures = AdapterFigures(adapter, record_size, produce, accept, produce_paced, accept_paced)
    figures.accepted = warm_up.ok + accept.ok + accept_paced.ok
    return figures


@dataclass
class Drain:
    """The worker turning a backlog of raw records into interactions."""

    expected: int
    traced: bool = False
    spawned: float = 0.0
    ready: float = 0.0
    first: float = 0.0  # first interaction read
    last: float = 0.0  # last interaction read
    interactions: set[str] = field(default_factory=set)
    channels: Counter[str] = field(default_factory=Counter)
    contacts: set[str] = field(default_factory=set)
    senders: dict[tuple[int, str], set[str]] = field(default_factory=dict)  # -> contact ids
    cpu: dict[str, float] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.interactions) >= self.expected

    @property
    def seconds(self) -> float:
        return self.last - self.ready if self.last else 0.0


async def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline: float) -> float:
    """The time ``url``/readyz first answered 200 (polled every 20 ms): the worker has joined
    its consumer group, and so has started."""
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited with code {proc.returncode} while starting")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return time.perf_counter()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)
    raise TimeoutError("ingest did not become ready")


async def drain(platform: Platform, workspace: str, expected: int, env: dict[str, str],
                timeout: float, sink: SpanSink | None = None) -> Drain:
    """Start ingest on a backlog waiting on the raw topic and read crm.interactions.v1 until
    every one of ``expected`` messages is an interaction."""
    figures = Drain(expected, traced=sink is not None)
    wanted = (workspace.encode(), INTERACTION_RECORDED.encode())
    since = datetime.now(UTC)  # a previous drain's events (tansu's end offsets stop short) are older

    def on_record(record: ConsumerRecord, now: float) -> None:
        headers = dict(record.headers or ())
        if (headers.get("workspace"), headers.get("ce_type")) != wanted:
            return
        made = headers.get("ce_time")
        if made is None or datetime.fromisoformat(made.decode()) < since:
            return
        interaction = ingest_events.InteractionRecorded.FromString(record.value).interaction
        if interaction.id in figures.interactions:
            return
        figures.interactions.add(interaction.id)
        figures.channels[channel_of(interaction.channel)] += 1
        figures.contacts.add(interaction.contact_id)
        sender = (interaction.sender.kind, interaction.sender.value)
        figures.senders.setdefault(sender, set()).add(interaction.contact_id)
        figures.first = figures.first or now
        figures.last = now

    partitions = [TopicPartition(INTERACTIONS, p) for p in range(PARTITIONS[INTERACTIONS])]
    observer = await open_reader(platform.bootstrap, partitions, from_end=True)
    meter = CpuMeter(platform)
    try:
        reader = asyncio.create_task(read_until(observer, on_record, lambda: figures.complete))
        deadline = time.perf_counter() + timeout
        figures.spawned = time.perf_counter()
        proc = platform.spawn("ingest", {**env, **(sink.env() if sink else {})})
        figures.ready = await wait_ready(platform.url("ingest"), proc, deadline)
        meter.start()
        await wait_for_reader(reader, deadline,
                              lambda: f"{len(figures.interactions)}/{expected} interactions")
        figures.cpu = meter.stop()
    finally:
        await observer.stop()
    if sink is not None:
        for _ in range(50):  # the spans of the last batches are exported within a second
            if sink.quiet_for() > 1.0:
                break
            await asyncio.sleep(0.2)
        figures.spans = list(sink.spans)
    return figures


async def consume_raw(bootstrap: str, records: int, timeout: float) -> Load:
    """The worker's baseline: a plain consumer (no group) reading the raw topic from its start
    until it has read ``records`` (the backlog; tansu's end offsets cannot be relied on: they
    stop short of each partition's last batch)."""
    partitions = [TopicPartition(INGEST_RAW, p) for p in range(PARTITIONS[INGEST_RAW])]
    consumer = await open_reader(bootstrap, partitions)
    load = Load(records)
    try:
        def count(record: ConsumerRecord, now: float) -> None:
            load.ok += 1

        first = time.perf_counter()
        reader = asyncio.create_task(read_until(consumer, count, lambda: load.ok >= records))
        await wait_for_reader(reader, first + timeout, lambda: f"{load.ok}/{records} raw records read")
        load.seconds = time.perf_counter() - first
    finally:
        await consumer.stop()
    return load


async def seed_contacts(platform: Platform, workspace: str, senders: list[Sender]) -> None:
    """The known senders, made contacts through ResolveIdentities as the worker would."""
    token = issue_token(platform.secret, subject="service:bench", workspace_id=workspace, roles=["service"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.ports['contacts'][1]}") as channel:
        stub = contacts_pb2_grpc.ContactsServiceStub(channel)
        for start in range(0, len(senders), 500):
            request = contacts_pb2.ResolveIdentitiesRequest(identities=[
                contacts_pb2.IdentityToResolve(identity=identity(s.kind, s.value), display_name=s.name,
                                               create_if_missing=True)
                for s in senders[start:start + 500]])
            await stub.ResolveIdentities(request, timeout=60,
                                         metadata=(("authorization", f"Bearer {token}"),))


@dataclass(frozen=True)
class Breakdown:
    """Where the worker's batches spent their time, from ingest's own spans."""

    batches: int
    records: int
    handling_seconds: float  # summed over the batches (partitions are handled concurrently)
    resolve: list[float]  # each ResolveIdentities call
    mongo: list[float]  # each MongoDB command


def breakdown(spans: list[Span]) -> Breakdown:
    by_id = {span.span_id: span for span in spans}
    handling = {span.span_id: span for span in spans if span.name in HANDLING}

    def owner(span: Span) -> Span | None:
        parent = by_id.get(span.parent_id)
        while parent is not None and parent.span_id not in handling:
            parent = by_id.get(parent.parent_id)
        return parent

    owned = [span for span in spans if span.span_id not in handling and owner(span) is not None]
    resolve = [span for span in owned if span.name.endswith("/ResolveIdentities")]
    return Breakdown(
        batches=len(handling),
        records=sum(int(str(span.attributes.get("messaging.batch.message_count", 1)))
                    for span in handling.values()),
        handling_seconds=sum(s.seconds for s in handling.values()),
        resolve=[s.seconds for s in resolve],
        mongo=[s.seconds for s in owned if "pymongo" in s.scope],
    )


# --- the report -------------------------------------------------------------------------------

def report(args: argparse.Namespace, host: str, platform: Platform, figures: list[AdapterFigures],
           consume: Load, drains: list[Drain], senders: Senders) -> str:
    rows: list[list[str]] = [["", "platform", "baseline (aiokafka, same broker, same records)", "",
                              "platform/baseline"]]

    def rate_row(label: str, ours: float | None, what: str, base: float | None) -> None:
        rows.append([f"  {label}", number(ours, "/s"), what, number(base, "/s"), ratio(ours, base)])

    def latency_rows(label: str, ours: Load, theirs: Load, what: str) -> None:
        for q in (50, 99):
            mine, base = percentile_ms(ours.latencies, q), percentile_ms(theirs.latencies, q)
            rows.append([f"  {label} p{q}", number(mine, "ms"), f"{what} p{q}", number(base, "ms"),
                         ratio(mine, base)])

    in_flight = f"{args.concurrency} in flight"
    for item in figures:
        a = item.adapter
        rows.append([f"{a.name}: POST {a.path} (records ~{item.record_size} B)", "", "", "", ""])
        rate_row(f"accepted/s, {in_flight}", item.accept.per_second,
                 f"produce/s, acks=all, {in_flight}", item.produce.per_second)
        latency_rows("ack latency", item.accept, item.produce, "ack latency")
        rate = f"{item.accept_paced.rate:,.0f}/s"
        latency_rows(f"ack latency at {rate}", item.accept_paced, item.produce_paced,
                     f"ack latency at {rate}")
    rows.append(["worker: raw records -> interactions, senders resolved by contacts", "", "", "", ""])
    for index, run in enumerate(drains):
        ours = per_second(len(run.interactions), run.seconds)
        label = "interactions/s, traced (spans exported)" if run.traced else "interactions/s"
        if index == 0:
            rate_row(f"{label}, ready -> last", ours, "consume/s, plain consumer, raw topic",
                     consume.per_second)
        else:
            rows.append([f"  {label}, ready -> last", number(ours, "/s"), "", "", ""])

    new_share = senders.new / max(1, sum(item.accepted for item in figures))
    lines = [
        "",
        f"ingest adapters and worker: {args.n} requests per adapter with {in_flight}, then "
        f"{max(1, args.n // 4)} at {args.rate:,.0f}/s; {args.known_senders} known senders per "
        f"channel, {new_share:.0%} of the messages from new ones",
        f"machine: {host}",
        f"servers: {platform.servers()}; contacts and ingest only, all on this machine",
        "",
        *table(rows, right=(1, 3, 4)),
        "",
    ]
    for item in figures:
        errors = item.accept.errors + item.accept_paced.errors
        text = ", ".join(f"{k}: {v}" for k, v in errors.most_common()) or "none"
        lines.append(f"{item.adapter.name}: accepted {item.accept.ok}/{item.accept.count}, paced "
                     f"{item.accept_paced.ok}/{item.accept_paced.count} (errors: {text}); CPU per "
                     f"request: ingest {cpu_ms(item.accept, 'ingest')}, the load generator "
                     f"{cpu_ms(item.accept, 'bench')}")

    phases: list[tuple[str, dict[str, float]]] = []
    for item in figures:
        phases += [(f"{item.adapter.name}: produce", item.produce.cpu),
                   (f"{item.adapter.name}: accept", item.accept.cpu),
                   (f"{item.adapter.name}: produce, paced", item.produce_paced.cpu),
                   (f"{item.adapter.name}: accept, paced", item.accept_paced.cpu)]
    phases += [("worker" + (" (traced)" if run.traced else ""), run.cpu) for run in drains]
    columns = list(dict.fromkeys(name for _, cpu in phases for name in cpu))
    lines += ["", "cores busy while measuring (CPU seconds / wall seconds; others: the rest of the machine):",
              *table([["", *columns], *([label, *(f"{cpu.get(c, 0.0):.2f}" for c in columns)]
                                        for label, cpu in phases)], right=range(1, len(columns) + 1))]
    for run in drains:
        channels = ", ".join(f"{name} {count:,}" for name, count in sorted(run.channels.items()))
        lines += ["", f"{'worker (traced)' if run.traced else 'worker'}: {len(run.interactions):,}/"
                      f"{run.expected:,} interactions ({channels}) of {len(run.contacts):,} contacts "
                      f"({len(senders.distinct):,} distinct senders); "
                      f"spawn -> ready {run.ready - run.spawned:.1f} s, ready -> first interaction "
                      f"{max(0.0, run.first - run.ready):.2f} s, ready -> last {run.seconds:.2f} s"]
        if run.spans:
            lines += describe(breakdown(run.spans), run)
    lines += ["", *targets(figures, drains[0])]
    if not all(run.complete for run in drains):
        lines.append(f"INCOMPLETE: not every interaction arrived within the {args.timeout:.0f}s timeout")
    return "\n".join(lines)


def cpu_ms(load: Load, process: str) -> str:
    """CPU time a process spent per accepted request during ``load``."""
    if not load.ok or process not in load.cpu:
        return "n/a"
    return f"{load.cpu[process] * load.seconds / load.ok * 1000:.2f} ms"


def targets(figures: list[AdapterFigures], run: Drain) -> list[str]:
    """The issue's targets on this machine: >= 2,000 interactions/s through the worker, p99
    webhook ack < 20 ms."""
    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    rate = per_second(len(run.interactions), run.seconds) or 0.0
    lines = [f"target: >= {TARGET_RATE:,} interactions/s through the worker: {rate:,.0f}/s, "
             f"{verdict(rate >= TARGET_RATE)}",
             f"target: p99 webhook ack < {TARGET_P99_MS} ms:"]
    for item in figures:
        full = percentile_ms(item.accept.latencies, 99) or float("inf")
        steady = percentile_ms(item.accept_paced.latencies, 99) or float("inf")
        lines.append(f"  {item.adapter.name}: {full:,.0f} ms with {item.accept.in_flight} in flight "
                     f"({verdict(full < TARGET_P99_MS)}), {steady:,.0f} ms at "
                     f"{item.accept_paced.rate:,.0f}/s ({verdict(steady < TARGET_P99_MS)})")
    return lines


def describe(found: Breakdown, run: Drain) -> list[str]:
    if not found.batches or not found.handling_seconds:
        return ["  no spans of the worker's batches arrived"]
    share = sum(found.resolve) / found.handling_seconds
    mongo = sum(found.mongo) / found.handling_seconds
    resolve_p50, resolve_p99 = percentile_ms(found.resolve, 50), percentile_ms(found.resolve, 99)
    return [
        f"  its batches: {found.batches:,} ({found.records:,} records, {found.records / found.batches:.0f} "
        f"a batch), {found.handling_seconds / max(run.seconds, 1e-9):.1f} in progress at a time on average",
        f"  of their time: ResolveIdentities {share:.0%} ({len(found.resolve):,} calls, p50 "
        f"{number(resolve_p50, 'ms')}, p99 {number(resolve_p99, 'ms')}), MongoDB commands {mongo:.0%} "
        f"({len(found.mongo):,}), the rest {1 - share - mongo:.0%} (parsing, building documents and "
        f"events, waiting for the event loop)",
    ]


# --- the run ----------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="requests per adapter (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="requests (and baseline sends) in flight (default 32)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="requests a second of the steady load, for the latency (default 100)")
    parser.add_argument("--known-senders", type=int, default=200,
                        help="senders per channel put in contacts before the run (default 200)")
    parser.add_argument("--new-senders", type=float, default=0.2,
                        help="share of messages from senders never seen before (default 0.2)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for each phase before reporting what arrived (default 300)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="copy the services' and servers' logs to this folder at the end")
    parser.add_argument("--no-trace", action="store_true",
                        help="skip the second, traced drain (where the worker's time goes)")
    args = parser.parse_args()
    if min(args.n, args.concurrency, args.known_senders) < 1 or args.timeout <= 0 or args.rate <= 0:
        parser.error("-n, --concurrency, --rate, --known-senders and --timeout must be positive")
    if not 0 <= args.new_senders <= 1:
        parser.error("--new-senders is a share between 0 and 1")
    return args


async def openapi_paths(url: str) -> set[str]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        return set((await client.get(f"{url}/openapi.json")).json()["paths"])


async def benchmark(args: argparse.Namespace, host: str, platform: Platform) -> tuple[str, bool]:
    workspace = f"bench-{platform.run_id}"
    keys = Secrets()
    senders = Senders(args.known_senders, args.new_senders)
    kinds = ("email", "whatsapp", "messenger")
    known = [s for kind in kinds for s in senders.all_known(kind)]
    contacts = f"127.0.0.1:{platform.ports['contacts'][1]}"
    progress(f"contacts: {args.known_senders} known senders for each of {', '.join(kinds)}")
    await seed_contacts(platform, workspace, known)

    # 1. The adapters, with the worker held back so that accepting is measured alone: contacts
    # is unreachable for this ingest, and its records wait on the raw topic, as they do in
    # production while contacts is down. Its own database and consumer group, so that the
    # worker measured next starts afresh (no outbox-relay lease to wait out, no group to rejoin).
    progress("ingest, with its worker waiting for an unreachable contacts")
    held = {**ingest_env(workspace, keys, f"127.0.0.1:{free_ports(1)[0]}"),
            **generation(platform, "held")}
    await asyncio.to_thread(platform.start, ["ingest"], held)
    token = issue_token(platform.secret, subject="bench", workspace_id=workspace, roles=["admin"])
    found = adapters(await openapi_paths(platform.url("ingest")), workspace, token, keys)
    figures = [await measure_adapter(platform, adapter, senders, f"{platform.run_id}-{i}", args)
               for i, adapter in enumerate(found)]
    await asyncio.to_thread(platform.stop, "ingest")
    backlog = sum(item.accepted for item in figures)

    # 2. The worker on that backlog, next to a plain consumer reading it.
    progress("baseline: a plain consumer reading the raw topic")
    consume = await consume_raw(platform.bootstrap, backlog, args.timeout)
    progress(f"worker: ingest with contacts, on {backlog:,} raw records")
    env = ingest_env(workspace, keys, contacts)
    drains = [await drain(platform, workspace, backlog, env, args.timeout)]
    await asyncio.to_thread(platform.stop, "ingest")

    # 3. The same backlog again, from the start, with ingest exporting its spans to the bench:
    # contacts and ingest with fresh databases, the same known senders.
    if not args.no_trace:
        progress("worker, traced: contacts and ingest again, with fresh databases")
        fresh = generation(platform, "traced")
        await asyncio.to_thread(platform.stop, "contacts")
        # Contacts keeps its consumer group, so that it does not read the first drain's
        # interactions again (it records each on its contact's timeline).
        await asyncio.to_thread(platform.start, ["contacts"],
                                {"CRM_DATABASE_PREFIX": fresh["CRM_DATABASE_PREFIX"]})
        await seed_contacts(platform, workspace, known)
        sink = SpanSink()
        try:
            drains.append(await drain(platform, workspace, backlog, {**env, **fresh}, args.timeout, sink))
        finally:
            sink.close()
        await asyncio.to_thread(platform.stop, "ingest")
    text = report(args, host, platform, figures, consume, drains, senders)
    return text, all(run.complete for run in drains)


def generation(platform: Platform, name: str) -> dict[str, str]:
    """Database and consumer-group prefixes of their own (still under the run's, so dropped
    with them)."""
    return {"CRM_DATABASE_PREFIX": f"{platform.database_prefix}{name}_",
            "CRM_CONSUMER_GROUP_PREFIX": f"crm.b{platform.run_id}.{name}."}


def main() -> int:
    args = parse_args()
    host = machine()  # before starting anything, for the load average
    platform = Platform(keep_logs=args.logs)
    try:
        with platform:
            progress("starting contacts")
            platform.start(["contacts"])
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
