"""CSV import through the contacts service layer, next to a raw COPY of the same file into a
plain table, both measured in the same run on the same PostgreSQL.

    .venv/bin/python bench/contacts_import.py [--rows 1000000] [--dup-rate 0.01] [--batch-size 5000]

It writes a CSV of ``--rows`` people (email, names, phone, company, tags, a text and a number
custom field, a lifecycle stage), where ``--dup-rate`` of the rows repeat the email of an
earlier row (dedup on, ``--on-duplicate update`` by default). It makes a throwaway database
``crm_bimp_<id>_contacts`` with the contacts migrations on the PostgreSQL at ``--dsn``, then:

1. baseline: ``COPY ... FROM STDIN (FORMAT csv, HEADER)`` of the file into a plain table;
2. import: ``ImportsService.upload`` (the path ``PUT /v1/imports/{id}/file`` takes, streamed in
   64 KiB chunks) and ``apply_next_batch`` until the job is done (what the worker runs),
   with the time spent in each part of a batch.

The database and the file are removed at the end (``--keep`` keeps them). The outbox is
written (the events are part of the import's transactions) but not published: no relay runs.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import wraps
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import contacts_data as names  # noqa: E402 - the name and email generators of the data benchmark

from crm_contacts.domain import imports  # noqa: E402
from crm_contacts.domain.fields import Entity  # noqa: E402
from crm_contacts.domain.imports import JobStatus, OnDuplicate  # noqa: E402
from crm_contacts.service import import_batch  # noqa: E402
from crm_contacts.service.imports import ImportsService  # noqa: E402
from crm_contacts.store import audit  # noqa: E402
from crm_contacts.store import fields as field_store  # noqa: E402
from crm_contacts.store import imports as import_store  # noqa: E402
from crm_contacts.store.contacts import ContactsStore  # noqa: E402
from crmkit.fields import FieldDefinition, FieldType  # noqa: E402
from crmkit.postgres import PgDatabase, PgUnitOfWork, migrate  # noqa: E402
from crmkit.web import tune_gc  # noqa: E402

MIGRATIONS = ROOT / "services" / "contacts" / "migrations"
HEADER = ["Email", "First name", "Last name", "Phone", "Company", "Tags", "Plan", "Score", "Stage"]
MAPPING = {"Email": "emails", "First name": "first_name", "Last name": "last_name", "Phone": "phones",
           "Company": "company", "Tags": "tags", "Plan": "custom_fields.plan", "Score": "custom_fields.score",
           "Stage": "lifecycle_stage"}
CHUNK = 64 * 1024
# Mobile numbers that parse: a prefix and how many digits follow it; national ones read with GB.
PHONES = (("+447700", 6), ("07911 ", 6), ("+49151", 8), ("+336", 8), ("+39347", 7), ("+1415", 7),
          ("+346", 8))


def write_csv(path: Path, rows: int, dup_rate: float, seed: int) -> int:
    """The file; returns how many distinct emails it has."""
    import csv

    rng = random.Random(seed)
    first_names, last_names = names.FIRST, names.surnames()
    companies = [f"{rng.choice(names.WORDS)}{rng.choice(names.WORDS).lower()} {rng.choice(names.TRADES)}"
                 for _ in range(max(10, rows // 25))]
    emails: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(rows):
            first, last = rng.choice(first_names), rng.choice(last_names)
            if emails and rng.random() < dup_rate:
                email = rng.choice(emails)  # the same person again: dedup updates them
            else:
                email = f"{names.local_part(first, last, rng)}.{n}@{rng.choice(names.FREE_MAIL)}"
                emails.append(email)
            phone = ""
            if rng.random() < 0.5:  # unique: row n's number in its prefix is (n // 7) * 7919
                prefix, digits = PHONES[n % len(PHONES)]
                phone = f"{prefix}{(n // len(PHONES) * 7919) % 10**digits:0{digits}d}"
            writer.writerow([
                email, first, last, phone, rng.choice(companies) if rng.random() < 0.7 else "",
                "|".join(rng.sample(names.TAGS, rng.randrange(0, 3))), rng.choice(("free", "pro", "team")),
                rng.randrange(100), rng.choice(("subscriber", "lead", "customer")),
            ])
    return len(emails)


class Timings:
    """Seconds spent inside each wrapped function, summed over the run."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        spent = self.spent

        if asyncio.iscoroutinefunction(original):
            @wraps(original)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - started
            setattr(owner, name, timed_async)
        else:
            @wraps(original)
            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - started
            setattr(owner, name, timed)


def instrument() -> Timings:
    t = Timings()
    t.wrap(imports.RowReader, "read", "parse + validate rows (Python)")
    t.wrap(import_batch, "plan_batch", "dedup plan (Python)")
    t.wrap(ContactsStore, "identity_owners", "identity lookup (SQL)")
    t.wrap(import_batch.privacy, "suppressed", "suppression lookup (HMAC + SQL)")
    t.wrap(ContactsStore, "get_many", "lock + load matched contacts (SQL)")
    t.wrap(import_store, "find_or_create_companies", "companies find-or-create (SQL)")
    t.wrap(import_store, "insert_contacts", "COPY contacts (SQL)")
    t.wrap(import_store, "update_contacts", "UPDATE matched contacts (SQL)")
    t.wrap(import_store, "insert_identities", "COPY identities (SQL)")
    t.wrap(import_store, "link_companies", "company links (SQL)")
    t.wrap(audit, "record_many", "audit entries (JSON + COPY)")
    t.wrap(import_batch, "contact_created", "events: build (protobuf)")
    t.wrap(import_batch, "contact_updated", "events: build (protobuf)")
    t.wrap(PgUnitOfWork, "_flush", "events: outbox insert (SQL)")
    t.wrap(import_batch, "reevaluate_membership", "segment re-evaluation (SQL)")
    t.wrap(import_store, "add_errors", "error report (COPY)")
    t.wrap(import_store, "next_rows", "read staged rows (SQL)")
    t.wrap(import_store, "advance", "advance job + drop staged rows (SQL)")
    return t


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


