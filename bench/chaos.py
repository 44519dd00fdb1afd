"""Chaos: inbound interactions on every channel pushed at a steady rate while each service is
killed (SIGKILL) and restarted in turn, and (with --broker-restart) the broker is killed and
restarted once too; then, from the stores, every interaction must be stored once, on its
contact's timeline once, threaded into exactly one ticket (its sender's), and counted once by
every consumer.

    .venv/bin/python bench/chaos.py [-n 10000] [--rate 40] [--broker-restart]

The platform is started as `make dev` starts it (deploy/local/devstack.py), isolated as the
benchmarks isolate it (bench/_platform.py). tansu keeps its data in memory by default, which a
restart wipes: with --broker-restart it stores in S3 instead, served by deploy/local/s3_store.py
(a process apart, never killed), so a restart of the broker keeps every topic, record and
committed offset (docs/proof.md says why not moto or s3rver). On S3 every fetch costs the
broker S3 calls, and tansu answers a fetch with nothing new only when its wait expires: at the
platform's default wait (50 ms, ``CRM_KAFKA_FETCH_MAX_WAIT_MS``) idle consumers would keep the
store busy, so with --broker-restart the services wait up to ``--s3-fetch-wait-ms`` (1000)
instead. Senders are a fixed
set per channel and each sender's messages form one conversation (emails answer the sender's
previous one), so the right contact and the right ticket of every interaction are known in
advance. Prints a report; exits 1 when anything was lost, duplicated, misplaced or not accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
from _chaos_checks import Expected, Sent, drained_counts, verify
from _ingest_traffic import Secrets, ingest_env, make_sender, messenger_body, whatsapp_body
from _platform import (
    Platform,
    address_of,
    free_ports,
    machine,
    print_log_tails,
    progress,
)

from crm_ingest.domain.meta import sign as meta_sign
from crmkit.auth import issue_token

CHANNELS = ("email", "chat", "whatsapp", "messenger")
WEIGHTS = (4, 2, 2, 2)  # emails are the most common inbound traffic
WIDGET = "chaos-widget"
FIRST_HIT = ("contacts", "ingest", "ticketing", "pipeline", "campaigns")
HTTP_TIMEOUT = 30.0
RETRY_STATUSES = {429, 500, 502, 503, 504}  # a provider retries these (and dropped connections)


# --- what is sent ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    serial: int
    channel: str
    sender: int  # the sender's number within its channel
    previous: int | None  # the serial of the sender's previous message (emails answer it)


def plan(count: int, senders: int, seed: int = 11) -> list[Message]:
    """``count`` messages over the channels by WEIGHTS, each from one of ``senders`` per channel."""
    rng = random.Random(seed)
    last: dict[tuple[str, int], int] = {}
    messages = []
    for serial in range(count):
        channel = rng.choices(CHANNELS, WEIGHTS)[0]
        sender = rng.randrange(senders)
        messages.append(Message(serial, channel, sender, last.get((channel, sender))))
        last[channel, sender] = serial
    return messages


def email_id(tag: str, serial: int) -> str:
    return f"chaos-{tag}-{serial}@chaos.example"


def email_of(tag: str, message: Message) -> bytes:
    sender = make_sender("email", message.sender, known=True)
    email = EmailMessage()
    email["From"] = f"{sender.name} <{sender.address}>"
    email["To"] = "support@acme.example"
    email["Subject"] = f"Order question {message.sender}"
    email["Message-ID"] = f"<{email_id(tag, message.serial)}>"
    if message.previous is not None:
        email["In-Reply-To"] = f"<{email_id(tag, message.previous)}>"
        email["References"] = f"<{email_id(tag, message.previous)}>"
    email["Date"] = format_datetime(datetime.now(UTC))
    email.set_content(f"Message {message.serial}: where is my order? It has not arrived yet.")
    return email.as_bytes()


def external_id(tag: str, message: Message) -> str:
    """The provider's message id as ingest stores it (chat: the text, which carries the serial)."""
    return {"email": email_id(tag, message.serial), "whatsapp": f"wamid.{tag}.{message.serial}",
            "messenger": f"m_{tag}.{message.serial}", "chat": chat_text(message)}[message.channel]


def chat_text(message: Message) -> str:
    return f"chaos message {message.serial}: is anyone there?"


