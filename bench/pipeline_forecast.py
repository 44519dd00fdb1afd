"""Pipeline at scale: the forecast over 1M deals, the board at 100k open deals, and stage
changes per second, each next to raw SQL in the same run.

    .venv/bin/python bench/pipeline_forecast.py [--deals 1000000] [--board-deals 100000]
        [--reads 30] [--board-reads 200] [--moves 2000] [--concurrency 16]

It starts the infrastructure as `make dev` does, isolated (`_platform.py`), and the pipeline
service as its own process; then loads, with COPY into the service's database, ``--deals``
deals in the workspace ``bench`` (and a tenth as many in another workspace, so that every query
really is scoped): two pipelines, 40 owners, EUR/USD/GBP amounts (with dated rates), expected
close dates over two years around today, a third open, a quarter won, the rest lost. The
pipeline ``board`` holds ``--board-deals`` open deals of them. Then:

1. **Forecast by owner x quarter** over every deal, ``GET /v1/forecast?group_by=owner`` (HTTP,
   one request at a time), next to the very SQL the store runs, raw through asyncpg, and a naive
   single GROUP BY over the whole table (no index, no currency), both in the same database.
2. **Board** of the ``board`` pipeline at ``--board-deals`` open deals, ``GET`` the core's
   board endpoint, p50/p99, next to the raw SELECT of its first column.
3. **Stage changes per second**: ``--moves`` moves of open deals between stages through the
   API, ``--concurrency`` at a time, next to the raw UPDATE + INSERT into
   ``deal_stage_changes`` (one transaction per move, the same concurrency).

Figures are printed; nothing here passes or fails. Everything is stopped and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from _platform import Platform, machine, number, percentile_ms, progress, ratio, table

from crm_pipeline.domain.forecast import Grouping, forecast_range
from crm_pipeline.store.forecast import forecast_query
from crmkit.auth import issue_token

WORKSPACE = "bench"
OWNERS = [f"rep-{i:02d}" for i in range(40)]
CURRENCIES = (("EUR", 70), ("USD", 20), ("GBP", 10))
STAGES = (("Lead", 10), ("Qualified", 25), ("Proposal", 50), ("Negotiation", 80))
CATEGORIES = (("pipeline", 60), ("best_case", 20), ("commit", 15), ("omitted", 5))
COLUMNS = ("id", "workspace_id", "pipeline_id", "stage_id", "title", "amount_minor", "currency",
           "expected_close_date", "owner_id", "status", "closed_at", "stage_entered_at", "forecast_category",
           "created_at", "updated_at")

# The core's board and stage-move endpoints (services/pipeline/api).
BOARD_PATH = "/v1/pipelines/{pipeline_id}/board"
MOVE_PATH = "/v1/deals/{deal_id}/stage"


def pick(rng: random.Random, weighted: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def uid(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


class Layout:
    """The pipelines and stages of a workspace, made before the deals."""

    def __init__(self, workspace: str, rng: random.Random) -> None:
        self.workspace = workspace
        self.pipelines = {"board": uid(rng), "main": uid(rng)}
        self.stages = {p: [uid(rng) for _ in range(len(STAGES) + 2)] for p in self.pipelines}

    async def create(self, conn: asyncpg.Connection) -> None:
        for name, pipeline_id in self.pipelines.items():
            await conn.execute("INSERT INTO pipelines (id, workspace_id, name) VALUES ($1, $2, $3)",
                               pipeline_id, self.workspace, name)
            kinds = [(n, p, "open") for n, p in STAGES] + [("Won", 100, "won"), ("Lost", 0, "lost")]
            for position, ((stage, probability, kind), stage_id) in enumerate(
                    zip(kinds, self.stages[name], strict=True)):
                await conn.execute(
                    "INSERT INTO stages (id, workspace_id, pipeline_id, name, position, probability, kind)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    stage_id, self.workspace, pipeline_id, stage, position, probability, kind)
        await conn.execute("INSERT INTO workspace_currency (workspace_id, base_currency) VALUES ($1, 'EUR')"
                           " ON CONFLICT DO NOTHING", self.workspace)
        await conn.executemany(
            "INSERT INTO exchange_rates (workspace_id, currency, valid_on, rate) VALUES ($1, $2, $3, $4)",
            [(self.workspace, "USD", date(2020, 1, 1), 0.92),
             (self.workspace, "GBP", date(2020, 1, 1), 1.17)])


def deals(layout: Layout, count: int, board_open: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    today = now.date()
    for index in range(count):
        on_board = index < board_open
        pipeline = "board" if on_board else "main"
        stages = layout.stages[pipeline]
        status = "open" if on_board else pick(rng, (("open", 30), ("won", 28), ("lost", 42)))
        created = now - timedelta(days=rng.uniform(0, 540))
        close_day = today + timedelta(days=rng.randint(-180, 540))
        closed = None
        if status == "open":
            stage = stages[rng.randrange(len(STAGES))]
        else:
            stage = stages[len(STAGES) if status == "won" else len(STAGES) + 1]
            closed = min(now, created + timedelta(days=rng.uniform(5, 120)))
        yield (uid(rng), layout.workspace, layout.pipelines[pipeline], stage, f"Deal {index}",
               rng.randrange(1_000, 5_000_000), pick(rng, CURRENCIES), close_day, rng.choice(OWNERS), status,
               closed, created, pick(rng, CATEGORIES), created, created)


async def fill(dsn: str, total: int, board_open: int) -> Layout:
    conn = await asyncpg.connect(dsn)
    try:
        measured = Layout(WORKSPACE, random.Random(1))
        for layout, count, board, seed in ((measured, total, board_open, 1),
                                           (Layout("elsewhere", random.Random(2)), total // 10, 0, 2)):
            await layout.create(conn)
            batch: list[tuple[Any, ...]] = []
            for index, row in enumerate(deals(layout, count, board, seed), 1):
                batch.append(row)
                if len(batch) == 50_000:
                    await conn.copy_records_to_table("deals", records=batch, columns=COLUMNS)
                    batch.clear()
                    if index % 200_000 == 0:
                        progress(f"{layout.workspace}: {index:,} deals copied")
            if batch:
                await conn.copy_records_to_table("deals", records=batch, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE deals")
        await conn.execute("ANALYZE stages")
        return measured
    finally:
        await conn.close()


async def latencies(reads: int, job: Callable[[], Awaitable[Any]], warm: int = 3) -> list[float]:
    for _ in range(warm):
        await job()
    found = []
    for _ in range(reads):
        started = time.perf_counter()
        await job()
        found.append(time.perf_counter() - started)
    return found


async def rate_of(count: int, concurrency: int, job: Callable[[int], Awaitable[None]]
                  ) -> tuple[float, list[float]]:
    """``job(0..count-1)`` with ``concurrency`` in flight: moves per second and each one's latency."""
    indexes = iter(range(count))
    took: list[float] = []

    async def worker() -> None:
        for index in indexes:
            started = time.perf_counter()
            await job(index)
            took.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started), took


