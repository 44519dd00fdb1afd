"""The running platform, started as `make dev` starts it: every service its own process."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import devstack  # on sys.path: the root conftest puts deploy/local there
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

RUN_ID = os.environ["CRM_TEST_RUN_ID"]
# How long to wait for the platform to act on what a test sent. A new platform's consumer
# groups first read everything the run's earlier tests left on the shared topics.
WAIT = 90

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Collector:
    """A minimal OTLP/HTTP receiver: the spans every service exported, by trace id."""

    port: int = 0
    spans: list[tuple[str, str, str]] = field(default_factory=list)  # (trace id, service, name)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def services_in(self, trace_id: str) -> set[str]:
        with self.lock:
            return {service for tid, service, _ in self.spans if tid == trace_id}


def _collector_handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                        service = attrs.get("service.name", "")
                        for scope in resource_spans.scope_spans:
                            collector.spans += [(s.trace_id.hex(), service, s.name) for s in scope.spans]
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def collector() -> Iterator[Collector]:
    found = Collector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _collector_handler(found))
    found.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()


# The WhatsApp business number of the platform, and the workspace it delivers to.
WHATSAPP_PHONE_NUMBER_ID = "100000000000077"
WHATSAPP_WORKSPACE = "e2e-whatsapp"
# A workspace reached on every channel: its support address (SMTP), its website's chat widget,
# and its own WhatsApp business number; replies go out through the peers below.
CHANNELS_WORKSPACE = "e2e-channels"
CHANNELS_ADDRESS = "support@e2e-channels.example"
CHANNELS_WIDGET = "e2e-widget"
CHANNELS_PHONE_NUMBER_ID = "100000000000078"


@dataclass
class Peers:
    """What ingest delivers replies to: an SMTP relay that keeps each message, and a stand-in
    for Meta's Graph API that keeps each request and answers as WhatsApp does."""

    smtp_port: int = 0
    http_port: int = 0
    mails: list[bytes] = field(default_factory=list)
    requests: list[tuple[str, dict[str, object]]] = field(default_factory=list)  # (path, JSON body)


def _graph_handler(peers: Peers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            peers.requests.append((self.path, body))
            answer = json.dumps({"messaging_product": "whatsapp",
                                 "messages": [{"id": f"wamid.out-{secrets.token_hex(8)}"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def peers() -> Iterator[Peers]:
    from aiosmtpd.controller import Controller

    found = Peers()

    class Relay:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            found.mails.append(bytes(envelope.original_content or envelope.content))
            return "250 OK"

    relay = Controller(Relay(), hostname="127.0.0.1", port=devstack.free_port())
    relay.start()
    found.smtp_port = relay.port
    graph = ThreadingHTTPServer(("127.0.0.1", 0), _graph_handler(found))
    found.http_port = graph.server_port
    thread = threading.Thread(target=graph.serve_forever, daemon=True)
    thread.start()
    yield found
    graph.shutdown()
    relay.stop()


@dataclass
class Platform:
    ports: dict[str, tuple[int, int]]
    secret: str
    collector: Collector
    whatsapp_secret: str
    database_prefix: str
    postgres_dsn: str
    smtp_port: int  # ingest's SMTP listener
    identity_secret: str  # CHANNELS_WIDGET's, for signing a logged-in visitor's email
    peers: Peers

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service][0]}"

    def grpc(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service][1]}"


@pytest.fixture(scope="module")
def platform(infra_env: dict[str, str], collector: Collector, peers: Peers) -> Iterator[Platform]:
    """Stopped at the end of its module: running on, its consumers would also act on the
    events of tests that run after it."""
    with running_platform(infra_env, collector, peers,
                          ROOT / ".local" / f"e2e-{RUN_ID}-{secrets.token_hex(2)}") as started:
        yield started


@contextmanager
def running_platform(infra_env: dict[str, str], collector: Collector, peers: Peers,
                     data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Platform]:
    """Every service started as `make dev` starts it, its logs under ``data_dir``/logs; all
    removed on exit. tests/proof starts one for its whole package with this, with more
    channels configured (``extra_env``)."""
    stack = devstack.Stack(data_dir)
    ports = {name: (devstack.free_port(), devstack.free_port()) for name in devstack.SERVICES}
    smtp_port, identity_secret = devstack.free_port(), secrets.token_urlsafe(32)
    base = {
        **infra_env,
        "CRM_JWT_SECRET": os.environ["CRM_JWT_SECRET"],
        "CRM_DATABASE_PREFIX": f"crm_t{RUN_ID}_e2e_",
        "CRM_CONSUMER_GROUP_PREFIX": f"crm.t{RUN_ID}.e2e.",
        "CRM_OTEL_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "INGEST_WHATSAPP_APP_SECRET": secrets.token_urlsafe(32),
        "INGEST_WHATSAPP_VERIFY_TOKEN": secrets.token_urlsafe(16),
        "INGEST_WHATSAPP_ACCOUNTS": json.dumps(
            {WHATSAPP_PHONE_NUMBER_ID: {"workspace_id": WHATSAPP_WORKSPACE},
             CHANNELS_PHONE_NUMBER_ID: {"workspace_id": CHANNELS_WORKSPACE}}),
        # Email in over SMTP, web chat, and replies out through the peers.
        "INGEST_SMTP_PORT": str(smtp_port),
        "INGEST_SMTP_INBOUND_ADDRESSES": json.dumps({CHANNELS_ADDRESS: CHANNELS_WORKSPACE}),
        "INGEST_CHAT_SECRET": secrets.token_urlsafe(32),
        "INGEST_CHAT_WIDGETS": json.dumps({CHANNELS_WIDGET: {
            "workspace_id": CHANNELS_WORKSPACE, "identity_secret": identity_secret}}),
        "INGEST_SMTP_RELAY_HOST": "127.0.0.1",
        "INGEST_SMTP_RELAY_PORT": str(peers.smtp_port),
        "INGEST_SMTP_TLS": "none",
        "INGEST_EMAIL_FROM": json.dumps({CHANNELS_WORKSPACE: f"Support <{CHANNELS_ADDRESS}>"}),
        "INGEST_GRAPH_API_URL": f"http://127.0.0.1:{peers.http_port}",
        "INGEST_WHATSAPP_SEND": json.dumps({CHANNELS_WORKSPACE: {
            "phone_number_id": CHANNELS_PHONE_NUMBER_ID, "token": "e2e-graph-token"}}),
        **(extra_env or {}),
    }
    try:
        devstack.start_services(stack, devstack.service_env(base, ports), ports)
        yield Platform(ports, os.environ["CRM_JWT_SECRET"], collector, base["INGEST_WHATSAPP_APP_SECRET"],
                       base["CRM_DATABASE_PREFIX"], infra_env["CRM_POSTGRES_DSN"], smtp_port,
                       identity_secret, peers)
    finally:
        devstack.stop_services(stack)
        for log in sorted(stack.log_dir.glob("*.log")):  # shown by pytest when a test failed
            print(f"--- {log.name} (last lines)")
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        shutil.rmtree(data_dir, ignore_errors=True)