async def run(args: argparse.Namespace, workdir: Path) -> int:
    path = workdir / "contacts.csv"
    started = time.perf_counter()
    distinct = write_csv(path, args.rows, args.dup_rate, args.seed)
    size = path.stat().st_size
    print(f"file: {args.rows:,} rows, {distinct:,} distinct emails, {size / 2**20:.1f} MiB"
          f" (written in {time.perf_counter() - started:.1f}s)")
    database = f"crm_bimp_{secrets.token_hex(3)}_contacts"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = args.dsn.rsplit("/", 1)[0] + f"/{database}"
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4, command_timeout=None)
    try:
        assert pool is not None
        await migrate(pool, MIGRATIONS)
        async with pool.acquire() as conn:
            for key, kind in (("plan", FieldType.TEXT), ("score", FieldType.NUMBER)):
                definition = FieldDefinition(Entity.CONTACT, key, key.title(), kind)
                await field_store.insert(conn, "bench", definition)
            columns = ", ".join(f"c{i} text" for i in range(len(HEADER)))
            await conn.execute(f"CREATE TABLE bench_raw ({columns})")
            copy_started = time.perf_counter()
            await conn.copy_to_table("bench_raw", source=path, format="csv", header=True)
            copy_seconds = time.perf_counter() - copy_started
            await conn.execute("DROP TABLE bench_raw")

        timings = instrument()
        service = ImportsService(PgDatabase(pool), max_bytes=2**40, batch_size=args.batch_size)
        job = await service.create_job("bench", "bench", MAPPING, OnDuplicate(args.on_duplicate), "GB")
        import_started = time.perf_counter()
        job = await service.upload("bench", job.id, file_chunks(path), size)
        staged_at = time.perf_counter()
        last_report = staged_at
        while await service.apply_next_batch():
            if time.perf_counter() - last_report > 10:
                last_report = time.perf_counter()
                current = await service.get("bench", job.id)
                print(f"  ... {current.position:,}/{current.total_rows:,} rows"
                      f" ({last_report - staged_at:.0f}s)", file=sys.stderr, flush=True)
        finished_at = time.perf_counter()
        job = await service.get("bench", job.id)
        async with pool.acquire() as conn:
            contacts = await conn.fetchval("SELECT count(*) FROM contacts WHERE workspace_id = 'bench'")
            outbox = await conn.fetchval("SELECT count(*) FROM outbox")
        report(args, size, copy_seconds, staged_at - import_started, finished_at - staged_at, job, contacts,
               distinct, outbox, timings)
        return 0 if job.status is JobStatus.DONE and contacts == distinct else 1
    finally:
        if pool is not None:
            await pool.close()
        if args.keep:
            print(f"kept database {database} and {path}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


def report(args: argparse.Namespace, size: int, copy_seconds: float, stage_seconds: float,
           apply_seconds: float, job: Any, contacts: int, distinct: int, outbox: int,
           timings: Timings) -> None:
    total = stage_seconds + apply_seconds
    rows = args.rows
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f},"
          f" Python {platform.python_version()}; batch {args.batch_size}, on_duplicate {args.on_duplicate}")
    print(f"{'':32} {'seconds':>9} {'rows/s':>10} {'x COPY':>8}")
    print(f"{'baseline: raw COPY':32} {copy_seconds:9.1f} {rows / copy_seconds:10,.0f} {1:8.1f}")
    phases = (("import: upload (stage)", stage_seconds), ("import: apply (worker)", apply_seconds),
              ("import: total", total))
    for label, seconds in phases:
        print(f"{label:32} {seconds:9.1f} {rows / seconds:10,.0f} {seconds / copy_seconds:8.1f}")
    print(f"\njob {job.status.value}: created {job.created:,}, updated {job.updated:,},"
          f" skipped {job.skipped:,}, failed {job.failed:,}; contacts {contacts:,}"
          f" (distinct emails {distinct:,}); outbox rows {outbox:,}; {size / 2**20 / total:.1f} MiB/s")
    print("\nwhere the apply phase went (seconds summed over batches; the Python parts run in a worker"
          " thread, partly while PostgreSQL works, so they can add up to more than the wall time):")
    for label, seconds in sorted(timings.spent.items(), key=lambda item: -item[1]):
        print(f"  {label:42} {seconds:7.1f}  {100 * seconds / apply_seconds:5.1f} %")
    other = apply_seconds - sum(timings.spent.values())
    print(f"  {'other (claim, definitions, commit, loop)':42} {other:7.1f}"
          f"  {100 * other / apply_seconds:5.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dup-rate", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--on-duplicate", choices=[m.value for m in OnDuplicate], default="update")
    parser.add_argument("--dsn", default=os.environ.get("CRM_POSTGRES_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the database and the file")
    args = parser.parse_args()
    workdir = ROOT / ".local" / f"bench-import-{secrets.token_hex(3)}"
    workdir.mkdir(parents=True)
    try:
        tune_gc()  # as every service process does (crmkit.web.serve)
        return asyncio.run(run(args, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
