"""Outbound email as it leaves ingest: addressing, threading, the headers a requester may add."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from crm_ingest.outbound.base import DeliveryFailed, OutboundRequest
from crm_ingest.outbound.email import EmailDelivery, SmtpRelay, build_message, mailbox, message_id_for

NOW = datetime(2025, 11, 20, 9, 30, tzinfo=UTC)
SENDER = mailbox("Acme Support <support@acme.example>")


def request(**changes: object) -> OutboundRequest:
    values: dict[str, object] = {
        "id": "reply-1", "workspace_id": "ws-1", "contact_id": "c-1", "channel": "email",
        "recipient_kind": "email", "recipient": "Ada Lovelace <ada@example.com>", "text": "Hello Ada",
        "subject": "Re: My order",
    }
    values.update(changes)
    return OutboundRequest(**values)  # type: ignore[arg-type]


def wire(message: EmailMessage) -> EmailMessage:
    """The message as the relay gets it, parsed back."""
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_message_is_addressed_dated_and_identified_by_its_request() -> None:
    message = wire(build_message(request(cc=("ops@example.com",)), SENDER, NOW))
    assert message["From"] == "Acme Support <support@acme.example>"
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Cc"] == "ops@example.com"
    assert message["Subject"] == "Re: My order"
    assert message["Date"] == "Thu, 20 Nov 2025 09:30:00 +0000"
    assert message["Message-ID"] == f"<{message_id_for('ws-1', 'reply-1', 'acme.example')}>"
    assert message["Bcc"] is None
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Hello Ada"


def test_the_message_id_is_the_same_for_the_same_request_and_differs_otherwise() -> None:
    first = message_id_for("ws-1", "reply-1", "acme.example")
    assert first == message_id_for("ws-1", "reply-1", "acme.example")
    assert first.endswith("@acme.example")
    assert first != message_id_for("ws-2", "reply-1", "acme.example")
    assert first != message_id_for("ws-1", "reply-2", "acme.example")
    again = build_message(request(), SENDER, datetime(2026, 1, 1, tzinfo=UTC))
    assert again["Message-ID"] == build_message(request(), SENDER, NOW)["Message-ID"]


def test_a_reply_threads_under_the_message_it_answers() -> None:
    message = wire(build_message(
        request(in_reply_to="b@mail.example.com", references=("<a@mail.example.com>",)), SENDER, NOW))
    assert message["In-Reply-To"] == "<b@mail.example.com>"
    assert message["References"] == "<a@mail.example.com> <b@mail.example.com>"


def test_a_chain_that_already_ends_with_the_parent_is_kept_as_it_is() -> None:
    message = build_message(request(in_reply_to="<b@x>", references=("a@x", "b@x")), SENDER, NOW)
    assert message["References"] == "<a@x> <b@x>"
    assert message["In-Reply-To"] == "<b@x>"


def test_a_new_message_has_no_threading_headers() -> None:
    message = build_message(request(), SENDER, NOW)
    assert message["In-Reply-To"] is None
    assert message["References"] is None


def test_html_goes_beside_the_text_as_an_alternative() -> None:
    message = wire(build_message(request(html="<p>Hello <b>Ada</b></p>"), SENDER, NOW))
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert parts["text/plain"].strip() == "Hello Ada"
    assert parts["text/html"].strip() == "<p>Hello <b>Ada</b></p>"


def test_html_alone_is_sent_as_html() -> None:
    message = build_message(request(text="", html="<p>Hi</p>"), SENDER, NOW)
    assert message.get_content_type() == "text/html"


def test_a_requesters_extra_headers_are_added() -> None:
    headers = {"List-Unsubscribe": "<https://acme.example/u/1>, <mailto:u@acme.example>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "Reply-To": "sales@acme.example"}
    message = wire(build_message(request(headers=headers), SENDER, NOW))
    assert message["List-Unsubscribe"] == "<https://acme.example/u/1>, <mailto:u@acme.example>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Reply-To"] == "sales@acme.example"


@pytest.mark.parametrize("name", ["From", "to", "CC", "Bcc", "Message-ID", "In-Reply-To", "References",
                                  "Date", "Subject", "Sender", "Content-Type", "MIME-Version"])
def test_a_header_ingest_sets_itself_is_refused_for_good(name: str) -> None:
    with pytest.raises(DeliveryFailed) as refused:
        build_message(request(headers={name: "x@evil.example"}), SENDER, NOW)
    assert refused.value.permanent
    assert refused.value.reason == f"header {name} is set by ingest and cannot be given"


@pytest.mark.parametrize(("name", "value"), [
    ("X-Tag", "a\r\nBcc: victim@example.com"),
    ("X Tag", "value"),
    ("X-Tag:", "value"),
    ("X-Long", "v" * 1000),
])
def test_a_header_that_is_not_a_valid_field_is_refused_for_good(name: str, value: str) -> None:
    with pytest.raises(DeliveryFailed) as refused:
        build_message(request(headers={name: value}), SENDER, NOW)
    assert refused.value.permanent


@pytest.mark.parametrize("recipient", ["not-an-address", "a@b.example, c@d.example",
                                       "a@b.example\r\nBcc: c@d.example", "a@", ""])
def test_a_recipient_that_is_not_one_address_is_refused_for_good(recipient: str) -> None:
    with pytest.raises(DeliveryFailed) as refused:
        build_message(request(recipient=recipient), SENDER, NOW)
    assert refused.value.permanent


def test_a_subject_with_line_breaks_stays_one_header() -> None:
    message = wire(build_message(request(subject="Hello\r\nBcc: victim@example.com"), SENDER, NOW))
    assert message["Subject"] == "Hello Bcc: victim@example.com"
    assert message["Bcc"] is None


def test_non_ascii_names_and_subjects_are_encoded() -> None:
    message = build_message(request(recipient="Zoë Ünal <zoe@example.com>", subject="Grüße"), SENDER, NOW)
    raw = message.as_bytes()
    assert b"Gr=C3=BC=C3=9Fe" in raw or b"R3LDvMOfZQ" in raw  # RFC 2047, either encoding
    assert wire(message)["Subject"] == "Grüße"


def delivery(senders: dict[str, str] | None = None, default: str = "") -> EmailDelivery:
    return EmailDelivery(SmtpRelay("127.0.0.1", 25, tls="none"), senders or {}, default)


def test_the_sender_is_the_requests_else_the_workspaces_else_the_default() -> None:
    configured = delivery({"ws-1": "Acme <help@acme.example>"}, "Platform <noreply@crm.example>")
    given = request(from_address="Bob <bob@acme.example>")
    assert configured.sender_of(given).addr_spec == "bob@acme.example"
    assert configured.sender_of(request()).addr_spec == "help@acme.example"
    assert configured.sender_of(request(workspace_id="ws-2")).addr_spec == "noreply@crm.example"


def test_no_sender_anywhere_is_a_permanent_failure() -> None:
    with pytest.raises(DeliveryFailed) as refused:
        delivery().sender_of(request())
    assert refused.value.permanent
    with pytest.raises(DeliveryFailed):
        delivery().sender_of(request(from_address="nobody"))

