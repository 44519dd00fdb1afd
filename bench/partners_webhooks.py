"""Partners' signed webhooks: fan-out of public events to many endpoints, and a replay, next to
the broker's raw consume rate of the same events measured in the same run.

    .venv/bin/python bench/partners_webhooks.py [--events 20000] [--endpoints 100]
        [--replay 1000000] [--timeout 1800] [--logs DIR]

The partners service is started as `make dev` starts it (deploy/local/devstack.py) but isolated
(bench/_platform.py); contacts and the other services are not. A receiver process (this script
with ``--receiver``) answers every webhook on one loopback port, one path per endpoint, with a
204 at once, and notes when each arrived.

1. **Fan-out.** A workspace opts in, and ``--endpoints`` webhook subscriptions to
   ``crm.pipeline.deal.won.v1`` are made through the API (a partner per 25). ``--events``
   internal DealWon events (each its own deal, so its own key) are produced to
   ``crm.pipeline.v1`` as pipeline's relay produces them; partners projects each through the
   data policy into the replay store and fans it out, and the dispatcher signs and POSTs it to
   every endpoint. Latency is from the event stored (its ``recorded_at``: the storing
   transaction's time) to the receiver reading the request.
2. **Baseline.** A fresh plain consumer (no group) reads the same records back from
   ``crm.pipeline.v1``: the broker's raw consume rate for these events.
3. **Replay.** ``--replay`` events of another workspace are written into the replay store
   with COPY (as the projection would have stored them); one subscription there replays them
   by time range (``POST /v1/subscriptions/{id}/replay``), and they go to one endpoint. Figures:
   the replay request (the deliveries queued) and the deliveries received per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _platform import (
    Platform,
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
    table,
)
from aiokafka import AIOKafkaConsumer, TopicPartition

from crm.pipeline.v1 import events_pb2 as pipeline
from crmkit.auth import issue_token
from crmkit.kafka import make_event
from crmkit.topics import PIPELINE

WON = "crm.pipeline.deal.won.v1"
PER_PARTNER = 25
STALL = 60.0  # seconds without a new webhook, once every event is produced, that end a wait


# --- the receiver (its own process) ---------------------------------------------------------

async def receive(port: int) -> None:
    """Answer every POST with 204 and note (arrival time, path, webhook-id); ``GET /count``
    says how many arrived, ``GET /dump`` gives them all as JSON lines."""
    arrived: list[tuple[float, str, str]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                method, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                body = b""
                if method == "POST":
                    arrived.append((time.time(), path, headers.get("webhook-id", "")))
                elif path == "/count":
                    body = str(len(arrived)).encode()
                elif path == "/dump":
                    body = "\n".join(json.dumps(a) for a in arrived).encode()
                status = "204 No Content" if method == "POST" else "200 OK"
                writer.write(f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


class Receiver:
    def __init__(self, port: int, log_dir: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)],
                                     stdout=(log_dir / "receiver.log").open("wb"), stderr=subprocess.STDOUT)
        self.http = httpx.AsyncClient(base_url=self.url, timeout=120)

    async def ready(self) -> None:
        for _ in range(600):  # importing this script takes a while on a busy machine
            try:
                await self.count()
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the receiver did not start")

    async def count(self) -> int:
        return int((await self.http.get("/count")).text)

    async def arrivals(self) -> list[tuple[float, str, str]]:
        text = (await self.http.get("/dump")).text
        return [tuple(json.loads(line)) for line in text.splitlines()]  # type: ignore[misc]

    async def close(self) -> None:
        await self.http.aclose()
        self.proc.terminate()
        self.proc.wait(10)


async def wait_for(receiver: Receiver, expected: int, deadline: float, what: str) -> int:
    """Until ``expected`` webhooks have arrived in all, the deadline, or a stall."""
    seen, last_change, last_report = -1, time.perf_counter(), time.perf_counter()
    while True:
        count = await receiver.count()
        now = time.perf_counter()
        if count != seen:
            seen, last_change = count, now
        if count >= expected or now > deadline or now - last_change > STALL:
            return count
        if now - last_report > 10:
            progress(f"{what}: {count:,} of {expected:,} webhooks")
            last_report = now
        await asyncio.sleep(0.2)


# --- setting up through the API --------------------------------------------------------------

async def opt_in_and_subscribe(http: httpx.AsyncClient, admin: dict[str, str], urls: list[str]) -> list[str]:
    opted = await http.put("/v1/settings", json={"enabled": True}, headers={**admin, "If-Match": '"0"'})
    assert opted.status_code == 200, opted.text
    ids: list[str] = []
    for start in range(0, len(urls), PER_PARTNER):
        partner = await http.post("/v1/partners", json={"name": f"bench {start}"}, headers=admin)
        assert partner.status_code == 201, partner.text
        for url in urls[start:start + PER_PARTNER]:
            sub = await http.post(f"/v1/partners/{partner.json()['id']}/subscriptions", headers=admin, json={
                "name": url, "event_types": [WON], "delivery": "webhook", "url": url})
            assert sub.status_code == 201, sub.text
            ids.append(sub.json()["id"])
    return ids


def deal_won(workspace: str, n: int) -> Any:
    deal = pipeline.Deal(id=f"deal-{n}", workspace_id=workspace, pipeline_id="p1", stage_id="won",
                         title=f"Deal {n}", amount_minor=100_000 + n, currency="EUR", owner_id="rep-1",
                         contact_id=f"contact-{n % 1000}", status=pipeline.DEAL_STATUS_WON)
    return make_event(topic=PIPELINE, type=WON, source="/crm/pipeline", workspace=workspace,
                      subject=deal.id, payload=pipeline.DealWon(deal=deal, reason="Price", actor="rep-1"))


async def produce(bootstrap: str, workspace: str, count: int) -> None:
    client = producer(bootstrap)
    await client.start()
    try:
        for offset in range(0, count, 500):
            futures = []
            for n in range(offset, min(count, offset + 500)):
                event = deal_won(workspace, n)
                futures.append(await client.send(PIPELINE, event.envelope.data, key=event.key.encode(),
                                                  headers=event.envelope.headers()))
            await asyncio.gather(*futures)
    finally:
        await client.stop()


async def consume_back(bootstrap: str, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
                       ) -> tuple[int, float]:
    """A fresh plain consumer reads ``starts`` .. ``ends``: records and seconds."""
    consumer = await open_reader(bootstrap, list(starts))
    try:
        for partition, offset in starts.items():
            consumer.seek(partition, offset)
        left = {p: ends[p] - starts[p] for p in starts if ends[p] > starts[p]}
        read, started = 0, time.perf_counter()
        while left:
            batches = await consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                read += len(records)
                if partition in left and records[-1].offset + 1 >= ends[partition]:
                    del left[partition]
        return read, time.perf_counter() - started
    finally:
        await consumer.stop()


async def stored_at(dsn: str, workspace: str) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, extract(epoch FROM recorded_at)::float8 AS at FROM public_events"
                                " WHERE workspace_id = $1", workspace)
    finally:
        await conn.close()
    return {row["id"]: row["at"] for row in rows}


async def store_for_replay(dsn: str, workspace: str, count: int) -> None:
    """``count`` deal.won events in the replay store, as the projection stores them."""
    now = datetime.now(UTC)
    rows = [(workspace, f"replay-{n}", "crm.public.pipeline.v1", WON, "/crm/pipeline", f"deal-{n}",
             f"{workspace}:deal-{n}", now, [], json.dumps({"id": f"deal-{n}", "pipeline_id": "p1",
                                                          "amount_minor": str(n), "currency": "EUR"}))
            for n in range(count)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("public_events", records=rows, columns=(
            "workspace_id", "id", "topic", "type", "source", "subject", "key", "time", "contact_ids", "data"))
    finally:
        await conn.close()


# --- the run -------------------------------------------------------------------------------------

async def benchmark(args: argparse.Namespace, platform: Platform, receiver: Receiver, host: str
                    ) -> tuple[str, bool]:
    workspace, replay_workspace = f"bench-{platform.run_id}", f"bench-{platform.run_id}-replay"
    dsn = platform.infra["CRM_POSTGRES_DSN"].rsplit("/", 1)[0] + f"/{platform.database_prefix}partners"
    token = issue_token(platform.secret, subject="bench", workspace_id=workspace, roles=("admin",))
    replay_token = issue_token(platform.secret, subject="bench", workspace_id=replay_workspace,
                               roles=("admin",))
    urls = [f"{receiver.url}/e/{i}" for i in range(args.endpoints)]
    expected = args.events * args.endpoints
    async with httpx.AsyncClient(base_url=platform.url("partners"), timeout=3600) as http:
        await opt_in_and_subscribe(http, {"Authorization": f"Bearer {token}"}, urls)
        starts = await end_offsets(platform.bootstrap)

        progress(f"fan-out: {args.events:,} deal.won events to {args.endpoints} endpoints")
        started = time.perf_counter()
        await produce(platform.bootstrap, workspace, args.events)
        produced = time.perf_counter() - started
        received = await wait_for(receiver, expected, started + args.timeout, "fan-out")
        arrivals = await receiver.arrivals()
        stored = await stored_at(dsn, workspace)
        latencies = [at - stored[msg_id] for at, _, msg_id in arrivals if msg_id in stored]
        first_stored = min(stored.values(), default=0.0)
        span = max((at for at, _, _ in arrivals), default=first_stored) - first_stored

        ends = await end_offsets(platform.bootstrap)
        progress("baseline: the same records read back by a fresh plain consumer")
        consumed, consume_seconds = await consume_back(platform.bootstrap, starts, ends)

        replayed = queued = 0
        replay_seconds = queue_seconds = None
        if args.replay:
            progress(f"replay: {args.replay:,} events into the replay store (COPY)")
            await store_for_replay(dsn, replay_workspace, args.replay)
            replay_admin = {"Authorization": f"Bearer {replay_token}"}
            [sub_id] = await opt_in_and_subscribe(http, replay_admin, [f"{receiver.url}/replay"])
            before = await receiver.count()
            now = datetime.now(UTC)
            progress("replay: requesting it")
            started = time.perf_counter()
            response = await http.post(f"/v1/subscriptions/{sub_id}/replay", headers=replay_admin, json={
                "from_time": (now - timedelta(hours=1)).isoformat(),
                "to_time": (now + timedelta(hours=1)).isoformat()})
            assert response.status_code == 202, response.text
            queue_seconds = time.perf_counter() - started
            queued = response.json()["deliveries"]
            total = await wait_for(receiver, before + queued, started + args.timeout, "replay")
            replay_seconds = time.perf_counter() - started
            replayed = total - before

    rate = per_second(len(latencies), span)
    events_rate = rate / args.endpoints if rate else None
    base = per_second(consumed, consume_seconds)
    rows = [
        ["figure", "webhooks", "broker alone", "ratio"],
        ["events produced to crm.pipeline.v1", f"{args.events:,} in {produced:,.1f} s", "", ""],
        ["webhooks received (events x endpoints)", f"{received:,} of {expected:,}", f"{consumed:,} records",
         ""],
        ["deliveries/s (first stored -> last received)", number(rate, "/s"), number(base, "/s"),
         ratio(rate, base)],
        ["events/s fanned out to every endpoint", number(events_rate, "/s"), number(base, "/s"),
         ratio(events_rate, base)],
        ["delivery latency p50 (stored -> received)", number(percentile_ms(latencies, 50), "ms"), "", ""],
        ["delivery latency p99", number(percentile_ms(latencies, 99), "ms"), "", ""],
    ]
    if args.replay:
        rows += [
            ["replay: deliveries queued by the request", f"{queued:,} in {queue_seconds:,.1f} s",
             "", ""],
            ["replay: queued/s", number(per_second(queued, queue_seconds or 0), "/s"), "", ""],
            ["replay: received (one endpoint)", f"{replayed:,} of {queued:,}", "", ""],
            ["replay: replayed deliveries/s (request -> last received)",
             number(per_second(replayed, replay_seconds or 0), "/s"), number(base, "/s"),
             ratio(per_second(replayed, replay_seconds or 0), base)],
        ]
    lines = [f"partners webhooks: {host}", f"servers: {platform.servers()}", "",
             *table(rows, right=(1, 2, 3))]
    complete = received >= expected and replayed >= queued
    if not complete:
        lines.append("INCOMPLETE: not every webhook arrived (timeout or stall); rates are until the last "
                     "one seen")
    return "\n".join(lines), complete


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """Where each partition of crm.pipeline.v1 ends now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        found = consumer.partitions_for_topic(PIPELINE) or set()
        partitions = [TopicPartition(PIPELINE, p) for p in sorted(found)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--replay", type=int, default=1_000_000, help="events to replay; 0: no replay")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each phase")
    parser.add_argument("--logs", type=Path, default=None, help="copy the services' logs here at the end")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        asyncio.run(receive(args.receiver))
        return 0
    host = machine()
    platform = Platform(keep_logs=args.logs)
    try:
        with platform:
            progress("starting partners and the receiver")
            platform.start(["partners"])
            [port] = free_ports(1)
            receiver = Receiver(port, platform.stack.log_dir)

            async def run() -> tuple[str, bool]:
                try:
                    await receiver.ready()
                    return await benchmark(args, platform, receiver, host)
                finally:
                    await receiver.close()

            text, complete = asyncio.run(run())
            print(text, flush=True)
            if not complete:
                print_log_tails(platform.stack.log_dir)
            return 0 if complete else 1
    except platform.devstack.InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