class Traffic:
    """Sends each message through its channel's public endpoint, retrying as providers do
    (and as a chat widget resends with the same client id) until it is accepted."""

    def __init__(self, client: httpx.AsyncClient, tag: str, token: str, keys: Secrets,
                 give_up_at: float) -> None:
        self.client, self.tag, self.token, self.keys = client, tag, token, keys
        self.give_up_at = give_up_at
        self.chat: dict[int, dict[str, Any]] = {}  # sender -> its session (visitor_id, token)
        self.accepted: dict[int, float] = {}  # serial -> seconds from first POST to accepted
        self.refused: dict[int, str] = {}  # serial -> why it was not accepted
        self.retries: Counter[str] = Counter()
        self.server_errors: dict[str, str] = {}  # channel and status -> the first answer's body

    async def open_chats(self, senders: set[int]) -> None:
        for sender in sorted(senders):
            response = await self.client.post(f"/v1/chat/{WIDGET}/sessions",
                                              json={"name": f"Visitor {sender}"})
            response.raise_for_status()
            self.chat[sender] = response.json()

    def request(self, message: Message) -> tuple[str, dict[str, str], bytes]:
        if message.channel == "email":
            return ("/v1/channels/email/inbound",
                    {"Authorization": f"Bearer {self.token}", "Content-Type": "message/rfc822"},
                    email_of(self.tag, message))
        if message.channel == "chat":
            session = self.chat[message.sender]
            body = json.dumps({"client_id": f"c{message.serial}", "text": chat_text(message)}).encode()
            return (f"/v1/chat/{WIDGET}/messages", {"Authorization": f"Bearer {session['token']}",
                                                    "Content-Type": "application/json"}, body)
        kind = message.channel
        sender = make_sender(kind, message.sender, known=True)
        make, secret = ((whatsapp_body, self.keys.whatsapp) if kind == "whatsapp"
                        else (messenger_body, self.keys.messenger))
        body = make(self.tag, message.serial, sender)
        headers = {"Content-Type": "application/json",
                   "X-Hub-Signature-256": meta_sign(secret.encode(), body)}
        return f"/v1/channels/{kind}/webhook", headers, body

    async def send(self, message: Message) -> None:
        path, headers, body = self.request(message)
        start, attempt = time.perf_counter(), 0
        while time.perf_counter() < self.give_up_at:
            attempt += 1
            try:
                response = await self.client.post(path, content=body, headers=headers)
            except httpx.TransportError as exc:
                self.retries[f"{message.channel}: {type(exc).__name__}"] += 1
            else:
                if response.is_success:
                    self.accepted[message.serial] = time.perf_counter() - start
                    return
                if response.status_code not in RETRY_STATUSES:
                    self.refused[message.serial] = f"HTTP {response.status_code}: {response.text[:200]}"
                    return
                kind = f"{message.channel}: HTTP {response.status_code}"
                self.retries[kind] += 1
                self.server_errors.setdefault(kind, response.text[:300])
            await asyncio.sleep(min(0.25 * 2 ** min(attempt, 5), 5.0))
        self.refused[message.serial] = "still not accepted when the run gave up"


async def push(traffic: Traffic, messages: list[Message], rate: float, concurrency: int) -> float:
    """Message i is due i/rate seconds after the start; a sender's next message waits for its
    previous one to be accepted (so that an email's parent is in before its answer). Returns
    the seconds the push took."""
    start = time.perf_counter()
    slots = asyncio.Semaphore(concurrency)
    conversations: dict[tuple[str, int], list[Message]] = {}
    for message in messages:
        conversations.setdefault((message.channel, message.sender), []).append(message)

    async def conversation(items: list[Message]) -> None:
        for message in items:
            await asyncio.sleep(max(0.0, start + message.serial / rate - time.perf_counter()))
            async with slots:
                await traffic.send(message)

    async def report() -> None:
        while True:
            await asyncio.sleep(15)
            progress(f"pushed {len(traffic.accepted)}/{len(messages)} accepted, "
                     f"{len(traffic.refused)} refused, retries {dict(traffic.retries)}")

    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(conversation(items) for items in conversations.values()))
    finally:
        reporter.cancel()
    return time.perf_counter() - start


# --- the chaos ------------------------------------------------------------------------------

