"""What the benchmarks that start the platform share: the platform started as `make dev` starts
it (deploy/local/devstack.py) but isolated, Kafka readers and load helpers, percentiles, the
machine's description, the processes' CPU time, and a plain-text table.

Isolated means: its own data folder `.local/bench-<id>/`, free loopback ports for every server
and service, a random `CRM_JWT_SECRET`, `CRM_DATABASE_PREFIX=crm_b<id>_` and
`CRM_CONSUMER_GROUP_PREFIX=crm.b<id>.`. Whatever happens, `Platform` stops what it started,
drops the PostgreSQL databases `crm_b<id>_*` and removes its data folder.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import platform as host_platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType, TracebackType
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

ROOT = Path(__file__).resolve().parents[1]
CONNECTION_SETTINGS = ("CRM_KAFKA_BOOTSTRAP_SERVERS", "CRM_MONGO_URI", "CRM_POSTGRES_DSN")
PROGRESS_EVERY = 10.0
STARTED = time.perf_counter()


def progress(text: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {text}", file=sys.stderr, flush=True)


# --- figures ---------------------------------------------------------------------------------

def percentile_ms(seconds: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-100) of ``seconds``, in milliseconds."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1] * 1000


def per_second(count: int, seconds: float) -> float | None:
    return count / seconds if count and seconds > 0 else None


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def ratio(platform_value: float | None, baseline_value: float | None) -> str:
    if platform_value is None or not baseline_value:
        return ""
    return f"{platform_value / baseline_value:.3g}x"


def table(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """Aligned lines of ``rows`` (the first is the header, underlined); columns in ``right``
    are right-aligned. A row with only its first cell is a section title, printed as it is."""
    right = set(right)
    aligned = [row for row in rows if any(row[1:])] or list(rows)
    widths = [max(len(row[i]) for row in aligned) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        if not any(row[1:]) and index:
            lines.append(row[0])
            continue
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                 for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def machine() -> str:
    """The CPUs, system and Python, and the load average now (call it before starting anything)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
              if line.startswith("model name")]
    cpu = models[0] if models else host_platform.processor() or "unknown CPU"
    load = os.getloadavg()[0]
    return (f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), {host_platform.system()} "
            f"{host_platform.release()}, Python {host_platform.python_version()}, "
            f"load average {load:.2f} before the run")


# --- Kafka helpers ---------------------------------------------------------------------------

