"""One set of real servers per test run, shared by every integration and end-to-end test.

By default the project's own local servers (deploy/local/devstack.py) on free loopback
ports, with their data in a throwaway folder; where a Docker engine answers, testcontainers
images instead; where CRM_KAFKA_BOOTSTRAP_SERVERS / CRM_MONGO_URI / CRM_POSTGRES_DSN are
set, those servers. Every run uses its own database and consumer-group prefix.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
# Names this run's databases, groups and folders; tests/ modules read it from the environment.
RUN_ID = os.environ.setdefault("CRM_TEST_RUN_ID", secrets.token_hex(4))


sys.path.insert(0, str(ROOT / "deploy" / "local"))
import devstack  # noqa: E402 - the local infrastructure scripts, shared with `make dev`

# Settings every process of this run reads; set before any test imports a service.
os.environ.setdefault("CRM_JWT_SECRET", secrets.token_urlsafe(48))
os.environ["CRM_ENVIRONMENT"] = "test"
os.environ["CRM_DATABASE_PREFIX"] = f"crm_t{RUN_ID}_"
os.environ["CRM_CONSUMER_GROUP_PREFIX"] = f"crm.t{RUN_ID}."


def _docker_engine() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _containers(stack: list[object]) -> dict[str, str]:  # pragma: no cover - needs Docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft()
    postgres = PostgresContainer("postgres:16-alpine", username="postgres", password="postgres")
    mongo = (DockerContainer("mongo:7").with_exposed_ports(27017)
             .with_command("--replSet rs0 --bind_ip_all"))
    for container in (kafka, postgres, mongo):
        container.start()
        stack.append(container)
    wait_for_logs(mongo, "Waiting for connections")
    mongo.exec(["mongosh", "--quiet", "--eval", "rs.initiate()"])
    host, port = mongo.get_container_host_ip(), mongo.get_exposed_port(27017)
    dsn = postgres.get_connection_url().replace("postgresql+psycopg2", "postgresql")
    return {
        "CRM_KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
        "CRM_POSTGRES_DSN": dsn,
        "CRM_MONGO_URI": f"mongodb://{host}:{port}/?directConnection=true",
    }


@pytest.fixture(scope="session")
def infra_env() -> Iterator[dict[str, str]]:
    """The CRM_* connection settings of this run's servers (also set in os.environ)."""
    data_dir = ROOT / ".local" / f"test-{RUN_ID}"
    containers: list[object] = []
    configured = all(os.environ.get(k) for k in
                     ("CRM_KAFKA_BOOTSTRAP_SERVERS", "CRM_MONGO_URI", "CRM_POSTGRES_DSN"))
    if not configured and _docker_engine():
        env = _containers(containers)
        os.environ.update(env)
        devstack.create_topics(env["CRM_KAFKA_BOOTSTRAP_SERVERS"])
    else:
        ports = {"kafka": devstack.free_port(), "mongo": devstack.free_port(),
                 "postgres": devstack.free_port()}
        try:
            env = devstack.up(data_dir, ports).env
        except BaseException:
            devstack.down(data_dir)  # whatever did start
            raise
        os.environ.update(env)
    try:
        yield env
    finally:
        try:
            _drop_databases(env["CRM_POSTGRES_DSN"])
        finally:
            for container in containers:
                container.stop()  # type: ignore[attr-defined]
            devstack.down(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)


def _drop_databases(dsn: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                     f"crm_t{RUN_ID}_%")
            for row in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="session")
def infra(infra_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """InfraSettings pointing at this run's servers."""
    from crmkit.settings import InfraSettings

    return InfraSettings()  # type: ignore[call-arg]
