"""What every ingest route shares: the service, the settings, and reading a bounded body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from crm_ingest.channel_routing import WebhookIntake
from crm_ingest.service import IngestService
from crm_ingest.settings import Settings
from crmkit.problems import Problem
from crmkit.web import state

Service = Annotated[IngestService, Depends(state("service", IngestService))]
Webhooks = Annotated[WebhookIntake, Depends(state("webhooks", WebhookIntake))]
IngestSettings = Annotated[Settings, Depends(state("settings", Settings))]


T = TypeVar("T")


def configured(name: str, channel_of: Callable[[Settings], T | None]) -> Callable[[Settings], T]:
    """A dependency giving a channel's settings, or 404 while the channel is not configured."""
    def dependency(settings: IngestSettings) -> T:
        found = channel_of(settings)
        if found is None:
            raise Problem(404, "not-found", "Not found", f"the {name} channel is not configured")
        return found

    return dependency


class PayloadTooLarge(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(413, "too-large", "Payload too large", detail)


# A record larger than the broker takes (aiokafka's MessageSizeTooLargeError) is this.
STREAM_LIMIT = "the message is larger than the event stream takes"


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is larger than ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the limit is {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the limit is {limit} bytes")
    return bytes(body)