def producer(bootstrap: str) -> AIOKafkaProducer:
    """An aiokafka producer with the settings of crmkit's Producer (tansu has no idempotent
    producer): the baselines' producer."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                            enable_idempotence=False, request_timeout_ms=15000)


async def create_topic(bootstrap: str, name: str, partitions: int) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return [TopicPartition(name, p) for p in range(partitions)]


async def open_reader(bootstrap: str, partitions: list[TopicPartition],
                      from_end: bool = False) -> AIOKafkaConsumer:
    """A plain consumer (no group) on ``partitions`` from their beginning (or their end),
    positioned before this returns, so that nothing sent afterwards can be missed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    ends = await consumer.end_offsets(partitions) if from_end else {}
    consumer.assign(partitions)
    # Seeking at once, before the fetcher runs: records fetched from the beginning in between
    # would otherwise be handed out after a seek_to_end.
    for partition, offset in ends.items():
        consumer.seek(partition, offset)
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


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Platform:
    """The infrastructure (tansu, SecantusDB, PostgreSQL) started on entry; services started
    and stopped on demand, each as its own process with the settings `make dev` gives it;
    everything stopped and removed on exit. When the block fails, the tails of the logs are
    printed first."""

    def __init__(self, keep_logs: Path | None = None) -> None:
        self.keep_logs = keep_logs  # where to copy the servers' and services' logs at the end
        self.devstack = load_devstack()
        self.run_id = secrets.token_hex(4)
        self.data_dir = ROOT / ".local" / f"bench-{self.run_id}"
        self.database_prefix = f"crm_b{self.run_id}_"
        self.secret = secrets.token_urlsafe(48)
        self.stack = self.devstack.Stack(self.data_dir)
        self.infra: dict[str, str] = {}  # the CRM_* connection settings
        self.ports: dict[str, tuple[int, int]] = {}  # service -> (HTTP, gRPC)
        self.env: dict[str, str] = {}  # every service's environment

    def __enter__(self) -> Platform:
        check_loopback_only()
        # A SIGTERM (kill, a CI timeout) stops the run as Ctrl-C does: the servers and services
        # are stopped and the databases dropped on the way out, not left running.
        signal.signal(signal.SIGTERM, _interrupted)
        try:
            kafka, mongo, postgres, *service_ports = free_ports(3 + 2 * len(self.devstack.SERVICES))
            progress(f"starting the infrastructure in {self.data_dir.relative_to(ROOT)}")
            self.stack = self.devstack.up(self.data_dir, {"kafka": kafka, "mongo": mongo,
                                                          "postgres": postgres})
            self.infra = dict(self.stack.env)
            self.ports = {name: (service_ports[2 * i], service_ports[2 * i + 1])
                          for i, name in enumerate(self.devstack.SERVICES)}
            self.env = self.devstack.service_env({
                **self.infra, "CRM_JWT_SECRET": self.secret,
                "CRM_DATABASE_PREFIX": self.database_prefix,
                "CRM_CONSUMER_GROUP_PREFIX": f"crm.b{self.run_id}."}, self.ports)
        except BaseException:
            print_log_tails(self.data_dir / "logs")
            self._clean_up()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            print_log_tails(self.data_dir / "logs")
        self._clean_up()

    @property
    def bootstrap(self) -> str:
        return self.infra["CRM_KAFKA_BOOTSTRAP_SERVERS"]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service][0]}"

    def servers(self) -> str:
        return (f"Kafka (tansu) {address_of(self.bootstrap)}, MongoDB (SecantusDB) "
                f"{address_of(self.infra['CRM_MONGO_URI'])}, PostgreSQL "
                f"{address_of(self.infra['CRM_POSTGRES_DSN'])}")

    def spawn(self, service: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one service without waiting for it (see ``wait_ready``)."""
        if self.devstack.port_open(self.ports[service][0]):
            raise self.devstack.InfraError(f"port {self.ports[service][0]} ({service}) is taken")
        return self.stack.spawn(service, [sys.executable, "-m", f"crm_{service}"],
                                env={**self.env, **(extra_env or {})})

    def wait_ready(self, service: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
        url = f"{self.url(service)}/readyz"
        self.devstack.wait_for(lambda: http_ready(url), timeout, f"the {service} service", proc,
                               self.stack.log_dir / f"{service}.log")

    def start(self, services: Iterable[str], extra_env: dict[str, str] | None = None) -> None:
        """Start ``services`` (each with ``extra_env`` added) and wait until each one is ready."""
        procs = {name: self.spawn(name, extra_env) for name in services}
        for name, proc in procs.items():
            self.wait_ready(name, proc)

    def stop(self, service: str) -> None:
        self.stack.stop(service)

    def pid(self, name: str) -> int | None:
        """The pid (and process group) of a service or a server this platform started."""
        pid: int | None = self.stack.pid_of(name)
        return pid

    def _clean_up(self) -> None:
        progress("stopping everything")
        self.devstack.stop_services(self.devstack.Stack(self.data_dir))
        if self.infra.get("CRM_POSTGRES_DSN"):
            try:
                drop_databases(self.infra["CRM_POSTGRES_DSN"], self.database_prefix)
            except Exception as exc:
                progress(f"could not drop the databases {self.database_prefix}*: {exc!r}")
        self.devstack.down(self.data_dir)
        if self.keep_logs is not None and self.stack.log_dir.exists():
            shutil.copytree(self.stack.log_dir, self.keep_logs, dirs_exist_ok=True)
            progress(f"logs copied to {self.keep_logs}")
        shutil.rmtree(self.data_dir, ignore_errors=True)
