"""`make dev` as a newcomer runs it: the platform with demo data, then Ctrl-C leaves nothing running.

The run starts its own broker and MongoDB server, as `make dev` does on a fresh machine (the
session's platform shares a broker with the integration tests, and would consume this run's
events too), on ports shifted away from a developer's own `make dev`. PostgreSQL is shared,
with this run's own database prefix.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import devstack  # on sys.path: the root conftest puts deploy/local there
import httpx
import pytest

RUN_ID = os.environ["CRM_TEST_RUN_ID"]

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def ephemeral_range() -> range:
    """The ports the kernel hands out to outgoing connections (Linux; the usual default else)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_offset() -> int:
    """A shift that puts every port of `make dev` on a free one, and as few as it can in the
    ephemeral range: there, any of the suite's outgoing connections may hold the port by the
    time `make dev` binds it (the campaigns gRPC port was taken that way once; unshifted, the
    gRPC ports 50051-50056 sit in the middle of Linux's default range)."""
    ports = [p for pair in devstack.SERVICES.values() for p in pair]
    ports += [devstack.DEV_PORTS["kafka"], devstack.DEV_PORTS["mongo"]]
    ephemeral = ephemeral_range()
    offsets = [o for o in range(2000, 15000, 10) if max(ports) + o <= 65535]
    exposed = {o: sum(p + o in ephemeral for p in ports) for o in offsets}
    least = min(exposed.values())
    candidates = [o for o in offsets if exposed[o] == least]
    random.shuffle(candidates)
    for offset in candidates:
        if not any(devstack.port_open(port + offset) for port in ports):
            return offset
    raise RuntimeError("no port offset leaves every port of make dev free")


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_make_dev_serves_demo_data_and_ctrl_c_stops_everything(infra_env: dict[str, str]) -> None:
    data_dir = ROOT / ".local" / f"devtest-{RUN_ID}"
    offset = free_offset()
    env = {key: value for key, value in os.environ.items()
           if key not in ("CRM_KAFKA_BOOTSTRAP_SERVERS", "CRM_MONGO_URI")}
    env.update({"CRM_DATABASE_PREFIX": f"crm_t{RUN_ID}_dev_",
                "CRM_CONSUMER_GROUP_PREFIX": f"crm.t{RUN_ID}.dev."})
    proc = subprocess.Popen(
        [sys.executable, "deploy/local/devstack.py", "dev", "--dir", str(data_dir),
         "--port-offset", str(offset)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
        # and Ctrl-C's default action, as a terminal gives it: a suite started in the background
        # (`make test &`) has SIGINT ignored, which children inherit, and Python then never
        # raises KeyboardInterrupt.
        preexec_fn=_sigint_default,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while "is running" not in "".join(output):
            assert proc.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        token = re.search(r"CRM_TOKEN=(\S+)", "".join(output))
        assert token, "".join(output)
        ticketing = devstack.SERVICES["ticketing"][0] + offset
        tickets = httpx.get(f"http://127.0.0.1:{ticketing}/v1/tickets",
                            headers={"Authorization": f"Bearer {token.group(1)}"}).json()["items"]
        assert sorted(t["subject"] for t in tickets) == [
            "Can I upgrade my plan?", "Invoice question for November", "My order arrived damaged"]
        assert {t["assignee"] for t in tickets} == {"demo-admin"}  # the demo queue routed them
        pipeline = devstack.SERVICES["pipeline"][0] + offset
        deals = httpx.get(f"http://127.0.0.1:{pipeline}/v1/deals",
                          headers={"Authorization": f"Bearer {token.group(1)}"}).json()["items"]
        assert [(d["title"], d["amount_minor"]) for d in deals] == [("Upgrade to Business", 480_000)]
        # The demo workspace publishes to partners: the deal reaches the public feed.
        feed = f"http://127.0.0.1:{devstack.SERVICES['partners'][0] + offset}/v1/events"
        published: set[str] = set()
        while "crm.pipeline.deal.created.v1" not in published and time.monotonic() < deadline + 60:
            page = httpx.get(feed, params={"limit": 500},
                             headers={"Authorization": f"Bearer {token.group(1)}"}).json()
            published = {event["type"] for event in page["events"]}
            time.sleep(0.3)
        assert {"crm.pipeline.deal.created.v1", "crm.tickets.ticket.created.v1"} <= published
        pids = {p.stem: int(p.read_text()) for p in (data_dir / "run").glob("*.pid")}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        code = proc.wait(timeout=60)
    assert code == 0, "".join(output)
    assert set(pids) == {*devstack.SERVICES, "kafka", "mongo"}
    assert not [name for name, pid in pids.items() if devstack.is_alive(pid)]
    assert not [name for name, (http, grpc) in devstack.SERVICES.items()
                if devstack.port_open(http + offset) or devstack.port_open(grpc + offset)]
    assert not list((data_dir / "run").glob("*.pid"))
    infra = [devstack.DEV_PORTS["kafka"] + offset, devstack.DEV_PORTS["mongo"] + offset]
    assert not [port for port in infra if devstack.port_open(port)]
    shutil.rmtree(data_dir, ignore_errors=True)