@dataclass
class Chaos:
    """Kills and restarts: each service with the command and environment it was started with
    (Platform.spawn, as devstack starts it), the broker with devstack's own start."""

    platform: Platform
    ingest_env: dict[str, str]
    down_seconds: float
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def start_service(self, name: str) -> None:
        extra = self.ingest_env if name == "ingest" else None
        self.procs[name] = self.platform.spawn(name, extra)
        self.platform.wait_ready(name, self.procs[name], timeout=300)

    def kill(self, name: str) -> None:
        pid = self.platform.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        os.killpg(pid, signal.SIGKILL)
        if name in self.procs:
            self.procs[name].wait()
        else:  # the broker: spawned by devstack.up in this process
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def restart_broker(self) -> None:
        infra = self.platform.infra
        kafka = int(address_of(infra["CRM_KAFKA_BOOTSTRAP_SERVERS"]).rsplit(":", 1)[1])
        mongo = int(address_of(infra["CRM_MONGO_URI"]).rsplit(":", 1)[1])
        postgres = int(address_of(infra["CRM_POSTGRES_DSN"]).rsplit(":", 1)[1])
        self.platform.devstack.up(self.platform.data_dir,
                                  {"kafka": kafka, "mongo": mongo, "postgres": postgres})

    async def hit(self, name: str, started: float) -> None:
        at = time.perf_counter() - started
        progress(f"chaos: SIGKILL {name}")
        await asyncio.to_thread(self.kill, "kafka" if name == "broker" else name)
        await asyncio.sleep(self.down_seconds)
        restart = self.restart_broker if name == "broker" else lambda: self.start_service(name)
        await asyncio.to_thread(restart)
        back = time.perf_counter() - started
        self.log.append(f"{name}: killed at {at:.0f}s, back (ready) at {back:.0f}s")
        progress(f"chaos: {name} is back after {back - at:.1f}s")

    async def run(self, targets: list[str], due: Callable[[int], bool], started: float) -> None:
        """Hit ``targets`` one after the other, the i-th (from 1) once ``due(i)``."""
        for index, name in enumerate(targets, start=1):
            while not due(index):  # noqa: ASYNC110 - a condition on the sender's counters
                await asyncio.sleep(0.5)
            await self.hit(name, started)


def targets(services: list[str], broker: bool) -> list[str]:
    """Every service in turn (the path of a message first), and the broker half way when it
    keeps its data."""
    order = [name for name in FIRST_HIT if name in services] + [
        name for name in services if name not in FIRST_HIT]
    middle = (len(order) + 1) // 2
    return [*order[:middle], *(["broker"] if broker else []), *order[middle:]]


# --- the run ---------------------------------------------------------------------------------

