"""The public tracking endpoints of campaigns under load, next to a trivial endpoint of the same
server process measured in the same run: requests/s and latency (p50, p99) of the open pixel
(``GET /v1/t/o/{token}.gif``: verify the HMAC, one MongoDB transaction updating the send,
inserting the raw hit and the MessageOpened outbox row), the click redirect (the same, plus the
302) and a forged click (verify only, 404), with ``--concurrency`` requests in flight.

    .venv/bin/python bench/campaigns_tracking.py [-n 5000] [--concurrency 32] [--sends 10000]

The infrastructure is started as `make dev` starts it, isolated (bench/_platform.py). The
campaigns app runs in a child process (uvicorn, one worker, as in production) with one extra
route, ``GET /bench/baseline``, that answers the same 43-byte GIF with no work: the cost of
FastAPI, uvicorn and the HTTP client, which the tracking figures are read against. The per-IP
rate limit is lifted for the run. ``--sends`` send documents are inserted directly into
campaigns' MongoDB (the shape the send engine writes); requests pick sends round-robin, each
sent an hour before, with a browser's user agent, so every open and click counts as human.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _load import Clients, CpuMeter, Load, cpu_seconds, drive
from _platform import (
    Platform,
    free_ports,
    machine,
    number,
    percentile_ms,
    print_log_tails,
    progress,
    ratio,
    table,
)
from pymongo import AsyncMongoClient

from crm_campaigns.domain.tracking import click_url, open_url

HUMAN = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"
WORKSPACE = "bench-tracking"


def serve(port: int) -> None:
    """The child process: campaigns' app with the baseline route, on ``port``."""
    import uvicorn
    from fastapi import Response

    from crm_campaigns.api.tracking import PIXEL
    from crm_campaigns.main import create_app
    from crmkit.web import tune_gc

    app = create_app()

    @app.get("/bench/baseline", include_in_schema=False)
    async def baseline() -> Response:
        return Response(PIXEL, media_type="image/gif")

    tune_gc()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def seed(mongo_uri: str, database: str, count: int) -> list[str]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        sent = datetime.now(UTC) - timedelta(hours=1)
        ids = [f"bench-send-{i:07d}" for i in range(count)]
        docs = [{"_id": send_id, "workspace_id": WORKSPACE, "campaign_id": "bench-campaign", "variant": "",
                 "contact_id": f"bench-contact-{i:07d}", "address": f"r{i}@bench.example",
                 "status": "delivered", "created_at": sent, "sent_at": sent} for i, send_id in enumerate(ids)]
        for start in range(0, count, 5000):
            await client[database].sends.insert_many(docs[start:start + 5000], ordered=False)
        return ids
    finally:
        await client.close()


async def measure(clients: Clients, paths: list[str], count: int, in_flight: int, expect: int,
                  platform: Platform, server_pid: int, timeout: float) -> Load:
    load = Load(count=count, in_flight=in_flight)

    async def job(index: int) -> bool:
        client = await clients.idle.get()
        try:
            response = await client.get(paths[index % len(paths)], headers={"user-agent": HUMAN})
        except httpx.HTTPError as exc:
            load.errors[type(exc).__name__] += 1
            return False
        finally:
            clients.idle.put_nowait(client)
        if response.status_code != expect:
            load.errors[str(response.status_code)] += 1
            return False
        return True

    meter = CpuMeter(platform)
    meter.start()
    server_before, began = cpu_seconds(server_pid), time.perf_counter()
    await drive(load, job, time.perf_counter() + timeout)
    load.cpu = meter.stop()
    load.cpu["campaigns"] = (cpu_seconds(server_pid) - server_before) / (time.perf_counter() - began)
    return load


def start_server(platform: Platform, secret: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    [port] = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    env = {**platform.env, "CAMPAIGNS_HTTP_PORT": str(port), "CAMPAIGNS_TRACKING_SECRET": secret,
           "CAMPAIGNS_PUBLIC_BASE_URL": base, "CAMPAIGNS_TRACKING_RATE_PER_SECOND": "1000000000",
           "CAMPAIGNS_TRACKING_BURST": "1000000000", "CAMPAIGNS_SENDER_POLL_SECONDS": "60"}
    log = platform.data_dir / "logs" / "campaigns-bench.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return child, base, log


async def bench(args: argparse.Namespace, platform: Platform) -> None:
    secret = secrets.token_urlsafe(48)
    child, base, log = start_server(platform, secret)
    try:
        platform.devstack.wait_for(lambda: _ready(f"{base}/readyz"), 120, "the campaigns app", child, log)
        progress(f"seeding {args.sends} sends")
        send_ids = await seed(platform.infra["CRM_MONGO_URI"], f"{platform.database_prefix}campaigns",
                              args.sends)
        sign = {"base_url": base, "secret": secret, "workspace_id": WORKSPACE}
        opens = [open_url(**sign, send_id=s).removeprefix(base) for s in send_ids]
        clicks = [click_url(f"https://shop.example.com/p/{i}", **sign, send_id=s).removeprefix(base)
                  for i, s in enumerate(send_ids)]
        forged = [f"{path[:-4]}AAAA" for path in clicks[:100]]
        clients = Clients(base, args.concurrency)
        try:
            await measure(clients, ["/bench/baseline"], min(args.n, 500), args.concurrency, 200, platform,
                          child.pid, args.timeout)  # warm-up
            runs: dict[str, Load] = {}
            for name, paths, expect in (("baseline", ["/bench/baseline"], 200), ("open pixel", opens, 200),
                                        ("click redirect", clicks, 302), ("forged click", forged, 404)):
                progress(f"{name}: {args.n} requests, {args.concurrency} in flight")
                runs[name] = await measure(clients, paths, args.n, args.concurrency, expect, platform,
                                           child.pid, args.timeout)
        finally:
            await clients.aclose()
    except BaseException:
        print_log_tails(log.parent)
        raise
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
    report(args, platform, runs)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def report(args: argparse.Namespace, platform: Platform, runs: dict[str, Load]) -> None:
    base = runs["baseline"]
    rows = [["endpoint", "requests/s", "x baseline", "p50", "p99", "x baseline p99", "errors",
             "campaigns CPU", "mongo CPU"]]
    for name, load in runs.items():
        p50, p99 = percentile_ms(load.latencies, 0.50), percentile_ms(load.latencies, 0.99)
        rows.append([name, number(load.per_second, "/s"), ratio(load.per_second, base.per_second),
                     number(p50, "ms"), number(p99, "ms"),
                     ratio(p99, percentile_ms(base.latencies, 0.99)),
                     str(sum(load.errors.values())) + (f" {dict(load.errors)}" if load.errors else ""),
                     f"{load.cpu.get('campaigns', 0):.2f} cores",
                     f"{load.cpu.get('mongo', 0):.2f} cores"])
    print()
    print(f"campaigns tracking: {args.n} requests per endpoint, {args.concurrency} in flight, "
          f"{args.sends} sends; {machine()}")
    print(f"servers: {platform.servers()}")
    for line in table(rows, right=range(1, 9)):
        print(line)
    print("The baseline is GET /bench/baseline in the same campaigns process: the same GIF, no work.")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=5000, help="requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--sends", type=int, default=10_000, help="send documents to spread the hits over")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per endpoint at most")
    parser.add_argument("--logs", type=Path, help="copy the servers' logs here at the end")
    args = parser.parse_args()
    with Platform(keep_logs=args.logs) as platform:
        asyncio.run(bench(args, platform))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
