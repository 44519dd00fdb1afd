"""Contacts at scale: reads by id, ResolveIdentities, and segments, next to raw asyncpg.

    .venv/bin/python bench/contacts_reads.py [--contacts 1000000] [--reads 20000] [--concurrency 16]

A throwaway database on the local PostgreSQL (127.0.0.1:5432, or CRM_POSTGRES_DSN) is filled
with ``--contacts`` generated contacts (bench/contacts_data.py), then:

1. **Read by id**: ``ContactsService.get_contact`` (the use case behind ``GET /v1/contacts/{id}``
   and gRPC ``GetContact``: the row, its identities, its companies, the workspace's custom
   fields) for random ids, ``--concurrency`` at a time; baseline: the raw asyncpg primary-key
   SELECT of the row with the same pool and concurrency.
2. **ResolveIdentities, batches of 100** (half known identities, half new ones that create a
   contact, its outbox event and its segment re-evaluation); baseline: one raw SELECT of the
   same 100 identities.
3. **Segments**: creating a segment over the whole workspace (a full evaluation), then the
   incremental path: contact updates that move a contact in or out of it, whose membership
   is re-evaluated in the write's own transaction; latency is the whole write.

The database is dropped at the end. Nothing here is a pass/fail test: figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contacts_data import fill

from crm_contacts.domain.model import Identity, IdentityKind
from crm_contacts.service import ContactsService, IdentityRequest
from crm_contacts.service.segments import SegmentsService
from crmkit.postgres import PgDatabase, create_pool
from crmkit.web import tune_gc

WORKSPACE = "bench"


def percentile_ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


async def timed(
    count: int, concurrency: int, job: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    cursor = iter(range(count))

    async def worker() -> None:
        for n in cursor:
            started = time.perf_counter()
            await job(n)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def line(name: str, count: int, wall: float, latencies: list[float], unit: str = "reads") -> str:
    return (
        f"  {name:<34} {count / wall:>10,.0f} {unit}/s   p50 {percentile_ms(latencies, 0.5):7.2f} ms"
        f"   p99 {percentile_ms(latencies, 0.99):7.2f} ms"
    )


async def bench(args: argparse.Namespace, dsn: str) -> None:
    started = time.perf_counter()
    data = await fill(dsn, WORKSPACE, args.contacts)
    print(
        f"filled {len(data.contacts):,} contacts, {len(data.identities):,} identities in "
        f"{time.perf_counter() - started:.0f} s"
    )
    pool = await create_pool(dsn, min_size=args.concurrency, max_size=args.concurrency)
    db = PgDatabase(pool)
    service = ContactsService(db)
    rng = random.Random(11)
    ids = [r["id"] for r in await pool.fetch(
        "SELECT id FROM contacts WHERE workspace_id = $1 AND merged_into IS NULL AND erased_at IS NULL"
        " ORDER BY random() LIMIT $2", WORKSPACE, args.reads)]
    try:
        print(f"\n1. read by id ({len(ids):,} random contacts, concurrency {args.concurrency})")

        async def raw_read(n: int) -> None:
            await pool.fetchrow(
                "SELECT * FROM contacts WHERE workspace_id = $1 AND id = $2", WORKSPACE, ids[n]
            )

        async def service_read(n: int) -> None:
            assert await service.get_contact(WORKSPACE, ids[n]) is not None

        for name, job in (("baseline: raw asyncpg SELECT", raw_read), ("contacts get_contact", service_read)):
            wall, latencies = await timed(len(ids), args.concurrency, job)
            print(line(name, len(ids), wall, latencies))

        batches = args.batches
        known = [row for row in data.identities if row[1] == "email"]
        print(f"\n2. ResolveIdentities, {batches} batches of 100 (50 known, 50 new), concurrency 4")
        requests = []
        for b in range(batches):
            batch = [
                IdentityRequest(Identity(IdentityKind.EMAIL, str(row[2])), "Known", True)
                for row in rng.sample(known, 50)
            ]
            batch += [
                IdentityRequest(
                    Identity(IdentityKind.EMAIL, f"new-{b}-{i}-{secrets.token_hex(3)}@bench.example"),
                    "New",
                    True,
                )
                for i in range(50)
            ]
            requests.append(batch)

        async def raw_resolve(n: int) -> None:
            batch = requests[n]
            await pool.fetch(
                "SELECT i.kind, i.value, i.contact_id FROM identities i JOIN unnest($2::text[], $3::text[])"
                " AS w(kind, value) ON i.kind = w.kind AND i.value = w.value WHERE i.workspace_id = $1",
                WORKSPACE,
                [r.identity.kind.value for r in batch],
                [r.identity.value for r in batch],
            )

        async def service_resolve(n: int) -> None:
            await service.resolve_identities(WORKSPACE, requests[n])

        for name, job in (
            ("baseline: raw SELECT of 100", raw_resolve),
            ("resolve_identities (100)", service_resolve),
        ):
            wall, latencies = await timed(batches, 4, job)
            print(line(name, batches * 100, wall, latencies, "identities"))

        print("\n3. segments")
        segments = SegmentsService(db)
        rules = {
            "all": [
                {"field": "lifecycle_stage", "op": "eq", "value": "customer"},
                {"field": "tags", "op": "has", "value": "vip"},
            ]
        }
        raw_started = time.perf_counter()
        raw_count = await pool.fetchval(
            "SELECT count(*) FROM contacts WHERE workspace_id = $1 AND lifecycle_stage = 'customer'"
            " AND tags @> ARRAY['vip'] AND merged_into IS NULL AND erased_at IS NULL",
            WORKSPACE,
        )
        raw_wall = time.perf_counter() - raw_started
        created_started = time.perf_counter()
        segment = (await segments.create(WORKSPACE, "bench", "VIP customers", rules)).segment
        created_wall = time.perf_counter() - created_started
        print(f"  baseline: raw count of the rule     {raw_wall:8.2f} s ({raw_count:,} contacts)")
        print(f"  full evaluation (create segment)    {created_wall:8.2f} s")
        everyone_started = time.perf_counter()
        everyone = await segments.create(WORKSPACE, "bench", "Everyone", {"all": []})
        print(f"  full evaluation, every contact      {time.perf_counter() - everyone_started:8.2f} s "
              f"({everyone.joined:,} joined, one membership event each)")
        await segments.delete(WORKSPACE, "bench", everyone.segment.id, None)
        movers = ids[: args.updates]
        versions: dict[UUID, int] = {}

        async def move(n: int) -> None:
            contact_id = movers[n % len(movers)]
            tags = ["vip"] if n % 2 == 0 else []
            contact = await service.update_contact(
                WORKSPACE,
                "bench",
                contact_id,
                {"lifecycle_stage": "customer", "tags": tags},
                versions.get(contact_id),
            )
            versions[contact_id] = contact.version

        wall, latencies = await timed(len(movers), 4, move)
        print(line("incremental: contact write + membership", len(movers), wall, latencies, "writes"))
        members = await pool.fetchval(
            "SELECT count(*) FROM segment_members WHERE segment_id = $1", segment.id
        )
        print(f"  members after the writes: {members:,}")
    finally:
        await pool.close()


async def main_async(args: argparse.Namespace) -> None:
    admin = os.environ.get("CRM_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"crm_bench_contacts_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await bench(args, admin.rsplit("/", 1)[0] + "/" + name)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(
        f"contacts benchmark: {args.contacts:,} contacts, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    tune_gc()  # as every service process does (crmkit.web.serve)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
