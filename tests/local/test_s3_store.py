"""deploy/local/s3_store.py, the S3 server under the broker when it must survive a restart: it honours the
conditional writes tansu relies on, lists like S3, and a broker on it keeps its records and
committed offsets across a SIGKILL."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import devstack  # on sys.path: the root conftest puts deploy/local there
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RUN_ID = os.environ["CRM_TEST_RUN_ID"]
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture(scope="module")
def stack() -> Iterator[devstack.Stack]:
    """The S3 store, and room for a broker on it, started and stopped as devstack does."""
    data_dir = ROOT / ".local" / f"s3-store-{RUN_ID}"
    yield devstack.Stack(data_dir)
    devstack.down(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_env(stack: devstack.Stack) -> dict[str, str]:
    return dict(devstack.start_s3_store(stack, devstack.free_port()))


@pytest.fixture(scope="module")
def s3(s3_env: dict[str, str]) -> str:
    return s3_env["AWS_ENDPOINT"]


def _list(client: httpx.Client, **params: str) -> tuple[list[str], list[str], str | None]:
    from xml.etree import ElementTree

    answer = client.get("/tansu", params={"list-type": "2", **params})
    assert answer.status_code == 200, answer.text
    root = ElementTree.fromstring(answer.content)  # noqa: S314 - our own server's answer
    keys = [e.text or "" for e in root.iter(f"{NS}Key")]
    prefixes = [e.text or "" for e in root.iter(f"{NS}Prefix") if e.text and e.text != params.get("prefix")]
    return keys, prefixes, root.findtext(f"{NS}NextContinuationToken")


def test_conditional_writes_are_refused_as_s3_refuses_them(s3: str) -> None:
    with httpx.Client(base_url=s3) as client:
        created = client.put("/tansu/cw/watermark.json", content=b"1", headers={"If-None-Match": "*"})
        assert created.status_code == 200
        again = client.put("/tansu/cw/watermark.json", content=b"2", headers={"If-None-Match": "*"})
        assert again.status_code == 412
        assert b"<Code>PreconditionFailed</Code>" in again.content

        stale = client.put("/tansu/cw/watermark.json", content=b"2", headers={"If-Match": '"0123"'})
        assert stale.status_code == 412
        moved = client.put("/tansu/cw/watermark.json", content=b"2",
                           headers={"If-Match": created.headers["etag"]})
        assert moved.status_code == 200
        assert moved.headers["etag"] != created.headers["etag"]
        # The first writer's ETag no longer matches: a second broker cannot overwrite.
        late = client.put("/tansu/cw/watermark.json", content=b"3",
                          headers={"If-Match": created.headers["etag"]})
        assert late.status_code == 412
        missing = client.put("/tansu/cw/absent.json", content=b"1", headers={"If-Match": '"0123"'})
        assert missing.status_code == 412

        read = client.get("/tansu/cw/watermark.json")
        assert read.content == b"2"
        assert read.headers["etag"] == moved.headers["etag"]
        assert client.get("/tansu/cw/absent.json").status_code == 404
        assert client.get("/nobucket/cw/watermark.json").status_code == 404


def test_ranges_heads_and_deletes(s3: str) -> None:
    with httpx.Client(base_url=s3) as client:
        client.put("/tansu/rd/blob", content=b"0123456789")
        part = client.get("/tansu/rd/blob", headers={"Range": "bytes=2-5"})
        assert (part.status_code, part.content) == (206, b"2345")
        assert part.headers["content-range"] == "bytes 2-5/10"
        assert client.get("/tansu/rd/blob", headers={"Range": "bytes=-3"}).content == b"789"
        assert client.get("/tansu/rd/blob", headers={"Range": "bytes=20-"}).status_code == 416
        head = client.head("/tansu/rd/blob")
        assert head.status_code == 200
        assert head.headers["content-length"] == "10"
        unchanged = client.get("/tansu/rd/blob", headers={"If-None-Match": head.headers["etag"]})
        assert unchanged.status_code == 304
        assert client.delete("/tansu/rd/blob").status_code == 204
        assert client.head("/tansu/rd/blob").status_code == 404
        multipart = client.post("/tansu/rd/big?uploads")
        assert multipart.status_code == 501  # loud, not silently wrong


def test_listing_pages_through_keys_and_common_prefixes_in_order(s3: str) -> None:
    names = [f"ls/t/{topic}/p/{n:04d}.batch" for topic in ("a", "b") for n in range(7)] + ["ls/t/c.json"]
    with httpx.Client(base_url=s3) as client:
        for name in reversed(names):
            client.put(f"/tansu/{name}", content=name.encode())
        client.put("/tansu/lt/after-the-prefix", content=b"x")

        seen: list[str] = []
        token: str | None = None
        while True:
            params = {"prefix": "ls/", "max-keys": "4", **({"continuation-token": token} if token else {})}
            keys, _, token = _list(client, **params)
            seen += keys
            if token is None:
                break
        assert seen == sorted(names)

        keys, prefixes, token = _list(client, prefix="ls/t/", delimiter="/")
        assert (keys, prefixes, token) == (["ls/t/c.json"], ["ls/t/a/", "ls/t/b/"], None)
        # A page that ends on a common prefix continues after everything under it.
        first = _list(client, prefix="ls/t/", delimiter="/", **{"max-keys": "1"})
        assert first[:2] == ([], ["ls/t/a/"])
        assert first[2]
        second = _list(client, prefix="ls/t/", delimiter="/",
                       **{"max-keys": "1", "continuation-token": first[2]})
        assert second[:2] == ([], ["ls/t/b/"])

        keys, _, _ = _list(client, prefix="ls/t/a/p/", **{"start-after": "ls/t/a/p/0004.batch"})
        assert keys == ["ls/t/a/p/0005.batch", "ls/t/a/p/0006.batch"]


def test_a_broker_on_it_keeps_records_and_committed_offsets_across_a_sigkill(
    stack: devstack.Stack, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_env.items():  # read by devstack's broker start
        monkeypatch.setenv(name, value)
    port = devstack.free_port()
    bootstrap = devstack._start_kafka(stack, port)
    topic, group = "s3-store-restart", "s3-store-readers"
    asyncio.run(_produce(bootstrap, topic, range(40)))
    asyncio.run(_commit(bootstrap, topic, group, 25))
    pid = stack.pid_of("kafka")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # our child: reaped, so that devstack sees it gone and starts another
    devstack._start_kafka(stack, port)

    offsets = asyncio.run(_produce(bootstrap, topic, range(40, 45)))
    assert offsets == list(range(40, 45))  # appended after the records from before, none replaced
    read = asyncio.run(_read_group(bootstrap, topic, group, 20))
    assert read == [f"m{n}".encode() for n in range(25, 45)]  # from the offset committed before


async def _produce(bootstrap: str, topic: str, numbers: range) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return [(await producer.send_and_wait(topic, f"m{n}".encode(), partition=0)).offset for n in numbers]
    finally:
        await producer.stop()


async def _commit(bootstrap: str, topic: str, group: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.start()
    try:
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


async def _read_group(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    """What the group reads from its committed offset on, once ``count`` records have come."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=1000)
                values += [record.value or b"" for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return values
