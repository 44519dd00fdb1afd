"""Webhook signatures follow Standard Webhooks: the published test vector, several secrets
during a rotation, and a receiver's checks (tampering, timestamp tolerance)."""

from __future__ import annotations

import pytest

from crm_partners.domain.signing import InvalidSignature, message_id, sign, signature_headers, verify

# The test vector published with the Standard Webhooks specification (and Svix's libraries).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="


def test_the_published_vector_is_reproduced() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_whsec_prefix_is_optional() -> None:
    bare = VECTOR_SECRET.removeprefix("whsec_")
    assert sign(bare, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_headers_carry_one_signature_per_valid_secret() -> None:
    headers = signature_headers([OTHER_SECRET, VECTOR_SECRET], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert headers["webhook-id"] == VECTOR_ID
    assert headers["webhook-timestamp"] == str(VECTOR_TIMESTAMP)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert signatures[1] == VECTOR_SIGNATURE
    # A receiver that knows only one of the two secrets accepts the request.
    verify([VECTOR_SECRET], headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)
    verify([OTHER_SECRET], headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_a_webhook_without_a_secret_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="at least one"):
        signature_headers([], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)


@pytest.mark.parametrize(("body", "secret", "now", "reason"), [
    (b'{"test": 2432232315}', VECTOR_SECRET, VECTOR_TIMESTAMP, "no valid signature"),
    (VECTOR_BODY, OTHER_SECRET, VECTOR_TIMESTAMP, "no valid signature"),
    (VECTOR_BODY, VECTOR_SECRET, VECTOR_TIMESTAMP + 301, "too far"),
    (VECTOR_BODY, VECTOR_SECRET, VECTOR_TIMESTAMP - 301, "too far"),
])
def test_a_receiver_refuses_tampered_foreign_or_stale_requests(body: bytes, secret: str, now: int,
                                                                reason: str) -> None:
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
               "webhook-signature": VECTOR_SIGNATURE}
    with pytest.raises(InvalidSignature, match=reason):
        verify([secret], headers, body, now=now)


def test_a_receiver_refuses_missing_headers_and_other_schemes() -> None:
    with pytest.raises(InvalidSignature, match="missing header webhook-signature"):
        verify([VECTOR_SECRET], {"webhook-id": VECTOR_ID, "webhook-timestamp": "1"}, VECTOR_BODY, now=1)
    # A v1a (asymmetric) signature is not one of ours, whatever its bytes.
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
               "webhook-signature": "v1a," + VECTOR_SIGNATURE.partition(",")[2]}
    with pytest.raises(InvalidSignature):
        verify([VECTOR_SECRET], headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_a_replay_is_a_new_message_and_a_retry_is_not() -> None:
    assert message_id("evt-1") == "evt-1"
    assert message_id("evt-1", "r9") == "evt-1.rr9"
