"""Duplicate scan of a large workspace, through the contacts service layer, next to the raw
read of the same rows with asyncpg, both measured in the same run.

    .venv/bin/python bench/contacts_duplicates.py [--contacts 1000000] [--keep]

It makes a throwaway database on the local PostgreSQL (127.0.0.1:5432, user postgres, trust
auth; or --dsn), fills it with bench/contacts_data.py (about 2 % planted duplicates), runs a
scan with DuplicatesService exactly as the service does (streamed read, pairing in a worker
thread), and reports its time, the pairs found, the recall of the planted duplicates, and how
late the event loop ran meanwhile. The database is dropped at the end; with --keep it is kept
as crm_bench_dups_<contacts> and reused by the next --keep run of the same size.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import secrets
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contacts_data import PLANTED_KINDS, fill

from crm_contacts.domain.duplicates import MAX_BLOCK
from crm_contacts.service.duplicates import DuplicatesService
from crm_contacts.store.duplicates import SCAN_CONTACTS
from crmkit.postgres import PgDatabase, create_pool, ensure_database
from crmkit.web import tune_gc

WORKSPACE = "bench"
RAW_READ = ("SELECT id, first_name, last_name, display_name FROM contacts"
            " WHERE workspace_id = $1 AND merged_into IS NULL AND erased_at IS NULL")
STARTED = time.perf_counter()


def progress(text: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {text}", file=sys.stderr, flush=True)


def dsn_for(admin_dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{database}"))


async def prepared(admin_dsn: str, database: str, contacts: int, reuse: bool) -> tuple[str, float | None]:
    """The database's DSN, and how long filling it took (None when an earlier run's was reused)."""
    dsn = dsn_for(admin_dsn, database)
    await ensure_database(admin_dsn, database)
    if reuse:
        conn = await asyncpg.connect(dsn)
        try:
            planted = await conn.fetchval("SELECT to_regclass('bench_planted') IS NOT NULL"
                                          " AND EXISTS (SELECT 1 FROM bench_planted)")
            count = await conn.fetchval("SELECT count(*) FROM contacts") if planted else 0
        except asyncpg.UndefinedTableError:
            count = 0
        finally:
            await conn.close()
        if count == contacts:
            progress(f"reusing {database}: {count:,} contacts")
            return dsn, None
    progress(f"generating and loading {contacts:,} contacts into {database}")
    started = time.perf_counter()
    await fill(dsn, WORKSPACE, contacts)
    return dsn, time.perf_counter() - started


async def raw_read(pool: asyncpg.Pool, collect: bool, query: str = RAW_READ) -> tuple[int, float]:
    """One SELECT of the rows a scan reads (their own columns, or with their identities and
    companies: the scan's query), with the cyclic garbage collector left on (``collect``) or
    paused, as the scan pauses it."""
    if not collect:
        gc.disable()
    try:
        async with pool.acquire() as conn:
            started = time.perf_counter()
            rows = await conn.fetch(query, WORKSPACE, timeout=600)
            return len(rows), time.perf_counter() - started
    finally:
        gc.enable()


async def scan(pool: asyncpg.Pool, max_block: int) -> tuple[float, float, dict[str, object]]:
    """The scan through the service layer: (seconds, worst event-loop lag, the scan's counts)."""
    lag = 0.0

    async def ticker() -> None:
        nonlocal lag
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - before - 0.01)

    async with DuplicatesService(PgDatabase(pool), max_block=max_block) as service:
        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        job = await service.start_scan(WORKSPACE, "bench")
        await service.wait(job.id)
        seconds = time.perf_counter() - started
        tick.cancel()
        done = await service.get_scan(WORKSPACE, job.id)
    assert done is not None
    if done.status != "done":
        raise SystemExit(f"the scan ended {done.status}: {done.error}")
    return seconds, lag, {"id": done.id, "contacts": done.contacts_scanned, "pairs": done.candidates,
                          "blocks": done.blocks_compared, "skipped": done.blocks_skipped,
                          "comparisons": done.comparisons, "largest_skipped": done.skipped[:3]}


async def recall(pool: asyncpg.Pool, scan_id: object) -> tuple[Counter[str], Counter[str], Counter[int]]:
    """Planted pairs by kind, those the scan found, and the scan's pairs by score."""
    async with pool.acquire() as conn:
        planted = await conn.fetch(
            "SELECT p.kind, c.contact_a IS NOT NULL AS found FROM bench_planted p"
            " LEFT JOIN duplicate_candidates c ON c.scan_id = $1"
            " AND c.contact_a = p.contact_a AND c.contact_b = p.contact_b", scan_id)
        scores = await conn.fetch("SELECT score, count(*) AS n FROM duplicate_candidates"
                                  " WHERE scan_id = $1 GROUP BY score", scan_id)
    wanted = Counter(str(r["kind"]) for r in planted)
    found = Counter(str(r["kind"]) for r in planted if r["found"])
    return wanted, found, Counter({int(r["score"]): int(r["n"]) for r in scores})


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return (f"{len(os.sched_getaffinity(0))} CPUs ({models[0] if models else platform.processor()}), "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} before the run")


async def benchmark(args: argparse.Namespace, database: str) -> str:
    host = machine()
    dsn, fill_seconds = await prepared(args.dsn, database, args.contacts, args.keep)
    pool = await create_pool(dsn, min_size=2, max_size=4)
    try:
        progress("baseline: the raw read of the same rows")
        rows, raw_paused = await raw_read(pool, collect=False)
        _, raw_collected = await raw_read(pool, collect=True)
        _, joined = await raw_read(pool, collect=False, query=SCAN_CONTACTS)
        progress("scanning through DuplicatesService")
        seconds, lag, counts = await scan(pool, args.max_block)
        wanted, found, scores = await recall(pool, counts["id"])
        async with pool.acquire() as conn:
            version = await conn.fetchval("SHOW server_version")
    finally:
        await pool.close()
    total_wanted, total_found = sum(wanted.values()), sum(found.values())
    lines = [
        "",
        f"duplicate scan: {rows:,} live contacts in one workspace, block cap {args.max_block}",
        f"machine: {host}",
        f"server: PostgreSQL {version} on {urlsplit(args.dsn).hostname}",
        "" if fill_seconds is None else f"data: generated and loaded (COPY) in {fill_seconds:.1f}s",
        "",
        f"scan (read + pair + store)   {seconds:7.2f} s   {rows / seconds:>10,.0f} contacts/s",
        f"raw read, GC paused          {raw_paused:7.2f} s   {rows / raw_paused:>10,.0f} rows/s"
        f"   scan/raw {seconds / raw_paused:.1f}x",
        f"raw read, GC on              {raw_collected:7.2f} s   {rows / raw_collected:>10,.0f} rows/s"
        f"   scan/raw {seconds / raw_collected:.1f}x",
        f"the scan's query, GC paused  {joined:7.2f} s   {rows / joined:>10,.0f} rows/s"
        f"   scan/raw {seconds / joined:.1f}x",
        f"worst event-loop lag during the scan: {lag * 1000:.0f} ms",
        "",
        f"pairs found {counts['pairs']:,}; blocks compared {counts['blocks']:,}, "
        f"skipped {counts['skipped']:,}; fuzzy comparisons {counts['comparisons']:,}",
        f"largest skipped blocks: {counts['largest_skipped'] or 'none'}",
        "pairs by score: " + ", ".join(f"{s}: {n:,}" for s, n in sorted(scores.items(), reverse=True)),
        f"recall of the planted duplicates: {total_found:,}/{total_wanted:,} "
        f"= {total_found / max(total_wanted, 1):.2%}",
        *(f"  {kind:20} {found[kind]:,}/{wanted[kind]:,}" for kind in PLANTED_KINDS),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server's admin DSN: the benchmark creates and drops its database there")
    parser.add_argument("--max-block", type=int, default=MAX_BLOCK)
    parser.add_argument("--keep", action="store_true",
                        help="keep the database (crm_bench_dups_<contacts>) and reuse it next time")
    args = parser.parse_args()
    if args.contacts < 10:
        parser.error("--contacts must be at least 10")
    database = (f"crm_bench_dups_{args.contacts}" if args.keep
                else f"crm_bench_dups_{secrets.token_hex(4)}")
    try:
        tune_gc()  # as every service process does (crmkit.web.serve)
        print(asyncio.run(benchmark(args, database)), flush=True)
        return 0
    finally:
        if not args.keep:
            asyncio.run(drop(args.dsn, database))


async def drop(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        progress(f"dropped {database}")
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
