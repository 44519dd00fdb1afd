"""The signed inbound-parse email webhook, from a signed POST to the stored interaction."""

from __future__ import annotations

import time

import httpx
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from crm_ingest.domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signed_headers
from crmkit.ids import uuid7

from .conftest import Platform

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024  # the platform's INGEST_MAX_EMAIL_BYTES
PATH = "/v1/channels/email/sources/{}/inbound"


def email(message_id: str, body: str = "Body text") -> bytes:
    return (f"From: Web Hook <hooked@example.com>\r\nTo: support@acme.example\r\nSubject: Parsed\r\n"
            f"Message-ID: <{message_id}>\r\n\r\n{body}\r\n").encode()


def secret_of(platform: Platform, source: str) -> bytes:
    return platform.ingest_app.state.settings.email_sources[source].secret.get_secret_value().encode()


async def post(platform: Platform, body: bytes, headers: dict[str, str], source: str = "acme-parse"
               ) -> httpx.Response:
    return await platform.ingest.post(PATH.format(source), content=body,
                                      headers={"Content-Type": "message/rfc822", **headers})


async def signed_post(platform: Platform, body: bytes, source: str = "acme-parse",
                      now: float | None = None) -> httpx.Response:
    return await post(platform, body, signed_headers(secret_of(platform, source), body, now), source)


@pytest.fixture(scope="module")
def refusals() -> InMemoryMetricReader:
    """The process's metrics. In-process apps install no meter provider (only a service
    process does, in crmkit.web.serve), so this one is the process's."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    if metrics.get_meter_provider() is not provider:
        pytest.fail("another meter provider was installed in this test process first")
    return reader


def refused(reader: InMemoryMetricReader, reason: str) -> int:
    data = reader.get_metrics_data()
    return sum(int(point.value)
               for resource in (data.resource_metrics if data else ())
               for scope in resource.scope_metrics for metric in scope.metrics
               if metric.name == "crm.ingest.email.webhook.refused"
               for point in metric.data.data_points if point.attributes.get("reason") == reason)


async def test_a_signed_message_is_accepted_and_becomes_an_interaction(platform: Platform) -> None:
    message_id = f"{uuid7()}@example.com"
    response = await signed_post(platform, email(message_id))
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    item = await platform.wait_stored(message_id)
    assert (item["sender"], item["subject"]) == ("hooked@example.com", "Parsed")


async def test_forged_and_unsigned_requests_are_401_and_counted(
        platform: Platform, refusals: InMemoryMetricReader) -> None:
    body = email(f"{uuid7()}@example.com")
    before = refused(refusals, "forged")
    now = int(time.time())
    forged = {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: sign(b"not-the-secret" * 3, now, body)}
    tampered = signed_headers(secret_of(platform, "acme-parse"), body)
    other_source = signed_headers(secret_of(platform, "throttled"), body)
    for headers, content in ((forged, body), (tampered, body + b"more"), (other_source, body)):
        response = await post(platform, content, headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("invalid-signature")
    assert (await post(platform, body, {})).status_code == 401
    assert refused(refusals, "forged") == before + 3


async def test_a_stale_or_future_timestamp_is_401(platform: Platform,
                                                  refusals: InMemoryMetricReader) -> None:
    body = email(f"{uuid7()}@example.com")
    before = refused(refusals, "stale")
    for skew in (-301, 301):
        response = await signed_post(platform, body, now=time.time() + skew)
        assert response.status_code == 401
        assert "X-Crm-Timestamp" in response.json()["detail"]
    assert (await signed_post(platform, body, now=time.time() - 250)).status_code == 202
    assert refused(refusals, "stale") == before + 2


async def test_an_oversized_message_is_413_before_its_signature_is_checked(platform: Platform) -> None:
    body = email(f"{uuid7()}@example.com", body="x" * LIMIT)
    response = await post(platform, body, {TIMESTAMP_HEADER: "0", SIGNATURE_HEADER: "v1=0"})
    assert response.status_code == 413
    assert response.json()["type"].endswith("too-large")


async def test_an_unknown_source_is_404(platform: Platform) -> None:
    body = email(f"{uuid7()}@example.com")
    response = await post(platform, body, signed_headers(secret_of(platform, "acme-parse"), body), "nope")
    assert response.status_code == 404
    assert response.json()["type"].endswith("unknown-source")


async def test_a_source_over_its_rate_gets_429_with_retry_after(platform: Platform) -> None:
    # A forged request does not use up the source's budget (a burst of one)...
    forged = await post(platform, email("x@x"), {TIMESTAMP_HEADER: str(int(time.time())),
                                                 SIGNATURE_HEADER: "v1=" + "0" * 64}, "throttled")
    assert forged.status_code == 401
    first = f"{uuid7()}@example.com"
    assert (await signed_post(platform, email(first), "throttled")).status_code == 202
    # ...an authentic one over the rate is refused, saying when to come back.
    response = await signed_post(platform, email(f"{uuid7()}@example.com"), "throttled")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    await platform.wait_stored(first)