async def run(args: argparse.Namespace, platform: Platform) -> tuple[str, bool]:
    workspace = f"chaos-{platform.run_id}"
    keys = Secrets()
    extra = {
        **ingest_env(workspace, keys, f"127.0.0.1:{platform.ports['contacts'][1]}"),
        "INGEST_CHAT_WIDGETS": json.dumps({WIDGET: {"workspace_id": workspace}}),
        "INGEST_CHAT_SESSIONS_PER_MINUTE": "1000000",
        "INGEST_CHAT_MESSAGES_PER_MINUTE": "1000000",
        "INGEST_CHAT_REQUESTS_PER_MINUTE": "1000000",
    }
    services = list(platform.devstack.SERVICES)
    chaos = Chaos(platform, extra, args.down)
    progress(f"starting the services: {', '.join(services)}")
    await asyncio.gather(*(asyncio.to_thread(chaos.start_service, name) for name in services))

    messages = plan(args.n, args.senders)
    token = issue_token(platform.secret, subject="chaos", workspace_id=workspace, roles=["admin"],
                        ttl_seconds=12 * 3600)
    started = time.perf_counter()
    give_up_at = started + args.n / args.rate + args.timeout
    async with httpx.AsyncClient(base_url=platform.url("ingest"), timeout=HTTP_TIMEOUT, trust_env=False,
                                 limits=httpx.Limits(max_connections=args.concurrency)) as client:
        traffic = Traffic(client, platform.run_id, token, keys, give_up_at)
        await traffic.open_chats({m.sender for m in messages if m.channel == "chat"})
        hit_list = targets(services, broker=args.broker_restart)
        progress(f"pushing {args.n} messages at {args.rate:g}/s; a kill every "
                 f"{args.n // (len(hit_list) + 1)} accepted messages")
        pushed = asyncio.Event()

        def due(index: int) -> bool:
            """Spread evenly over the push (and at once for any left when it ends)."""
            return pushed.is_set() or len(traffic.accepted) >= index * args.n / (len(hit_list) + 1)

        hits = asyncio.create_task(chaos.run(hit_list, due, started))
        push_seconds = await push(traffic, messages, args.rate, args.concurrency)
        pushed.set()
        progress(f"push done in {push_seconds:.0f}s: {len(traffic.accepted)} accepted, "
                 f"{len(traffic.refused)} refused")
        await hits

    sent = Sent(workspace=workspace, messages=messages, accepted=set(traffic.accepted),
                external_ids={m.serial: external_id(platform.run_id, m) for m in messages},
                chat_visitors={s: session["visitor_id"] for s, session in traffic.chat.items()})
    expected = Expected.of(sent)
    drain_start = time.perf_counter()
    counts = await drained_counts(platform, workspace, len(sent.accepted), args.settle, args.timeout)
    drain_seconds = time.perf_counter() - drain_start
    checks, ok = await verify(platform, sent, expected)
    total = time.perf_counter() - started
    refused = Counter(traffic.refused.values())
    mix = ", ".join(f"{channel} {n}" for channel, n in sorted(Counter(m.channel for m in messages).items()))
    lines = [
        "",
        f"chaos: {args.n} inbound messages ({mix}) "
        f"from {args.senders} senders per channel, {args.rate:g}/s, {args.concurrency} in flight",
        f"machine: {args.host}",
        f"servers: {platform.servers()}; tansu "
        + ("on S3 (deploy/local/s3_store.py), so its restart keeps its data" if args.broker_restart else
           "in memory, so it is not restarted (no --broker-restart)"),
        "",
        "what was done to the platform (seconds from the first message):",
        *(f"  {line}" for line in chaos.log),
        "",
        f"accepted {len(traffic.accepted)}/{args.n} in {push_seconds:.0f}s "
        f"(retries: {dict(traffic.retries) or 'none'}; refused: {dict(refused) or 'none'})",
        *(f"  first {kind} answer: {body}" for kind, body in sorted(traffic.server_errors.items())),
        f"drained in {drain_seconds:.0f}s after the push (store counts at the end: {counts})",
        f"total {total:.0f}s",
        "",
        *checks,
    ]
    return "\n".join(lines), ok and not traffic.refused


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="messages to send (default 10000)")
    parser.add_argument("--rate", type=float, default=40.0, help="messages per second (default 40)")
    parser.add_argument("--senders", type=int, default=100, help="senders per channel (default 100)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--down", type=float, default=5.0,
                        help="seconds a killed process stays down before its restart (default 5)")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="the stores are drained when their counts have not moved for this "
                             "long, if they never reach what was sent (default 120)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds to keep retrying a message, and to wait for the drain (default 1800)")
    parser.add_argument("--broker-restart", action="store_true",
                        help="tansu stores in S3 (deploy/local/s3_store.py) and is killed and restarted "
                             "too; without it tansu is in memory and not restarted")
    parser.add_argument("--s3-fetch-wait-ms", type=int, default=1000,
                        help="with --broker-restart, how long a fetch may wait for records (default 1000)")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy the servers' and services' logs here at the end")
    args = parser.parse_args()
    if min(args.n, args.rate, args.senders, args.concurrency, args.timeout) <= 0 or args.down < 0:
        parser.error("-n, --rate, --senders, --concurrency and --timeout must be positive")
    return args


def main() -> int:
    args = parse_args()
    args.host = machine()  # before starting anything, for the load average
    platform = Platform(keep_logs=args.keep_logs)
    try:
        if args.broker_restart:
            # A process of the platform's stack, stopped with it; devstack's broker start reads
            # its settings from the environment, on every start.
            (port,) = free_ports(1)
            os.environ.update(platform.devstack.start_s3_store(platform.stack, port))
            # Inherited by every service started (and restarted) from here: see the docstring.
            os.environ["CRM_KAFKA_FETCH_MAX_WAIT_MS"] = str(args.s3_fetch_wait_ms)
        with platform:
            text, ok = asyncio.run(run(args, platform))
            print(text, flush=True)
            if not ok:
                print_log_tails(platform.stack.log_dir)
            return 0 if ok else 1
    except platform.devstack.InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        platform.devstack.down(platform.data_dir)
        return 1

if __name__ == "__main__":
    sys.exit(main())