def row(name: str, samples: list[float], baseline: list[float] | None = None) -> list[str]:
    p50, p99 = percentile_ms(samples, 50), percentile_ms(samples, 99)
    return [name, number(p50, "ms"), number(p99, "ms"),
            ratio(p50, percentile_ms(baseline, 50)) if baseline else ""]


async def bench(args: argparse.Namespace, platform: Platform) -> None:
    dsn = platform.infra["CRM_POSTGRES_DSN"].rsplit("/", 1)[0] + f"/{platform.database_prefix}pipeline"
    started = time.perf_counter()
    layout = await fill(dsn, args.deals, args.board_deals)
    progress(f"filled {args.deals:,} deals (+{args.deals // 10:,} elsewhere)"
             f" in {time.perf_counter() - started:.0f} s")
    token = issue_token(platform.secret, subject="bench-admin", workspace_id=WORKSPACE, roles=("admin",))
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=args.concurrency + 2)
    rows: list[list[str]] = [["figure", "p50", "p99", "x raw at p50"]]
    async with httpx.AsyncClient(base_url=platform.url("pipeline"), timeout=120,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        # 1. The forecast over every deal: two years of quarters around today.
        today = datetime.now(UTC).date()
        first, last = today - timedelta(days=200), today + timedelta(days=560)
        params = {"period": "quarter", "group_by": "owner", "from": first.isoformat(), "to": last.isoformat()}
        response = await client.get("/v1/forecast", params=params)
        response.raise_for_status()
        lines = response.json()["lines"]
        span = forecast_range("quarter", first, last, today)
        sql = forecast_query(Grouping.OWNER, False)
        sql_args = [WORKSPACE, "quarter", span.start, span.end, "UTC", today]
        counted = await pool.fetchval(
            "SELECT count(*) FROM deals WHERE workspace_id = $1 AND deleted_at IS NULL AND"
            " ((status = 'open' AND expected_close_date >= $2 AND expected_close_date < $3) OR"
            " (status = 'won' AND closed_at >= $2::date AND closed_at < $3::date))",
            WORKSPACE, span.start, span.end)
        naive = ("SELECT date_trunc('quarter', d.expected_close_date::timestamp), d.owner_id,"
                 " sum(d.amount_minor), sum(d.amount_minor * s.probability)"
                 " FROM deals d JOIN stages s ON s.id = d.stage_id WHERE d.workspace_id = $1"
                 " GROUP BY 1, 2")
        progress("forecast: measuring")
        raw = await latencies(args.reads, lambda: pool.fetch(sql, *sql_args))
        naive_times = await latencies(args.reads, lambda: pool.fetch(naive, WORKSPACE))
        http = await latencies(args.reads, lambda: client.get("/v1/forecast", params=params))
        title = f"1. forecast by owner x quarter ({len(lines)} lines, {counted:,} deals in range)"
        rows += [[title, "", "", ""],
                 row("   GET /v1/forecast (HTTP)", http, raw),
                 row("   raw: the store's SQL through asyncpg", raw),
                 row("   raw: a naive GROUP BY over every deal", naive_times)]

        # 2. The board at board_deals open deals.
        board_id = layout.pipelines["board"]
        path = BOARD_PATH.format(pipeline_id=board_id)
        probe = await client.get(path)
        if probe.status_code == 200:
            page = ("SELECT * FROM deals WHERE workspace_id = $1 AND stage_id = $2 AND deleted_at IS NULL"
                    " ORDER BY id LIMIT 21")
            sums = ("SELECT stage_id, currency, count(*), sum(amount_minor) FROM deals"
                    " WHERE workspace_id = $1 AND pipeline_id = $2 AND deleted_at IS NULL"
                    " GROUP BY stage_id, currency")

            async def board_raw() -> None:
                """What the board reads, raw: each stage's totals, then 21 deals of each stage."""
                async with pool.acquire() as conn:
                    await conn.fetch(sums, WORKSPACE, board_id)
                    for stage in layout.stages["board"]:
                        await conn.fetch(page, WORKSPACE, stage)

            progress("board: measuring")
            raw = await latencies(args.board_reads, board_raw)
            http = await latencies(args.board_reads, lambda: client.get(path))
            rows += [[f"2. board, {args.board_deals:,} open deals in {len(STAGES)} open stages", "", "", ""],
                     row(f"   GET {BOARD_PATH}", http, raw),
                     row("   raw: stage totals + 21 deals a stage", raw)]
        else:
            rows += [[f"2. board: {path} answered {probe.status_code}; not measured", "", "", ""]]

        # 3. Stage changes per second, through the API and raw.
        board_deals = [r["id"] for r in await pool.fetch(
            "SELECT id FROM deals WHERE workspace_id = $1 AND pipeline_id = $2 AND status = 'open'"
            " ORDER BY id LIMIT $3", WORKSPACE, board_id, 2 * args.moves)]
        open_stages = layout.stages["board"][:len(STAGES)]
        api_deals, raw_deals = board_deals[:args.moves], board_deals[args.moves:]

        async def move_api(index: int) -> None:
            target = open_stages[index % len(open_stages)]
            answer = await client.post(MOVE_PATH.format(deal_id=api_deals[index]),
                                       json={"stage_id": str(target)})
            if answer.status_code >= 400:
                raise RuntimeError(f"{answer.status_code} {answer.text[:300]}")

        async def move_raw(index: int) -> None:
            target = open_stages[index % len(open_stages)]
            async with pool.acquire() as conn, conn.transaction():
                before = await conn.fetchrow(
                    "SELECT stage_id, stage_entered_at FROM deals WHERE workspace_id = $1 AND id = $2"
                    " FOR UPDATE",
                    WORKSPACE, raw_deals[index])
                await conn.execute(
                    "UPDATE deals SET stage_id = $3, stage_entered_at = now(), version = version + 1,"
                    " updated_at = now() WHERE workspace_id = $1 AND id = $2",
                    WORKSPACE, raw_deals[index], target)
                await conn.execute(
                    "INSERT INTO deal_stage_changes (workspace_id, deal_id, from_stage_id, to_stage_id,"
                    " actor, seconds_in_from)"
                    " VALUES ($1, $2, $3, $4, 'bench', extract(epoch FROM now() - $5)::bigint)",
                    WORKSPACE, raw_deals[index], before["stage_id"], target, before["stage_entered_at"])

        progress("stage changes: measuring")
        moves = min(args.moves, len(raw_deals))
        raw_rate, raw_took = await rate_of(moves, args.concurrency, move_raw)
        try:
            api_rate, api_took = await rate_of(moves, args.concurrency, move_api)
            rows += [[f"3. stage changes, {moves:,} moves, {args.concurrency} at a time", "", "", ""],
                     row(f"   POST {MOVE_PATH}: {api_rate:,.0f}/s", api_took, raw_took),
                     row(f"   raw UPDATE + INSERT: {raw_rate:,.0f}/s", raw_took)]
        except RuntimeError as exc:
            rows += [[f"3. stage changes: the API refused ({exc}); raw {raw_rate:,.0f}/s", "", "", ""]]
    await pool.close()
    print("\n".join(table(rows, right=(1, 2, 3))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--board-deals", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=30)
    parser.add_argument("--board-reads", type=int, default=200)
    parser.add_argument("--moves", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(f"pipeline forecast benchmark: {args.deals:,} deals, {args.board_deals:,} on the board;"
          f" {machine()}")
    with Platform() as platform:
        platform.start(["pipeline"])
        print(f"servers: {platform.servers()}")
        asyncio.run(bench(args, platform))
    return 0


if __name__ == "__main__":
    sys.exit(main())
