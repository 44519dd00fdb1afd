"""The local infrastructure scripts behave as a newcomer's machine needs them to."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import devstack  # on sys.path: the root conftest puts deploy/local there
import pytest

RUN_ID = os.environ["CRM_TEST_RUN_ID"]

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = ROOT / ".local" / f"devstack-{RUN_ID}"
    yield path
    devstack.down(path)
    shutil.rmtree(path, ignore_errors=True)


def test_without_a_server_on_5432_a_throwaway_cluster_is_made_and_stopped(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = devstack.port_open
    monkeypatch.setattr(devstack, "port_open",
                        lambda port, host="127.0.0.1": port != 5432 and answers(port, host))
    stack = devstack.Stack(data_dir)
    port = devstack.free_port()
    dsn = devstack._start_postgres(stack, port)
    assert dsn == f"postgresql://postgres@127.0.0.1:{port}/postgres"
    assert devstack._start_postgres(stack, port) == dsn  # running twice is fine

    async def version() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    assert asyncio.run(version())
    assert devstack.down(data_dir) == ["postgres"]
    assert not answers(port)


def test_a_port_taken_by_another_program_is_a_readable_error(data_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(devstack.InfraError, match=f"port {port} .Kafka. is taken"):
            devstack._start_kafka(devstack.Stack(data_dir), port)


def test_down_stops_only_what_up_started(data_dir: Path) -> None:
    assert devstack.down(data_dir) == []  # nothing started: nothing stopped
