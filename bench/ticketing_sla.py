"""The SLA scheduler at scale: open tickets whose deadlines fall due over a minute, and how late
their sla.warning / sla.breached events come, next to the broker's own produce latency.

    .venv/bin/python bench/ticketing_sla.py [--tickets 100000] [--spread 60] [--timeout 300]

It starts the infrastructure as `make dev` does, isolated (`_platform.py`), and the ticketing
service as its own process (its scheduler and outbox relay are what is measured). Then:

1. **Baseline**: ``--baseline`` records of the size of an SLA event go to a fresh topic through a
   plain aiokafka producer (crmkit's producer settings), paced at the rate the alerts will come;
   send -> acknowledgement, and send -> read by a plain consumer.
2. **Seed**: one 24/7 calendar and one policy (first response ``--target`` seconds, warning
   ``--warn-before`` seconds ahead of the deadline) in one workspace, and ``--tickets`` open
   tickets with their opening message, their clocks (computed by the domain, as the service
   would) and their two owed alerts, written with COPY in one transaction. The deadlines are
   spread evenly over ``--spread`` seconds, starting a few seconds after the seed commits.
   With ``--recompute`` the stored clocks are older than their tickets' last change, so the
   scheduler recomputes every ticket's clock from its history before firing (its path for a
   ticket changed by something that ran no hook).
3. **Run**: the service's scheduler fires them as they fall due. A plain consumer of
   crm.tickets.v1 reads the events; at the end the alert rows give ``fired_at``.

Figures: ``fired_at - due_at`` (the scheduler's lag: the event is in the outbox, committed) and
``read - due_at`` (on the topic, read by a consumer), per kind, as p50/p90/p99/max; the
baseline's produce latencies beside them. Everything runs on one machine; compare runs on the
same machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "ticketing" / "src"))

from _platform import (
    Platform,
    create_topic,
    machine,
    open_reader,
    percentile_ms,
    producer,
    progress,
    table,
)
from aiokafka import TopicPartition

from crm.ticketing.v1 import events_pb2
from crm_ticketing.domain.business_hours import BusinessCalendar
from crm_ticketing.domain.events import SLA_BREACHED, SLA_WARNING
from crm_ticketing.domain.sla import (
    EventKind,
    SlaPolicy,
    TicketEvent,
    WarningThreshold,
    alerts,
    compute_clock,
)
from crmkit.ids import uuid7
from crmkit.kafka import Envelope
from crmkit.topics import TICKETS

WORKSPACE = "bench-sla"
EVENT_BYTES = 330  # about the size of an SlaBreached event with its headers


def distribution(samples: list[float]) -> list[str]:
    cells = []
    for q in (50, 90, 99, 100):
        value = percentile_ms(samples, q)
        cells.append("-" if value is None else f"{value:,.1f} ms")
    return cells


async def baseline(bootstrap: str, count: int, rate: float) -> tuple[list[float], list[float]]:
    """send -> ack and send -> read of ``count`` records, sent at ``rate`` per second."""
    topic = f"bench.baseline.sla.{uuid7().hex[:8]}"
    partitions = await create_topic(bootstrap, topic, 6)
    reader = await open_reader(bootstrap, partitions)
    sent_at: dict[bytes, float] = {}
    acks: list[float] = []
    reads: list[float] = []

    async def read() -> None:
        while len(reads) < count:
            batches = await reader.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batches.values():
                reads.extend(now - sent_at[r.key] for r in records if r.key in sent_at)

    kafka = producer(bootstrap)
    await kafka.start()
    reading = asyncio.create_task(read())
    try:
        payload = b"x" * EVENT_BYTES
        started = time.perf_counter()

        async def one(index: int) -> None:
            key = f"k{index}".encode()
            sent_at[key] = time.perf_counter()
            await kafka.send_and_wait(topic, payload, key=key)
            acks.append(time.perf_counter() - sent_at[key])

        pending = []
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(index)))
        await asyncio.gather(*pending)
        await asyncio.wait_for(reading, 60)
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await kafka.stop()
        await reader.stop()
    return acks, reads


async def seed(dsn: str, tickets: int, spread: float, target: int, warn_before: int, recompute: bool
               ) -> tuple[int, datetime, datetime]:
    """Write the calendar, the policy and ``tickets`` tickets with clocks and alerts; returns
    the alerts written and the first and last deadline."""
    calendar = BusinessCalendar.always_open()
    policy = SlaPolicy(id=uuid7(), name="Bench", position=0, calendar=calendar,
                       first_response=timedelta(seconds=target),
                       warning=WarningThreshold(before=timedelta(seconds=warn_before)))
    calendar_id = uuid7()
    # Clocks are computed for deadlines from now, then every time is shifted so that the first
    # alert falls due ``margin`` seconds after the rows are ready (the COPY takes about a second
    # per 10k tickets on 2 busy CPUs; twice that, to be safe).
    margin = 5 + tickets / 5_000
    first_deadline = datetime.now(UTC) + timedelta(seconds=warn_before)
    rows: dict[str, list[tuple[object, ...]]] = {"tickets": [], "ticket_messages": [], "ticket_sla": [],
                                                 "ticket_sla_targets": [], "sla_alerts": []}
    last_deadline = first_deadline
    now = datetime.now(UTC)
    if target <= spread + warn_before:
        raise SystemExit("--target must be longer than --spread plus --warn-before")
    for index in range(tickets):
        deadline = first_deadline + timedelta(seconds=spread * index / max(tickets - 1, 1))
        created = deadline - timedelta(seconds=target)
        ticket_id, contact_id = uuid7(), uuid7()
        clock = compute_clock(policy, ticket_id, [TicketEvent(created, EventKind.CREATED)], now)
        rows["tickets"].append((ticket_id, WORKSPACE, contact_id, "email", f"Bench {index}", "new", 1,
                                created, created, "email", f"c{index}@bench.example"))
        rows["ticket_messages"].append((WORKSPACE, f"bench-{ticket_id}", ticket_id, created, "inbound",
                                        str(contact_id), "hello"))
        # A clock older than the ticket's last change is recomputed before its alerts fire.
        evaluated = created - timedelta(seconds=1) if recompute else clock.evaluated_at
        rows["ticket_sla"].append((ticket_id, WORKSPACE, policy.id, evaluated))
        for t in clock.targets:
            rows["ticket_sla_targets"].append((
                ticket_id, WORKSPACE, policy.id, t.target.value, t.cycle, int(t.goal.total_seconds()),
                t.state.value, t.started_at, t.elapsed // timedelta(milliseconds=1), t.deadline, t.warning_at,
                t.stopped_at, t.met_at, t.breached_at))
        for alert in alerts(clock):
            rows["sla_alerts"].append((WORKSPACE, ticket_id, policy.id, alert.key, alert.kind.value,
                                       alert.target.value, alert.cycle, alert.at))
        last_deadline = deadline
    columns = {
        "tickets": ("id", "workspace_id", "contact_id", "channel", "subject", "status", "message_count",
                    "created_at", "updated_at", "requester_kind", "requester"),
        "ticket_messages": ("workspace_id", "interaction_id", "ticket_id", "occurred_at", "direction",
                            "author", "body"),
        "ticket_sla": ("ticket_id", "workspace_id", "policy_id", "evaluated_at"),
        "ticket_sla_targets": ("ticket_id", "workspace_id", "policy_id", "target", "cycle", "goal_seconds",
                               "state", "started_at", "elapsed_ms", "deadline", "warning_at", "stopped_at",
                               "met_at", "breached_at"),
        "sla_alerts": ("workspace_id", "ticket_id", "policy_id", "key", "kind", "target", "cycle", "due_at"),
    }
    shift = datetime.now(UTC) + timedelta(seconds=margin) - (first_deadline - timedelta(seconds=warn_before))
    for name, records in rows.items():
        rows[name] = [tuple(v + shift if isinstance(v, datetime) else v for v in row) for row in records]
    first_deadline, last_deadline = first_deadline + shift, last_deadline + shift
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO sla_calendars (id, workspace_id, name, definition)"
                " VALUES ($1, $2, '24/7', $3::jsonb)",
                calendar_id, WORKSPACE, json.dumps(calendar.to_dict()))
            await conn.execute(
                "INSERT INTO sla_policies (id, workspace_id, name, calendar_id, first_response_seconds,"
                " warning_before_seconds) VALUES ($1, $2, 'Bench', $3, $4, $5)",
                policy.id, WORKSPACE, calendar_id, target, warn_before)
            for name, records in rows.items():
                await conn.copy_records_to_table(name, records=records, columns=columns[name])
    finally:
        await conn.close()
    if datetime.now(UTC) > first_deadline - timedelta(seconds=warn_before):
        progress("warning: the seed committed after the first alerts fell due; their lag includes the seed")
    return len(rows["sla_alerts"]), first_deadline, last_deadline


async def bench(args: argparse.Namespace, platform: Platform) -> int:
    dsn = platform.infra["CRM_POSTGRES_DSN"].rsplit("/", 1)[0] + f"/{platform.database_prefix}ticketing"
    rate = 2 * args.tickets / args.spread
    progress(f"baseline: {args.baseline:,} records at {rate:,.0f}/s")
    acks, reads = await baseline(platform.bootstrap, args.baseline, rate)

    partitions = [TopicPartition(TICKETS, p) for p in sorted(await _partitions(platform.bootstrap))]
    reader = await open_reader(platform.bootstrap, partitions, from_end=True)
    on_topic: dict[str, list[float]] = {SLA_WARNING: [], SLA_BREACHED: []}
    seen: set[str] = set()
    duplicates = 0

    async def read() -> None:
        nonlocal duplicates
        while True:
            batches = await reader.getmany(timeout_ms=200)
            now = datetime.now(UTC)
            for records in batches.values():
                for record in records:
                    envelope = Envelope.from_record(record.headers, record.value)
                    if envelope.type == SLA_WARNING:
                        alert = events_pb2.SlaWarning.FromString(envelope.data).alert
                    elif envelope.type == SLA_BREACHED:
                        alert = events_pb2.SlaBreached.FromString(envelope.data).alert
                    else:
                        continue
                    if alert.key in seen:
                        duplicates += 1
                        continue
                    seen.add(alert.key)
                    late = now - alert.due_at.ToDatetime(tzinfo=UTC)
                    on_topic[envelope.type].append(late.total_seconds())

    reading = asyncio.create_task(read())
    try:
        progress(f"seeding {args.tickets:,} tickets")
        started = time.perf_counter()
        total, first, last = await seed(dsn, args.tickets, args.spread, args.target, args.warn_before,
                                         args.recompute)
        progress(f"seeded {total:,} alerts in {time.perf_counter() - started:.1f} s; deadlines "
                 f"{first:%H:%M:%S} to {last:%H:%M:%S}")
        give_up = time.monotonic() + (last - datetime.now(UTC)).total_seconds() + args.timeout
        while len(seen) < total and time.monotonic() < give_up:
            await asyncio.sleep(2)
            progress(f"{len(seen):,} of {total:,} alerts on the topic")
        await asyncio.sleep(2)  # duplicates, if any, would come now
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await reader.stop()
    conn = await asyncpg.connect(dsn)
    try:
        fired = await conn.fetch(
            "SELECT kind, extract(epoch FROM fired_at - due_at)::float8 AS lag FROM sla_alerts"
            " WHERE workspace_id = $1 AND fired_at IS NOT NULL", WORKSPACE)
        spread_fired = await conn.fetchrow(
            "SELECT min(fired_at) AS first, max(fired_at) AS last FROM sla_alerts WHERE workspace_id = $1",
            WORKSPACE)
    finally:
        await conn.close()
    lags = {"warning": [r["lag"] for r in fired if r["kind"] == "warning"],
            "breached": [r["lag"] for r in fired if r["kind"] == "breached"]}
    print()
    print(f"SLA scheduler: {args.tickets:,} open tickets, {total:,} alerts due over {args.spread:.0f} s "
          f"({rate:,.0f}/s); one ticketing process"
          + ("; every ticket's clock recomputed before firing" if args.recompute else ""))
    print(f"machine: {MACHINE}")
    print(f"servers: {platform.servers()}")
    print()
    rows = [["figure", "count", "p50", "p90", "p99", "max"]]
    rows.append(["scheduler: fired_at - due_at", "", "", "", "", ""])
    for kind, samples in lags.items():
        rows.append([f"  sla.{kind}", f"{len(samples):,}", *distribution(samples)])
    rows.append(["on the topic: read - due_at", "", "", "", "", ""])
    for kind, samples in on_topic.items():
        label = "sla.warning" if kind == SLA_WARNING else "sla.breached"
        rows.append([f"  {label}", f"{len(samples):,}", *distribution(samples)])
    rows.append(["baseline (aiokafka, same broker, same rate)", "", "", "", "", ""])
    rows.append(["  send -> ack", f"{len(acks):,}", *distribution(acks)])
    rows.append(["  send -> read", f"{len(reads):,}", *distribution(reads)])
    for line in table(rows, right=(1, 2, 3, 4, 5)):
        print(line)
    all_lags = lags["warning"] + lags["breached"]
    late = sum(1 for lag in all_lags if lag > 1.0)
    print()
    print(f"fired within 1 s of due: {len(all_lags) - late:,} of {total:,}; fired: {len(all_lags):,}; "
          f"duplicates on the topic: {duplicates}")
    if spread_fired["first"] is not None:
        print(f"firing span: {(spread_fired['last'] - spread_fired['first']).total_seconds():.1f} s "
              f"for deadlines spanning {(last - first).total_seconds() + args.warn_before:.1f} s")
    complete = len(all_lags) == total and len(seen) == total
    if not complete:
        print("INCOMPLETE: not every alert fired or reached the topic before --timeout")
    return 0 if complete and not duplicates else 1


async def _partitions(bootstrap: str) -> set[int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the cluster's metadata
        return consumer.partitions_for_topic(TICKETS) or {0}
    finally:
        await consumer.stop()


MACHINE = ""


def main() -> int:
    global MACHINE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which deadlines fall due")
    parser.add_argument("--target", type=int, default=600, help="first response target, seconds")
    parser.add_argument("--warn-before", type=int, default=5, help="warning this many seconds before")
    parser.add_argument("--recompute", action="store_true",
                        help="seed clocks older than their tickets' last change: every alert re-checked by "
                             "recomputing its ticket's clock from its history")
    parser.add_argument("--baseline", type=int, default=5000, help="records in the produce baseline")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait after the last deadline")
    args = parser.parse_args()
    MACHINE = machine()
    with Platform() as platform:
        platform.start(["ticketing"])
        return asyncio.run(bench(args, platform))


if __name__ == "__main__":
    sys.exit(main())
