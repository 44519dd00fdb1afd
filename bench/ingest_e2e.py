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
import ipaddress
import os
import platform
import secrets
import shutil
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from crm.ingest.v1 import events_pb2 as ingest_events
from crm.ticketing.v1 import events_pb2 as ticketing_events
from crm_ingest.domain.events import INTERACTION_RECORDED
from crm_ticketing.domain.events import TICKET_CREATED
from crmkit.auth import issue_token
from crmkit.topics import INTERACTIONS, PARTITIONS, TICKETS

ROOT = Path(__file__).resolve().parents[1]
SENDERS = 200  # distinct senders, so most emails resolve to a contact that already exists
BASELINE_PARTITIONS = PARTITIONS[INTERACTIONS]  # the same shape as the platform's topics
HTTP_TIMEOUT = 30.0
PROGRESS_EVERY = 10.0
CONNECTION_SETTINGS = ("CRM_KAFKA_BOOTSTRAP_SERVERS", "CRM_MONGO_URI", "CRM_POSTGRES_DSN")
STARTED = time.perf_counter()


def progress(text: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {text}", file=sys.stderr, flush=True)


# --- figures ---------------------------------------------------------------------------------

def percentile_ms(seconds: list[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-100) of ``seconds``, in milliseconds."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1] * 1000


def per_second(count: int, seconds: float) -> float | None:
    return count / seconds if count and seconds > 0 else None


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


# --- Kafka helpers ---------------------------------------------------------------------------

async def open_reader(bootstrap: str, partitions: list[TopicPartition]) -> AIOKafkaConsumer:
    """A plain consumer (no group) on ``partitions`` from their beginning, positioned before
    this returns, so that nothing sent afterwards can be missed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign(partitions)
    for partition in partitions:
        await consumer.position(partition)
    return consumer


async def read_until(consumer: AIOKafkaConsumer, on_record: Callable[[ConsumerRecord, float], None],
                     done: Callable[[], bool]) -> None:
    """Hand every record to ``on_record`` with the time it was read, until ``done()``.
    Callers bound it with ``wait_for_reader``."""
    while not done():
        batches = await consumer.getmany(timeout_ms=200)
        now = time.perf_counter()
        for records in batches.values():
            for record in records:
                on_record(record, now)


async def wait_for_reader(reader: asyncio.Task[None], deadline: float,
                          status: Callable[[], str]) -> None:
    """Wait for ``reader`` until ``deadline`` (a perf_counter time), reporting progress now
    and then; a reader still running at the deadline is cancelled."""
    while not reader.done():
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            progress(f"gave up waiting: {status()}")
            return
        await asyncio.wait({reader}, timeout=min(PROGRESS_EVERY, remaining))
        if not reader.done():
            progress(f"waiting: {status()}")
    reader.result()  # a reader that failed fails the run


async def run_concurrently(count: int, concurrency: int, job: Callable[[int], Awaitable[None]],
                           deadline: float) -> None:
    """``job(0) .. job(count - 1)`` with ``concurrency`` in flight; none started after ``deadline``."""
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            if time.perf_counter() > deadline:
                return
            await job(index)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# --- the baseline: aiokafka on the same broker ------------------------------------------------

async def measure_broker(bootstrap: str, records: int, record_size: int, concurrency: int,
                         timeout: float) -> BrokerFigures:
    """Produce ``records`` to a fresh topic (acks=all, ``concurrency`` sends awaiting their ack,
    like the HTTP load) while a consumer started first reads them; then read them all back
    with a fresh consumer."""
    figures = BrokerFigures(records)
    topic = f"bench.baseline.{secrets.token_hex(4)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, BASELINE_PARTITIONS, 1)])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p) for p in range(BASELINE_PARTITIONS)]
    value = os.urandom(record_size)
    sent_at: dict[bytes, float] = {}
    read_at: dict[bytes, float] = {}

    def tail(record: ConsumerRecord, now: float) -> None:
        read_at.setdefault(record.key, now)

    # The same producer settings as crmkit's Producer (tansu has no idempotent producer).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                enable_idempotence=False, request_timeout_ms=15000)
    tail_reader = await open_reader(bootstrap, partitions)
    await producer.start()
    try:
        reader = asyncio.create_task(read_until(tail_reader, tail, lambda: len(read_at) >= records))

        async def send(index: int) -> None:
            key = str(index).encode()
            start = sent_at[key] = time.perf_counter()
            await (await producer.send(topic, value=value, key=key))
            figures.ack_latencies.append(time.perf_counter() - start)

        first_send = time.perf_counter()
        await run_concurrently(records, concurrency, send, first_send + timeout)
        figures.produced = len(figures.ack_latencies)
        figures.produce_seconds = time.perf_counter() - first_send
        await wait_for_reader(reader, time.perf_counter() + timeout,
                              lambda: f"{len(read_at)}/{records} baseline records read")
    finally:
        await producer.stop()
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

def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
              if line.startswith("model name")]
    cpu = models[0] if models else platform.processor() or "unknown CPU"
    load = os.getloadavg()[0]
    return (f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {load:.2f} before the run")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def _ratio(platform_value: float | None, baseline_value: float | None) -> str:
    if platform_value is None or not baseline_value:
        return ""
    return f"{platform_value / baseline_value:.3g}x"


def report(args: argparse.Namespace, host: str, servers: str, record_size: int,
           broker: BrokerFigures, figures: PlatformFigures) -> str:
    def rate_row(label: str, count: int, seconds: float, baseline: tuple[str, int, float]) -> list[str]:
        ours, theirs = per_second(count, seconds), per_second(baseline[1], baseline[2])
        return [label, _number(ours, "/s"), baseline[0], _number(theirs, "/s"), _ratio(ours, theirs)]

    def latency_rows(label: str, latencies: list[float],
                     baseline: tuple[str, list[float]]) -> list[list[str]]:
        rows: list[list[str]] = []
        for q in (50, 99):
            ours, theirs = percentile_ms(latencies, q), percentile_ms(baseline[1], q)
            rows.append([f"{label} p{q}", _number(ours, "ms"), f"{baseline[0]} p{q}",
                         _number(theirs, "ms"), _ratio(ours, theirs)])
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
        ["first POST -> last interaction", _number(figures.interactions_seconds, "s"),
         "first send -> last read", _number(broker.tail_seconds, "s"),
         _ratio(figures.interactions_seconds, broker.tail_seconds)],
        ["first POST -> last ticket", _number(figures.tickets_seconds, "s"),
         "first send -> last read", _number(broker.tail_seconds, "s"),
         _ratio(figures.tickets_seconds, broker.tail_seconds)],
        ["", "", "consume (fresh consumer, stored records)",
         _number(per_second(broker.cold_read, broker.cold_read_seconds), "/s"), ""],
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    align = [str.ljust, str.rjust, str.ljust, str.rjust, str.rjust]
    lines = [
        "",
        f"ingest end to end: {figures.emails} emails from {min(SENDERS, figures.emails)} senders, "
        f"{args.concurrency} requests in flight, ~{record_size} bytes each",
        f"machine: {host}",
        f"servers: {servers} (all on this machine, with the five services)",
        "",
    ]
    for index, row in enumerate(rows):
        lines.append("  ".join(align[i](cell, widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
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


# --- the isolated platform --------------------------------------------------------------------

def load_devstack() -> ModuleType:
    """The local infrastructure scripts that `make dev` uses."""
    sys.path.insert(0, str(ROOT / "deploy" / "local"))
    import devstack

    return devstack


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (each socket stays bound until all are chosen)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def address_of(setting: str) -> str:
    """host:port (or several, comma-separated) of a bootstrap list or a URI, without credentials."""
    netloc = urlsplit(setting).netloc if "://" in setting else setting
    return netloc.rpartition("@")[2]


def hosts_of(setting: str) -> list[str]:
    hosts = []
    for item in address_of(setting).split(","):
        if item.startswith("["):  # [::1]:9092
            hosts.append(item[1:item.index("]")])
        elif item:
            hosts.append(item.rsplit(":", 1)[0])
    return hosts


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback_only() -> None:
    """The servers are ours, on loopback, unless a CRM_* setting names others: those must be
    on loopback too."""
    for name in CONNECTION_SETTINGS:
        value = os.environ.get(name)
        if value and not all(is_loopback(host) for host in hosts_of(value)):
            raise SystemExit(f"{name} points away from this machine; the benchmark only uses "
                             "loopback addresses: unset it")


def drop_databases(dsn: str, prefix: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                                    prefix)
            for row in rows:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def print_log_tails(log_dir: Path, lines: int = 15) -> None:
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- {log.name} (last {len(tail)} lines)", *tail, sep="\n", file=sys.stderr)


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


async def benchmark(args: argparse.Namespace, host: str, env: dict[str, str], ingest_url: str,
                    secret: str, run_id: str) -> tuple[str, bool]:
    bootstrap = env["CRM_KAFKA_BOOTSTRAP_SERVERS"]
    workspace = f"bench-{run_id}"
    emails = make_emails(run_id, args.n)
    record_size = round(sum(len(e.raw) for e in emails) / len(emails))

    progress(f"baseline: {args.n} records of {record_size} bytes through the broker")
    broker = await measure_broker(bootstrap, args.n, record_size, args.concurrency, args.timeout)

    progress(f"platform: posting {args.n} emails, {args.concurrency} in flight")
    token = issue_token(secret, subject="bench", workspace_id=workspace, roles=["admin"])
    figures = await measure_platform(bootstrap, ingest_url, token, workspace, emails,
                                     args.concurrency, args.timeout)

    servers = (f"Kafka (tansu) {address_of(bootstrap)}, MongoDB (SecantusDB) "
               f"{address_of(env['CRM_MONGO_URI'])}, PostgreSQL {address_of(env['CRM_POSTGRES_DSN'])}")
    return report(args, host, servers, record_size, broker, figures), figures.complete


def main() -> int:
    args = parse_args()
    check_loopback_only()
    host = machine()  # before starting anything, for the load average
    devstack = load_devstack()
    run_id = secrets.token_hex(4)
    data_dir = ROOT / ".local" / f"bench-{run_id}"
    database_prefix = f"crm_b{run_id}_"
    infra_env: dict[str, str] = {}
    try:
        kafka, mongo, postgres, *service_ports = free_ports(3 + 2 * len(devstack.SERVICES))
        progress(f"starting the infrastructure in {data_dir.relative_to(ROOT)}")
        stack = devstack.up(data_dir, {"kafka": kafka, "mongo": mongo, "postgres": postgres})
        infra_env = stack.env
        ports = {name: (service_ports[2 * i], service_ports[2 * i + 1])
                 for i, name in enumerate(devstack.SERVICES)}
        secret = secrets.token_urlsafe(48)
        env = devstack.service_env({**stack.env, "CRM_JWT_SECRET": secret,
                                    "CRM_DATABASE_PREFIX": database_prefix,
                                    "CRM_CONSUMER_GROUP_PREFIX": f"crm.b{run_id}."}, ports)
        progress("starting the five services")
        devstack.start_services(stack, env, ports)
        ingest_url = f"http://127.0.0.1:{ports['ingest'][0]}"
        table, complete = asyncio.run(benchmark(args, host, stack.env, ingest_url, secret, run_id))
        print(table, flush=True)
        if not complete:
            print_log_tails(stack.log_dir)
        return 0 if complete else 1
    except devstack.InfraError as exc:
        print_log_tails(data_dir / "logs")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception:
        print_log_tails(data_dir / "logs")
        raise
    finally:
        progress("stopping everything")
        devstack.stop_services(devstack.Stack(data_dir))
        if infra_env.get("CRM_POSTGRES_DSN"):
            try:
                drop_databases(infra_env["CRM_POSTGRES_DSN"], database_prefix)
            except Exception as exc:
                progress(f"could not drop the databases {database_prefix}*: {exc!r}")
        devstack.down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
