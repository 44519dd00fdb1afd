"""The proof suites' one running platform, and workspace B's data made on it.

tests/proof has no ``__init__.py`` (tests/e2e's conftest is imported relatively, as the e2e
modules import it), so its package-scoped fixtures live until the end of the session; the
proof suites are the last directory of the run, so nothing runs after them for the
platform's consumers to act on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ..e2e.conftest import RUN_ID, running_platform

# Imported as fixtures of this package: the trace collector and the peers replies go to.
from ..e2e.conftest import collector as collector
from ..e2e.conftest import peers as peers
from ._platform import ROOT, SERVICES, Proof, channels_env
from ._seed import Seeds, seed_workspace_b


@pytest.fixture(scope="package")
def proof(infra_env: dict[str, str], collector: Any, peers: Any) -> Iterator[Proof]:
    """One platform for every proof module (a start costs half a minute), every inbound
    channel on, its logs kept for the personal-data scan until it stops."""
    data_dir = ROOT / ".local" / f"proof-{RUN_ID}-{os.getpid()}"
    with running_platform(infra_env, collector, peers, data_dir, channels_env()) as platform:
        specs = {name: httpx.get(f"{platform.url(name)}/openapi.json", timeout=30).json()
                 for name in SERVICES}
        yield Proof(platform, data_dir / "logs", specs)


@pytest.fixture(scope="package")
def webhook_url() -> Iterator[str]:
    """The partners' webhook endpoint on a loopback port (devstack allows loopback webhooks):
    it answers 204 to every delivery, for the whole package so that deliveries made after the
    seeding are not retried against a closed port. The deliveries log shows what it got."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/proof-webhooks"
    server.shutdown()


@pytest.fixture(scope="package")
async def seeds(proof: Proof, webhook_url: str) -> Seeds:
    return await seed_workspace_b(proof, webhook_url)
