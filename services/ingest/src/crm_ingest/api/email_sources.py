"""The inbound-parse email webhook: a raw message POSTed by a mail provider or gateway, signed
with the secret of its source (domain/signing.py) instead of a bearer token.

The workspace is the one INGEST_EMAIL_SOURCES gives the source in the path, never anything in
the request. Checks, in order: the source exists (404), the content type (415), the size
(413), the signature and its timestamp (401), the source's rate (429; only authentic requests
count, so forged ones cannot use up a source's budget), a non-empty body (422).
"""

from __future__ import annotations

import time
from typing import Annotated

from aiokafka.errors import MessageSizeTooLargeError
from fastapi import APIRouter, Depends, Path, Request
from opentelemetry import metrics
from pydantic import BaseModel

from crm_ingest.adapters import EmailIn
from crm_ingest.api.deps import STREAM_LIMIT, IngestSettings, PayloadTooLarge, Service, read_limited
from crm_ingest.domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, TOLERANCE_SECONDS, Verdict, verify
from crmkit.problems import Problem
from crmkit.ratelimit import TooManyRequests
from crmkit.web import state

router = APIRouter(prefix="/v1/channels/email/sources", tags=["email"])

_meter = metrics.get_meter("crm_ingest")
_refused = _meter.create_counter(
    "crm.ingest.email.webhook.refused", unit="{request}",
    description="Inbound-parse webhook requests refused, by reason: unknown_source, missing, "
                "stale, forged (signature), too_large, rate, empty")

Adapters = Annotated[EmailIn, Depends(state("email_in", EmailIn))]
SOURCE_PREFIX = "email-webhook:"
RAW_TYPES = ("message/rfc822", "application/octet-stream", "text/plain")
_UNSIGNED = {
    Verdict.MISSING: f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required",
    Verdict.STALE: f"{TIMESTAMP_HEADER} is not within {TOLERANCE_SECONDS} seconds of now",
    Verdict.FORGED: f"{SIGNATURE_HEADER} is not a signature of this request with the source's secret",
}


class SignedEmailAccepted(BaseModel):
    id: str  # the raw record's, not the interaction's
    status: str = "accepted"


@router.post(
    "/{source}/inbound",
    status_code=202,
    response_model=SignedEmailAccepted,
    summary="Accept one raw message signed with its source's secret; it is processed asynchronously",
    openapi_extra={"requestBody": {"required": True, "content": {
        "message/rfc822": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def signed_inbound_email(source: Annotated[str, Path(max_length=64)], request: Request,
                               email_in: Adapters, service: Service,
                               settings: IngestSettings) -> SignedEmailAccepted:
    config = email_in.sources.get(source)
    if config is None:
        _refused.add(1, {"reason": "unknown_source"})
        raise Problem(404, "unknown-source", "Unknown email source",
                      "no email source of this name is configured")
    where = {"source": source}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in RAW_TYPES:
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "send the raw message as message/rfc822")
    try:
        raw = await read_limited(request, settings.max_email_bytes)
    except PayloadTooLarge:
        _refused.add(1, {**where, "reason": "too_large"})
        raise
    verdict = verify(config.secrets, raw, request.headers.get(TIMESTAMP_HEADER),
                     request.headers.get(SIGNATURE_HEADER), time.time())
    if verdict is not Verdict.VALID:
        _refused.add(1, {**where, "reason": verdict.value})
        raise Problem(401, "invalid-signature", "Invalid signature", _UNSIGNED[verdict])
    wait = email_in.limits[source].wait_time(source)
    if wait > 0:
        _refused.add(1, {**where, "reason": "rate"})
        raise TooManyRequests(wait, "this source sends more than its rate")
    if not raw.strip():
        _refused.add(1, {**where, "reason": "empty"})
        raise Problem(422, "empty-message", "Empty message", "the request body holds no message")
    try:
        raw_id = await service.accept_email(config.workspace_id, raw, SOURCE_PREFIX + source)
    except MessageSizeTooLargeError as exc:
        _refused.add(1, {**where, "reason": "too_large"})
        raise PayloadTooLarge(STREAM_LIMIT) from exc
    return SignedEmailAccepted(id=raw_id)
