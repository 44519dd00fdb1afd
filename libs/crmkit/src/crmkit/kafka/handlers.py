"""Typed handlers: one CloudEvents type, converted to a service's own input, applied in batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from crmkit.kafka.consumer import BatchHandler, Handler
from crmkit.kafka.envelope import Envelope
from crmkit.kafka.retry import PermanentError

M = TypeVar("M", bound=Message)
T = TypeVar("T")


@dataclass(frozen=True)
class Delivered(Generic[T]):
    """A service's input from one event, with what idempotency and tenancy need."""

    event_id: str
    workspace_id: str
    item: T


@dataclass(frozen=True)
class Handlers:
    """The runner's two ways in: one record at a time, or a partition's fetched batch at once."""

    one: Handler
    batch: BatchHandler
    # The event types these handlers act on (every other type is skipped).
    event_types: frozenset[str] = frozenset()


def consume(
    event_type: str,
    message_type: type[M],
    convert: Callable[[Envelope, M], T],
    apply: Callable[[list[Delivered[T]]], Awaitable[object]],
    *,
    workspace_of: Callable[[M], str] | None = None,
) -> Handlers:
    """Handlers that convert each ``event_type`` event with ``convert`` (which raises
    PermanentError for bad input) and give the results to ``apply`` together. Other event
    types on the topic are skipped, so new types can be added without breaking this consumer.
    With ``workspace_of``, a payload whose workspace is not the envelope's is refused."""

    def deliveries(envelopes: Sequence[Envelope]) -> list[Delivered[T]]:
        found: list[Delivered[T]] = []
        seen: set[str] = set()
        for envelope in envelopes:
            if envelope.type != event_type or envelope.id in seen:
                continue  # another type, or the same event delivered twice in one batch
            seen.add(envelope.id)
            message = envelope.parse(message_type)
            assert isinstance(message, message_type)
            if workspace_of is not None and workspace_of(message) != envelope.workspace:
                raise PermanentError("the payload's workspace differs from the envelope's")
            found.append(Delivered(envelope.id, envelope.workspace, convert(envelope, message)))
        return found

    async def one(envelope: Envelope) -> None:
        items = deliveries([envelope])
        if items:
            await apply(items)

    async def batch(envelopes: Sequence[Envelope]) -> None:
        items = deliveries(envelopes)
        if items:
            await apply(items)

    return Handlers(one, batch, frozenset({event_type}))


def combine(*handlers: Handlers) -> Handlers:
    """Handlers for one topic that carries several event types, each with its own handlers.
    A batch is cut into runs of consecutive events of one type, handled in the topic's order."""
    by_type = {event_type: h for h in handlers for event_type in h.event_types}

    async def one(envelope: Envelope) -> None:
        found = by_type.get(envelope.type)
        if found is not None:
            await found.one(envelope)

    async def batch(envelopes: Sequence[Envelope]) -> None:
        run: list[Envelope] = []
        current: Handlers | None = None
        for envelope in envelopes:
            found = by_type.get(envelope.type)
            if found is None:
                continue
            if found is not current and run:
                assert current is not None
                await current.batch(run)
                run = []
            current = found
            run.append(envelope)
        if run and current is not None:
            await current.batch(run)

    return Handlers(one, batch, frozenset(by_type))
