"""Email in, the pure parts: webhook signatures, the SMTP allow-list, and the settings' checks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from crm_ingest.adapters.smtp import InboundAddresses, delivered_copy
from crm_ingest.domain.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Verdict,
    sign,
    signed_headers,
    verify,
)
from crm_ingest.settings import Settings
from crmkit.settings import InfraSettings

SECRET = b"0123456789abcdef0123456789abcdef"
OLD_SECRET = b"fedcba9876543210fedcba9876543210"
BODY = b"From: a@example.com\r\nMessage-ID: <m@x>\r\n\r\nhello\r\n"
NOW = 1_800_000_000


def check(headers: dict[str, str], body: bytes = BODY, now: float = NOW,
          secrets: tuple[bytes, ...] = (SECRET,)) -> Verdict:
    return verify(secrets, body, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER), now)


def test_a_request_signed_with_the_source_secret_is_valid() -> None:
    headers = signed_headers(SECRET, BODY, now=NOW)
    assert headers == {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: sign(SECRET, NOW, BODY)}
    assert headers[SIGNATURE_HEADER].startswith("v1=")
    assert len(headers[SIGNATURE_HEADER]) == 3 + 64
    assert check(headers) is Verdict.VALID
    assert check({**headers, SIGNATURE_HEADER: headers[SIGNATURE_HEADER].upper().replace("V1", "v1")}
                 ) is Verdict.VALID


def test_the_signature_covers_the_timestamp_and_every_byte_of_the_body() -> None:
    headers = signed_headers(SECRET, BODY, now=NOW)
    assert check(headers, body=BODY + b" ") is Verdict.FORGED
    moved = {TIMESTAMP_HEADER: str(NOW + 1), SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}
    assert check(moved) is Verdict.FORGED
    assert check(signed_headers(b"another-secret-of-32-characters!", BODY, now=NOW)) is Verdict.FORGED


@pytest.mark.parametrize("skew", [-301, 301, -10_000_000])
def test_a_timestamp_more_than_five_minutes_away_is_stale(skew: int) -> None:
    assert check(signed_headers(SECRET, BODY, now=NOW + skew)) is Verdict.STALE


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_a_timestamp_within_five_minutes_is_accepted(skew: int) -> None:
    assert check(signed_headers(SECRET, BODY, now=NOW + skew)) is Verdict.VALID


@pytest.mark.parametrize("timestamp", ["", "soon", "-5", "1e9", "١٨٠٠٠٠٠٠٠٠", "9" * 40])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp: str) -> None:
    headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(SECRET, NOW, BODY)}
    assert check(headers) in (Verdict.STALE, Verdict.MISSING)


def test_missing_headers_are_missing() -> None:
    headers = signed_headers(SECRET, BODY, now=NOW)
    assert check({TIMESTAMP_HEADER: headers[TIMESTAMP_HEADER]}) is Verdict.MISSING
    assert check({SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}) is Verdict.MISSING


def test_several_signatures_and_the_previous_secret_allow_rotation() -> None:
    old = sign(OLD_SECRET, NOW, BODY)
    new = sign(SECRET, NOW, BODY)
    both = {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"{old}, {new}"}
    assert check(both) is Verdict.VALID
    only_old = {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: old}
    assert check(only_old) is Verdict.FORGED
    assert check(only_old, secrets=(SECRET, OLD_SECRET)) is Verdict.VALID


def test_another_version_or_an_oversized_header_is_not_a_signature() -> None:
    digest = sign(SECRET, NOW, BODY).removeprefix("v1=")
    assert check({TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"v0={digest}"}) is Verdict.FORGED
    padded = f"{'v1=' + '0' * 64 + ','}" * 20 + f"v1={digest}"
    assert check({TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: padded}) is Verdict.FORGED


def test_recipients_match_their_address_then_their_domain_case_insensitively() -> None:
    addresses = InboundAddresses({"support@acme.example": "ws-a", "@acme.example": "ws-b",
                                  "@help.acme.example": "ws-c"})
    assert addresses.workspace_for("Support@ACME.example") == "ws-a"
    assert addresses.workspace_for("sales@acme.example") == "ws-b"
    assert addresses.workspace_for("x@help.acme.example") == "ws-c"
    assert addresses.workspace_for("x@sub.help.acme.example") is None  # no subdomains
    assert addresses.workspace_for("support@acme.example.evil") is None
    assert addresses.workspace_for("@acme.example") is None
    assert addresses.workspace_for("no-domain") is None
    # A bare LF would become a header of its own in the stored copy's Delivered-To.
    assert addresses.workspace_for("x\nX-Injected: 1@help.acme.example") is None
    assert addresses.workspace_for('"two words"@help.acme.example') is None
    assert addresses.by_workspace(["support@acme.example", "a@acme.example", "b@acme.example", "x@y.z"]) == {
        "ws-a": ["support@acme.example"], "ws-b": ["a@acme.example", "b@acme.example"]}


def test_the_stored_copy_names_its_recipients_and_is_the_same_bytes_each_time() -> None:
    copy = delivered_copy(BODY, ["b@acme.example", "a@acme.example", "a@acme.example"])
    assert copy == b"Delivered-To: a@acme.example\r\nDelivered-To: b@acme.example\r\n" + BODY
    assert delivered_copy(BODY, ["a@acme.example", "b@acme.example"]) == copy


# --- settings ------------------------------------------------------------------------------

def settings(**values: Any) -> Settings:
    infra = InfraSettings(jwt_secret="j" * 48, environment=values.pop("environment", "dev"))  # type: ignore[call-arg]
    return Settings(infra=infra, **values)


def mailbox(**changes: Any) -> dict[str, Any]:
    return {"host": "imap.acme.example", "username": "support@acme.example", "password": "pw",
            "workspace_id": "ws", **changes}


def test_email_in_is_off_by_default() -> None:
    configured = settings()
    assert (configured.smtp_inbound_addresses, configured.imap_mailboxes, configured.email_sources) == (
        {}, [], {})
    assert configured.smtp_limit == configured.max_email_bytes
    assert settings(smtp_max_bytes=4096).smtp_limit == 4096


def test_inbound_addresses_are_lowercased_and_must_be_an_address_or_a_domain() -> None:
    configured = settings(smtp_inbound_addresses={"Support@Acme.Example": "ws", "@Help.Example": "ws"})
    assert configured.smtp_inbound_addresses == {"support@acme.example": "ws", "@help.example": "ws"}
    for bad in ("support", "a@b@c", "@", "with space@x.example"):
        with pytest.raises(ValidationError):
            settings(smtp_inbound_addresses={bad: "ws"})
    with pytest.raises(ValidationError):
        settings(smtp_inbound_addresses={"a@x.example": ""})


def test_the_smtp_port_may_not_be_the_http_or_grpc_port() -> None:
    with pytest.raises(ValidationError, match="INGEST_SMTP_PORT"):
        settings(smtp_inbound_addresses={"a@x.example": "ws"}, smtp_port=8005)


def test_a_webhook_source_needs_a_strong_secret_and_a_plain_name() -> None:
    good = {"workspace_id": "ws", "secret": "s" * 32}
    assert settings(email_sources={"mailgun-eu": good}).email_sources["mailgun-eu"].secrets == (b"s" * 32,)
    with_previous = settings(email_sources={"m": {**good, "previous_secret": "p" * 32}})
    assert with_previous.email_sources["m"].secrets == (b"s" * 32, b"p" * 32)
    for source in ({**good, "secret": "short"}, {**good, "secret": "changeme"},
                   {**good, "previous_secret": "short"}, {"secret": "s" * 32},
                   {**good, "burst": 0}, {**good, "rate_per_second": 0}):
        with pytest.raises(ValidationError):
            settings(email_sources={"m": source})
    for name in ("Mailgun", "-x", "a/b", "x" * 65, ""):
        with pytest.raises(ValidationError):
            settings(email_sources={name: good})


def test_imap_mailboxes_are_checked() -> None:
    configured = settings(imap_mailboxes=[mailbox(), mailbox(tls="starttls", folder="Support Queue")])
    first, second = configured.imap_mailboxes
    assert (first.port_number, first.tls, first.folder, first.poll_seconds, first.idle) == (
        993, "tls", "INBOX", 60, True)
    assert second.port_number == 143
    assert first.key == "ws:imap://support@acme.example@imap.acme.example:993/INBOX"
    with pytest.raises(ValidationError, match="same mailbox twice"):
        settings(imap_mailboxes=[mailbox(), mailbox()])
    for bad in (mailbox(tls="ssl"), mailbox(password=""), mailbox(poll_seconds=0),
                mailbox(folder="Boîte"), mailbox(username="a\r\nb"), mailbox(workspace_id="")):
        with pytest.raises(ValidationError):
            settings(imap_mailboxes=[bad])


def test_in_production_an_imap_password_never_travels_in_clear() -> None:
    with pytest.raises(ValidationError, match="in clear"):
        settings(environment="prod", imap_mailboxes=[mailbox(tls="none")])
    assert settings(environment="prod", imap_mailboxes=[mailbox(tls="none", host="127.0.0.1")])
    assert settings(imap_mailboxes=[mailbox(tls="none")])  # outside production, a local server
