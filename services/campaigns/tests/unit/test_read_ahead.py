"""The sender reads the audience a batch ahead (``service/sender.py``): everything arrives in
order, the stream's error reaches the reader after what came before it, and a reader that stops
early (a pause) stops the stream even with the read-ahead full."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from crm_campaigns.service.sender import _read_ahead
from crm_campaigns.wire import Recipient


def recipient(n: int) -> Recipient:
    return Recipient(contact_id=f"c{n:04d}", email=f"p{n}@example.com", marketing_consent=True, time_zone="")


async def test_every_recipient_arrives_in_order() -> None:
    async def five() -> AsyncGenerator[Recipient, None]:
        for n in range(5):
            yield recipient(n)

    assert [r.contact_id async for r in _read_ahead(five(), 2)] == [f"c{n:04d}" for n in range(5)]


async def test_the_streams_error_comes_after_what_it_sent_before() -> None:
    async def failing() -> AsyncGenerator[Recipient, None]:
        yield recipient(1)
        raise ValueError("contacts went away")

    got: list[str] = []
    with pytest.raises(ValueError, match="went away"):
        async for r in _read_ahead(failing(), 2):
            got.append(r.contact_id)
    assert got == ["c0001"]


async def test_a_reader_that_stops_early_stops_the_stream_even_with_the_queue_full() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[Recipient, None]:
        n = 0
        try:
            while True:
                n += 1
                yield recipient(n)
        finally:
            closed.set()

    reader = _read_ahead(endless(), 3)
    assert (await reader.__anext__()).contact_id == "c0001"
    await asyncio.sleep(0.05)  # the stream fills the read-ahead and waits
    await asyncio.wait_for(reader.aclose(), 5)
    assert closed.is_set()
