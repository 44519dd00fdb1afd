"""Load for benchmarks: requests (or sends) with a number in flight or at a steady rate, each
answer timed; HTTP/1.1 keep-alive clients that do not cost more than the server they measure;
and the cores each process keeps busy meanwhile."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _platform import Platform, per_second, run_concurrently

HTTP_TIMEOUT = 30.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of every process in ``pid``'s process group, in seconds.
    devstack starts each server and service in its own session, so this is the whole of it."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core, every process)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """The cores each process kept busy between ``start()`` and ``stop()``, and the rest of
    the machine's work (other programs) in the same time."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def start(self) -> None:
        self.pids = {name: pid for name in ("ingest", "contacts", "kafka", "mongo", "postgres")
                     if (pid := self.platform.pid(name)) is not None}
        self.began = time.perf_counter()
        self.used = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.own = time.process_time()
        self.machine = machine_busy()

    def stop(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.began
        busy = {name: (cpu_seconds(pid) - self.used[name]) / seconds for name, pid in self.pids.items()}
        busy["bench"] = (time.process_time() - self.own) / seconds
        busy["others"] = max(0.0, (machine_busy() - self.machine) / seconds - sum(busy.values()))
        return busy


@dataclass
class Load:
    """Requests (or baseline sends) and their answers, ``in_flight`` at a time or at ``rate``."""

    count: int
    in_flight: int = 0
    rate: float = 0.0  # offered requests a second (0: as fast as answers come)
    ok: int = 0
    seconds: float = 0.0  # first sent -> last answer
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float | None:
        return per_second(self.ok, self.seconds)


async def drive(load: Load, job: Callable[[int], Awaitable[bool]], deadline: float) -> None:
    """Run ``job(i)`` for every request (True when it was accepted), timing each answer: with
    ``load.in_flight`` requests in flight, or started at ``load.rate`` a second whatever the
    answers do (open loop, so that a slow answer cannot hold the next request back)."""
    async def timed(index: int) -> None:
        start = time.perf_counter()
        if await job(index):
            load.latencies.append(time.perf_counter() - start)

    first = time.perf_counter()
    if load.rate <= 0:
        await run_concurrently(load.count, load.in_flight, timed, deadline)
    else:
        started: list[asyncio.Task[None]] = []
        for index in range(load.count):
            delay = first + index / load.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() > deadline:
                break
            started.append(asyncio.create_task(timed(index)))
        await asyncio.gather(*started)
    load.seconds = time.perf_counter() - first
    load.ok = len(load.latencies)


class Clients:
    """HTTP/1.1 keep-alive connections to one server, one httpx client each, lent to one request
    at a time. (One client with a pool of 32 connections costs about four times the CPU per
    request of 32 clients with one: httpcore looks through its whole pool on every request,
    and the load generator, not the server, would be measured.)"""

    def __init__(self, base_url: str, count: int) -> None:
        self.all = [httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT, trust_env=False,
                                      limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
                    for _ in range(count)]
        self.idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in self.all:
            self.idle.put_nowait(client)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        client = await self.idle.get()
        try:
            return await client.post(path, content=body, headers=headers)
        finally:
            self.idle.put_nowait(client)

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.all))
