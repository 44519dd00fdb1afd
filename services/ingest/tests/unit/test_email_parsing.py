from datetime import UTC, datetime

import pytest

from crm_ingest.domain.email import MalformedEmail, parse_email, sender_of
from crm_ingest.domain.interaction import inbound_interaction, interaction_id

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

REPLY = b"""From: "Ada Lovelace" <Ada@Example.com>
To: support@acme.example, Bob <bob@acme.example>
Cc: carol@acme.example
Subject: Re: My order
Message-ID: <m2@example.com>
In-Reply-To: <m1@acme.example>
References: <m0@example.com> <m1@acme.example>
Date: Mon, 23 Nov 2026 09:30:00 +0100
Content-Type: multipart/alternative; boundary="b"

--b
Content-Type: text/plain; charset=utf-8

Still broken.
--b
Content-Type: text/html; charset=utf-8

<p>Still <b>broken</b>.</p>
--b--
"""


def test_a_reply_keeps_its_threading_headers_and_plain_text() -> None:
    email = parse_email(REPLY)
    assert email.sender == "ada@example.com"
    assert email.sender_name == "Ada Lovelace"
    assert email.recipients == ("support@acme.example", "bob@acme.example", "carol@acme.example")
    assert email.message_id == "m2@example.com"
    assert email.in_reply_to == "m1@acme.example"
    assert email.references == ("m0@example.com", "m1@acme.example")
    assert email.subject == "Re: My order"
    assert email.text.strip() == "Still broken."
    assert email.sent_at == datetime(2026, 11, 23, 8, 30, tzinfo=UTC)


def test_an_html_only_message_still_has_a_body() -> None:
    raw = b"From: a@example.com\nSubject: hi\nContent-Type: text/html\n\n<p>Hello</p>\n"
    assert "Hello" in parse_email(raw).text


def test_without_a_message_id_the_content_identifies_the_message() -> None:
    raw = b"From: a@example.com\nSubject: hi\n\nbody\n"
    first, again = parse_email(raw), parse_email(raw)
    assert first.message_id.startswith("sha256:")
    assert first.message_id == again.message_id
    assert parse_email(raw + b"more").message_id != first.message_id


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \n", b"Subject: no sender\n\nbody", b"From: not an address\n\nbody",
     b"\xff\xfe\x00garbage", b"From: <>\n\n"],
    ids=["empty", "blank", "no-from", "bad-from", "binary", "empty-address"],
)
def test_messages_that_cannot_become_interactions_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedEmail):
        parse_email(raw)


def test_a_date_in_the_future_or_missing_never_places_the_message_after_its_arrival() -> None:
    future = parse_email(b"From: a@example.com\nDate: Fri, 01 Jan 2100 00:00:00 +0000\n\nx")
    assert inbound_interaction("ws", "c1", future, RECEIVED).occurred_at == RECEIVED
    missing = parse_email(b"From: a@example.com\nDate: yesterday-ish\n\nx")
    assert missing.sent_at is None
    assert inbound_interaction("ws", "c1", missing, RECEIVED).occurred_at == RECEIVED


def test_the_same_provider_message_always_gets_the_same_interaction_id() -> None:
    email = parse_email(REPLY)
    first = inbound_interaction("ws", "c1", email, RECEIVED)
    replayed = inbound_interaction("ws", "c1", email, datetime(2026, 11, 24, tzinfo=UTC))
    assert first.id == replayed.id == interaction_id("ws", "email", "m2@example.com")
    assert interaction_id("other-ws", "email", "m2@example.com") != first.id


def test_an_html_only_body_becomes_its_visible_text() -> None:
    raw = (b"From: a@example.com\nContent-Type: text/html\n\n<html><head><style>p{}</style>"
           b"<script>alert(1)</script></head>"
           b"<body><p>Hello&nbsp;<b>there</b></p><p>Line two</p></body></html>")
    assert parse_email(raw).text == "Hello there\nLine two"


def test_the_sender_is_read_from_the_headers_without_parsing_the_body() -> None:
    assert sender_of(REPLY) == "ada@example.com"
    assert sender_of(b"Subject: none\n\nbody") is None
    assert sender_of(b"\xff\xfe garbage") is None


def test_raw_utf8_headers_nuls_and_huge_lists_come_out_clean_and_bounded() -> None:
    to = ", ".join(f"r{n}@example.com" for n in range(500))
    raw = ("From: José Núñez <jose@example.com>\nTo: " + to + "\nSubject: Help\x00me\n"
           "Message-ID: <" + "x" * 5000 + "@example.com>\n\nBody \x00 text\n").encode()
    email = parse_email(raw)
    assert email.sender_name == "José Núñez"
    assert email.subject == "Helpme"
    assert "\x00" not in email.text
    assert len(email.recipients) == 100
    assert len(email.message_id) == 998
    email.subject.encode("utf-8")  # no surrogates left
