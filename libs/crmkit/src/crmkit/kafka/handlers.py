"""Typed handlers: route one CloudEvents type to a function taking its parsed payload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message

from crmkit.kafka.consumer import Handler
from crmkit.kafka.envelope import Envelope

M = TypeVar("M", bound=Message)


def on_event(
    event_type: str, message_type: type[M], apply: Callable[[Envelope, M], Awaitable[None]]
) -> Handler:
    """A handler that applies ``event_type`` events and skips the topic's other types
    (new types are added to topics without breaking older consumers)."""

    async def handle(envelope: Envelope) -> None:
        if envelope.type != event_type:
            return
        message = envelope.parse(message_type)
        assert isinstance(message, message_type)
        await apply(envelope, message)

    return handle
