"""Ticketing at scale: the ticket list and saved views' pages at 1M tickets, next to raw asyncpg.

    .venv/bin/python bench/ticketing_reads.py [--tickets 1000000] [--reads 300] [--keep]

A throwaway database on the local PostgreSQL (127.0.0.1:5432, or CRM_POSTGRES_DSN) gets the
ticketing migrations, then ``--tickets`` tickets in the workspace ``bench`` (and a tenth as many
in another workspace, so that every query really is scoped) loaded with COPY in the order they
arrived: two years of tickets, older ones mostly closed, recent ones new/open/pending;
channels, priorities, 0-3 tags, 85 % assigned to 50 agents in 5 teams. Then, one query at a
time (latency, not throughput):

1. **Ticket list**, first page of 50: ``TicketingService.list_tickets`` (``GET /v1/tickets``);
   baseline: the same SELECT through the same pool.
2. **Views**, first page of 50 of typical saved views (``ViewsService.view_tickets``, what
   ``GET /v1/views/{id}/tickets`` does: read the view, check and build its filter, query, map);
   baseline: the very SQL the view runs (``store.views.page_query``), raw. The plan's index is
   printed beside each.
3. A view's **second page** (keyset cursor), and **counts** of every view in one call
   (``GET /v1/views/counts``; each count stops at 10,000).

The database is dropped at the end (``--keep`` keeps it). Figures are printed; nothing here
passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.views import parse_filter
from crm_ticketing.service import TicketingService, ViewsService
from crm_ticketing.store.tickets import _READ
from crm_ticketing.store.views import page_query
from crmkit.postgres import PgDatabase, create_pool, migrate
from crmkit.web import tune_gc

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "services" / "ticketing" / "migrations"
WORKSPACE = "bench"
CALLER = "agent-07"
AGENTS = [f"agent-{i:02d}" for i in range(50)]
TEAMS = [UUID(int=random.Random(i).getrandbits(128), version=4) for i in range(5)]
CHANNELS = (("email", 60), ("chat", 25), ("whatsapp", 10), ("sms", 5))
PRIORITIES = (("low", 20), ("normal", 60), ("high", 15), ("urgent", 5))
TYPES = ((None, 40), ("question", 30), ("incident", 15), ("problem", 10), ("task", 5))
TAGS = (("billing", 15), ("shipping", 12), ("bug", 10), ("refund", 8), ("feature", 5), ("vip", 3),
        ("returns", 6), ("login", 4))
RECENT = (("new", 15), ("open", 35), ("pending", 15), ("on_hold", 5), ("solved", 20), ("closed", 10))
OLD = (("new", 1), ("open", 2), ("pending", 1), ("on_hold", 1), ("solved", 10), ("closed", 85))
COLUMNS = ("id", "workspace_id", "contact_id", "channel", "subject", "status", "message_count",
           "created_at", "updated_at", "priority", "type", "tags", "version", "solved_at", "requester_kind",
           "requester", "team_id", "assignee")

VIEWS: dict[str, dict[str, Any]] = {
    "open": {"filters": {"status": ["open"]}},
    "my unsolved": {"filters": {"status": ["new", "open", "pending"], "assignee": "me"}},
    "urgent unsolved": {"filters": {"status": ["new", "open", "pending", "on_hold"],
                                    "priority": ["urgent", "high"]}},
    "vip email, new or open": {"filters": {"channel": ["email"], "tags": {"any": ["vip"]},
                                           "status": ["new", "open"]}},
    "open or pending, recently updated": {"filters": {"status": ["open", "pending"]}, "sort": "-updated_at"},
    "unassigned new": {"filters": {"assignee": "unassigned", "status": ["new"]}},
    "team open": {"filters": {"team_id": str(TEAMS[2]), "status": ["open"]}},
    "billing+refund, any status": {"filters": {"tags": {"all": ["billing", "refund"]}}},
}


def pick(rng: random.Random, weighted: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def rows(workspace: str, count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    span = timedelta(days=730).total_seconds()
    tag_names, tag_weights = [t for t, _ in TAGS], [w / 100 for _, w in TAGS]
    # Oldest first, as tickets arrive: the table's physical order follows creation time.
    for offset in sorted(rng.random() for _ in range(count)):
        created = now - timedelta(seconds=(1 - offset) * span)
        age = now - created
        status = pick(rng, RECENT if age < timedelta(days=30) else OLD)
        updated = created + (age * rng.random() ** 3)
        solved = updated if status in ("solved", "closed") else None
        tags = [t for t, w in zip(tag_names, tag_weights, strict=True) if rng.random() < w]
        assigned = rng.random() < (0.85 if status != "new" else 0.3)
        yield (UUID(int=rng.getrandbits(128), version=4), workspace,
               UUID(int=rng.getrandbits(128), version=4),
               pick(rng, CHANNELS), "Where is my order?", status, rng.randint(1, 12), created, updated,
               pick(rng, PRIORITIES), pick(rng, TYPES), tags, 1, solved, "email", "someone@example.com",
               rng.choice(TEAMS) if assigned else None, rng.choice(AGENTS) if assigned else None)


async def fill(pool: asyncpg.Pool, tickets: int) -> None:
    async with pool.acquire() as conn:
        for workspace, count, seed in ((WORKSPACE, tickets, 1), ("elsewhere", tickets // 10, 2)):
            batch: list[tuple[Any, ...]] = []
            for row in rows(workspace, count, seed):
                batch.append(row)
                if len(batch) == 50_000:
                    await conn.copy_records_to_table("tickets", records=batch, columns=COLUMNS)
                    batch.clear()
            if batch:
                await conn.copy_records_to_table("tickets", records=batch, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE tickets")


def percentile_ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


async def latencies(reads: int, job: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(min(20, reads)):  # warm: plans cached, pages in memory
        await job()
    found = []
    for _ in range(reads):
        started = time.perf_counter()
        await job()
        found.append(time.perf_counter() - started)
    return found


def line(name: str, samples: list[float], baseline: list[float] | None = None) -> str:
    text = (f"  {name:<44} p50 {percentile_ms(samples, 0.5):7.2f} ms"
            f"   p99 {percentile_ms(samples, 0.99):7.2f} ms")
    if baseline is not None:
        text += f"   x{percentile_ms(samples, 0.5) / percentile_ms(baseline, 0.5):5.2f} of raw at p50"
    return text


async def plan_of(pool: asyncpg.Pool, query: str, args: list[Any]) -> str:
    """The indexes the plan reads, from EXPLAIN."""
    raw = await pool.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args)
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.append(f"{node['Node Type']} {node['Index Name']}")
        elif node.get("Node Type") == "Seq Scan":
            found.append("Seq Scan")
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(raw)[0]["Plan"])
    return ", ".join(dict.fromkeys(found)) or "?"


async def bench(args: argparse.Namespace, dsn: str) -> None:
    pool = await create_pool(dsn, min_size=2, max_size=4)
    try:
        await migrate(pool, MIGRATIONS)
        started = time.perf_counter()
        await fill(pool, args.tickets)
        total = await pool.fetchval("SELECT count(*) FROM tickets")
        print(f"filled {total:,} tickets ({args.tickets:,} in the measured workspace) in "
              f"{time.perf_counter() - started:.0f} s, analysed")
        db = PgDatabase(pool)
        tickets, views = TicketingService(db), ViewsService(db)

        print(f"\n1. ticket list, first page of 50 ({args.reads} reads each, one at a time)")
        raw_list = (f"SELECT {_READ} FROM tickets WHERE workspace_id = $1"  # noqa: S608
                    " ORDER BY created_at DESC, id DESC LIMIT $2")
        base = await latencies(args.reads, lambda: pool.fetch(raw_list, WORKSPACE, 51))
        print(line("baseline: raw asyncpg SELECT", base))
        print(line("list_tickets (GET /v1/tickets)", await latencies(
            args.reads, lambda: tickets.list_tickets(WORKSPACE, None, None, 50)), base))

        print(f"\n2. saved views, first page of 50 (caller {CALLER})")
        created = {name: await views.create(WORKSPACE, CALLER, {"name": name, **spec})
                   for name, spec in VIEWS.items()}
        for name, view in created.items():
            query, query_args = page_query(WORKSPACE, parse_filter(view.filters), CALLER, view.sort, None, 51)
            page = await views.view_tickets(WORKSPACE, CALLER, view.id, None, 50)
            print(f"  {name}: {len(page.items)} on the page; plan: {await plan_of(pool, query, query_args)}")
            base = await latencies(args.reads, lambda q=query, a=query_args: pool.fetch(q, *a))
            print(line("  baseline: the view's SQL, raw", base))
            print(line("  view_tickets (GET /v1/views/{id}/tickets)", await latencies(
                args.reads, lambda v=view: views.view_tickets(WORKSPACE, CALLER, v.id, None, 50)), base))

        print("\n3. a second page, and the counts")
        first = await views.view_tickets(WORKSPACE, CALLER, created["open"].id, None, 50)
        print(line("second page of 'open' (cursor)", await latencies(
            args.reads,
            lambda: views.view_tickets(WORKSPACE, CALLER, created["open"].id, first.next_cursor, 50))))
        counts = await views.counts(WORKSPACE, CALLER)
        print("  counts: " + ", ".join(f"{c.view.name} {c.count:,}{'+' if c.capped else ''}" for c in counts))
        print(line(f"counts of {len(counts)} views (GET /v1/views/counts)", await latencies(
            max(20, args.reads // 10), lambda: views.counts(WORKSPACE, CALLER))))
    finally:
        await pool.close()


async def main_async(args: argparse.Namespace) -> None:
    admin = os.environ.get("CRM_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"crm_bench_ticketing_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await bench(args, admin.rsplit("/", 1)[0] + "/" + name)
    finally:
        if args.keep:
            print(f"\nkept the database {name}")
        else:
            conn = await asyncpg.connect(admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    print(f"ticketing reads benchmark: {args.tickets:,} tickets, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    tune_gc()  # as every service process does (crmkit.web.serve)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
