from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_ingest.domain.email import MalformedEmail, html_to_text, parse_email, sender_of
from crm_ingest.domain.email_headers import MAX_MIME_PARTS
from crm_ingest.domain.email_html import MAX_HTML_CHARS
from crm_ingest.domain.email_parts import MAX_ATTACHMENTS, clean_filename
from crm_ingest.domain.email_quotes import split_quote
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


# --- bodies: the new text, the quoted text and the sanitised HTML -----------------------------

def test_a_multipart_alternative_message_keeps_its_plain_text_and_its_html() -> None:
    email = parse_email(REPLY)
    assert email.text == "Still broken."
    assert email.quoted_text == ""
    assert email.html == "<p>Still <b>broken</b>.</p>"
    assert email.kind == "message"
    assert email.attachments == ()
    assert email.metadata == {}


def test_a_plain_text_message_has_no_html() -> None:
    assert parse_email(b"From: a@example.com\n\nJust text <b>here</b>\n").html == ""


GMAIL_REPLY = b"""From: Ada Lovelace <ada@example.com>
To: Acme Support <support@acme.example>
Subject: Re: My order
Message-ID: <CAF=abc@mail.gmail.com>
In-Reply-To: <m1@acme.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="000000000000a1b2c3"

--000000000000a1b2c3
Content-Type: text/plain; charset="UTF-8"

Thanks, that works now!

Ada

On Mon, Nov 23, 2026 at 9:30 AM Acme Support <support@acme.example>
wrote:

> Please clear your cache and try again.
>
> Acme Support
>

--000000000000a1b2c3
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

<div dir=3D"ltr">Thanks, that works now!<div><br></div><div>Ada</div></div><br>=
<div class=3D"gmail_quote gmail_quote_container"><div dir=3D"ltr" class=3D"gmail=
_attr">On Mon, Nov 23, 2026 at 9:30=E2=80=AFAM Acme Support &lt;<a href=3D"mailto:=
support@acme.example">support@acme.example</a>&gt; wrote:<br></div><blockquote c=
lass=3D"gmail_quote" style=3D"margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(=
204,204,204);padding-left:1ex">Please clear your cache and try again.<br><br>Acme =
Support</blockquote></div>

--000000000000a1b2c3--
"""


def test_a_gmail_reply_is_split_into_the_new_text_and_the_quote() -> None:
    email = parse_email(GMAIL_REPLY)
    assert email.text == "Thanks, that works now!\n\nAda"
    assert email.quoted_text == (
        "On Mon, Nov 23, 2026 at 9:30 AM Acme Support <support@acme.example>\nwrote:\n\n"
        "> Please clear your cache and try again.\n>\n> Acme Support\n>"
    )
    # The HTML is kept whole, its quote marked so that a viewer can fold it away.
    assert '<div class="gmail_quote">' in email.html
    assert '<blockquote class="gmail_quote" style="' in email.html
    assert ('<a href="mailto:support@acme.example" rel="noopener noreferrer nofollow">'
            "support@acme.example</a>") in email.html


def _plain(body: str, subject: str = "Re: My order") -> bytes:
    return (f"From: Ada Lovelace <ada@example.com>\nTo: support@acme.example\nSubject: {subject}\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + body).encode()


@pytest.mark.parametrize(
    ("body", "new", "quoted"),
    [
        (
            "It works now.\n\nBest regards\nAda\n\n-----Original Message-----\n"
            "From: Acme Support <support@acme.example>\nSent: Monday, November 23, 2026 9:30 AM\n"
            "To: Ada Lovelace <ada@example.com>\nSubject: RE: My order\n\nPlease try again.\n",
            "It works now.\n\nBest regards\nAda",
            "-----Original Message-----\nFrom: Acme Support <support@acme.example>\n"
            "Sent: Monday, November 23, 2026 9:30 AM\nTo: Ada Lovelace <ada@example.com>\n"
            "Subject: RE: My order\n\nPlease try again.",
        ),
        (
            "It works now.\n\n________________________________\n"
            "From: Acme Support <support@acme.example>\nSent: Monday, November 23, 2026 9:30 AM\n"
            "To: Ada Lovelace <ada@example.com>\nSubject: RE: My order\n\nPlease try again.\n",
            "It works now.",
            "________________________________\nFrom: Acme Support <support@acme.example>\n"
            "Sent: Monday, November 23, 2026 9:30 AM\nTo: Ada Lovelace <ada@example.com>\n"
            "Subject: RE: My order\n\nPlease try again.",
        ),
        (
            "Es geht wieder.\n\nVon: Acme Support <support@acme.example>\n"
            "Gesendet: Montag, 23. November 2026 09:30\nAn: Ada\nBetreff: AW: Bestellung\n\n"
            "Bitte neu laden.\n",
            "Es geht wieder.",
            "Von: Acme Support <support@acme.example>\nGesendet: Montag, 23. November 2026 09:30\n"
            "An: Ada\nBetreff: AW: Bestellung\n\nBitte neu laden.",
        ),
    ],
    ids=["original-message", "header-block", "german-header-block"],
)
def test_an_outlook_reply_is_split_at_its_header_block(body: str, new: str, quoted: str) -> None:
    email = parse_email(_plain(body))
    assert (email.text, email.quoted_text) == (new, quoted)


@pytest.mark.parametrize(
    ("attribution", "quote"),
    [
        ("Am Mo., 23. Nov. 2026 um 09:30 Uhr schrieb Acme Support <support@acme.example>:",
         "> Bitte versuchen Sie es erneut."),
        ("Le lun. 23 nov. 2026 à 09:30, Acme Support <support@acme.example> a\u00a0écrit :",
         "> Veuillez réessayer."),
        ("El lun, 23 nov 2026 a las 9:30, Acme Support (<support@acme.example>) escribió:",
         "> Por favor, inténtelo de nuevo."),
        ("On 23 Nov 2026, at 09:30, Acme Support <support@acme.example> wrote:",
         "> Please try again."),
    ],
    ids=["german", "french", "spanish", "apple-mail"],
)
def test_a_reply_is_split_at_its_attribution_line_in_several_languages(attribution: str, quote: str) -> None:
    email = parse_email(_plain(f"Danke, merci, gracias!\n\n{attribution}\n{quote}\n"))
    assert email.text == "Danke, merci, gracias!"
    assert email.quoted_text == f"{attribution}\n{quote}"


def test_a_closing_block_of_quoted_lines_is_the_quote_even_without_an_attribution() -> None:
    email = parse_email(_plain("Yes, Tuesday.\n\n> Does Tuesday work?\n> Acme\n"))
    assert (email.text, email.quoted_text) == ("Yes, Tuesday.", "> Does Tuesday work?\n> Acme")


@pytest.mark.parametrize(
    "body",
    [
        "On Mon, Acme Support wrote:\n> Does Tuesday work?\nYes.\n> And Wednesday?\nNo.\n",
        "> Does Tuesday work?\n\nYes, Tuesday is fine.\n",
        "On Mon, 23 Nov 2026, Acme Support <support@acme.example> wrote:\n> Does Tuesday work?\n",
        "-----Original Message-----\nFrom: Acme\nSent: Monday\n\nDoes Tuesday work?\n",
    ],
    ids=["answers-between-the-quotes", "answer-under-the-quote", "only-a-quote", "only-a-forward"],
)
def test_text_is_never_moved_to_the_quote_when_the_person_wrote_around_or_nothing_but_it(body: str) -> None:
    email = parse_email(_plain(body))
    assert (email.text, email.quoted_text) == (body, "")


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Fwd: Your order",
         "See below.\n\nOn Mon, Acme <support@acme.example> wrote:\n> Your order shipped.\n"),
        ("FW: Your order",
         "See below.\n\n________________________________\nFrom: Acme\nSent: Monday\n\nShipped."),
        ("Your order",
         "See below.\n\n---------- Forwarded message ---------\nFrom: Acme <support@acme.example>\n"
         "Date: Mon, 23 Nov 2026 at 09:30\nSubject: Your order\n\nYour order shipped.\n"),
    ],
    ids=["gmail-subject", "outlook-subject", "forward-line"],
)
def test_a_forwarded_message_is_what_the_person_sends_not_a_quote(subject: str, body: str) -> None:
    email = parse_email(_plain(body, subject=subject))
    assert (email.text, email.quoted_text) == (body, "")


@pytest.mark.parametrize(
    ("html", "new", "quoted"),
    [
        (  # Apple Mail
            '<html><body dir="auto"><div>Yes, Tuesday works.<br></div><div><br><blockquote type="cite">'
            "<div>On 23 Nov 2026, at 09:30, Acme Support &lt;support@acme.example&gt; wrote:</div>"
            "<div>Does Tuesday work?</div></blockquote></div></body></html>",
            "Yes, Tuesday works.",
            "On 23 Nov 2026, at 09:30, Acme Support <support@acme.example> wrote:\nDoes Tuesday work?",
        ),
        (  # Thunderbird
            "<html><head><meta http-equiv=\"content-type\" content=\"text/html\"></head><body>"
            "<p>Yes, Tuesday works.</p><div class=\"moz-cite-prefix\">On 23.11.26 09:30, Acme Support "
            "wrote:<br></div><blockquote type=\"cite\" cite=\"mid:m1@acme.example\">Does Tuesday work?"
            "</blockquote><br></body></html>",
            "Yes, Tuesday works.",
            "On 23.11.26 09:30, Acme Support wrote:\nDoes Tuesday work?",
        ),
        (  # Gmail, HTML only
            '<div dir="ltr">Yes, Tuesday works.</div><br><div class="gmail_quote"><div dir="ltr" '
            'class="gmail_attr">On Mon, Nov 23, 2026 at 9:30 AM Acme Support wrote:<br></div>'
            '<blockquote class="gmail_quote">Does Tuesday work?</blockquote></div>',
            "Yes, Tuesday works.",
            "On Mon, Nov 23, 2026 at 9:30 AM Acme Support wrote:\nDoes Tuesday work?",
        ),
        (  # Outlook on the web: the header block is text, not marked up
            "<div>Yes, Tuesday works.</div><hr><div id=\"divRplyFwdMsg\"><b>From:</b> Acme Support "
            "&lt;support@acme.example&gt;<br><b>Sent:</b> Monday, November 23, 2026 9:30 AM<br>"
            "<b>Subject:</b> My order</div><div>Does Tuesday work?</div>",
            "Yes, Tuesday works.",
            "From: Acme Support <support@acme.example>\nSent: Monday, November 23, 2026 9:30 AM\n"
            "Subject: My order\nDoes Tuesday work?",
        ),
    ],
    ids=["apple-mail", "thunderbird", "gmail", "outlook-web"],
)
def test_an_html_only_reply_is_split_at_the_quote_its_mail_program_marked(
        html: str, new: str, quoted: str) -> None:
    email = parse_email(("From: ada@example.com\nContent-Type: text/html; charset=utf-8\n\n" + html).encode())
    assert (email.text, email.quoted_text) == (new, quoted)


def test_an_html_only_message_that_is_nothing_but_a_quote_keeps_it_as_its_text() -> None:
    raw = (b"From: ada@example.com\nContent-Type: text/html\n\n"
           b"<blockquote type=\"cite\">Does Tuesday work?</blockquote>")
    email = parse_email(raw)
    assert (email.text, email.quoted_text) == ("Does Tuesday work?", "")


def test_html_the_stdlib_parser_chokes_on_still_gives_its_text() -> None:
    text = html_to_text("<p>Hello &amp; welcome</p><![foo[ there<b>x</b>")
    assert text == "Hello & welcome\n<![foo[ there\nx"


# --- sanitised HTML -------------------------------------------------------------------------

def _html(body: str) -> str:
    raw = "From: ada@example.com\nContent-Type: text/html; charset=utf-8\n\n" + body
    return parse_email(raw.encode()).html


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<p>Hi<script>alert(1)</script></p>", "<p>Hi</p>"),
        ('<img src="https://cdn.example.com/a.png" onerror="alert(1)" alt="a">',
         '<img src="https://cdn.example.com/a.png" alt="a">'),
        ('<p onclick="alert(1)" onmouseover=alert(2)>x</p>', "<p>x</p>"),
        ('<a href="javascript:alert(1)">a</a><a href=" JaVaScRiPt&#58;alert(1)">b</a>',
         '<a rel="noopener noreferrer nofollow">a</a><a rel="noopener noreferrer nofollow">b</a>'),
        ('<a href="https://example.com/x" target="_blank" rel="opener">ok</a>',
         '<a href="https://example.com/x" rel="noopener noreferrer nofollow">ok</a>'),
        ('<img src="data:image/png;base64,iVBORw0KGgo="><img src="http://e.example/a.png">'
         '<img src="/relative.png"><img src="cid:logo@ada">',
         '<img><img><img><img src="cid:logo@ada">'),
        ('<div style="width: expression(alert(1))">a</div><div style="background:url(javascript:x)">b</div>'
         '<div style="color: e\\78pression(1)">c</div><div style="color:red;position:fixed">d</div>'
         '<div style="margin-top:-900px">e</div>',
         '<div>a</div><div>b</div><div>c</div><div style="color:red">d</div><div>e</div>'),
        ("<style>body{display:none}</style><iframe src=\"https://evil.example\">f</iframe>"
         "<form action=\"https://evil.example\"><input name=\"p\">Sign in</form><svg onload=alert(1)></svg>"
         "<object data=\"x.swf\"></object><embed src=\"x\"><textarea>t</textarea>",
         "Sign in"),
        ("<html><head><title>T</title><meta http-equiv=\"refresh\" content=\"0;url=https://e\"></head>"
         "<body onload=\"alert(1)\"><h1 id=\"x\" class=\"big\">Hello</h1><!-- secret --></body></html>",
         "<h1>Hello</h1>"),
    ],
    ids=["script", "onerror", "event-handlers", "javascript-links", "forced-rel", "image-sources",
         "css-expressions", "styles-frames-forms", "document"],
)
def test_html_is_sanitised_for_display(dirty: str, clean: str) -> None:
    assert _html(dirty) == clean


def test_html_longer_than_the_limit_is_cut_without_leaving_half_a_tag() -> None:
    unit = '<p><a href="https://example.com/page">link</a> words</p>'
    html = _html(unit * (MAX_HTML_CHARS // len(unit) + 1000))
    assert MAX_HTML_CHARS // 2 < len(html) <= MAX_HTML_CHARS
    assert html.endswith("</p>")


def test_html_nested_too_deeply_for_the_sanitiser_is_left_out_but_its_text_is_kept() -> None:
    email = parse_email(b"From: ada@example.com\nContent-Type: text/html\n\n" + b"<div>" * 5000 + b"deep")
    assert email.html == ""
    assert email.text == "deep"
    assert email.metadata == {"html_omitted": "nested too deeply"}


def test_formatting_left_open_across_many_blocks_is_left_out_rather_than_multiplied() -> None:
    blocks = "".join(f'<div><b class="c{n}">x</div>' for n in range(2000)).encode()
    email = parse_email(b"From: ada@example.com\nContent-Type: text/html\n\n" + blocks)
    assert (email.html, email.metadata) == ("", {"html_omitted": "nested too deeply"})


# --- attachments ------------------------------------------------------------------------------

MIXED = b"From: ada@example.com\nContent-Type: multipart/mixed; boundary=b\n\n"

INVOICE = b"""From: Ada Lovelace <ada@example.com>
To: billing@acme.example
Subject: Invoice and screenshot
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

See the attached invoice.
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>See the attached invoice.<img src="cid:shot@ada" alt="screenshot"></p>
--rel
Content-Type: image/png
Content-ID: <shot@ada>
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--alt--
--mixed
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename="../../etc/invoice.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--mixed
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz%E2%80%AEfdp.exe
Content-Transfer-Encoding: base64

TVqQAA==
--mixed
Content-Type: text/calendar; method=REQUEST; charset=utf-8

BEGIN:VCALENDAR
END:VCALENDAR
--mixed
Content-Type: message/rfc822

From: bob@example.com
Subject: the earlier mail
Message-ID: <earlier@example.com>

Forwarded text.
--mixed--
"""


def test_attachments_inline_images_and_attached_messages_are_kept_with_clean_names() -> None:
    email = parse_email(INVOICE)
    assert email.text == "See the attached invoice."
    assert email.html == '<p>See the attached invoice.<img src="cid:shot@ada" alt="screenshot"></p>'
    assert [(a.filename, a.content_type, a.data) for a in email.attachments] == [
        ("attachment-1.png", "image/png", b"\x89PNG\r\n\x1a\n"),
        ("invoice.pdf", "application/pdf", b"%PDF-1.4\n"),
        ("Rechnung Märzfdp.exe", "application/octet-stream", b"MZ\x90\x00"),  # no U+202E
        ("attachment-4.ics", "text/calendar", b"BEGIN:VCALENDAR\nEND:VCALENDAR"),
        ("attachment-5.eml", "message/rfc822",
         b"From: bob@example.com\nSubject: the earlier mail\nMessage-ID: <earlier@example.com>\n\n"
         b"Forwarded text."),
    ]
    assert email.kind == "message"


def test_a_message_with_too_many_attachments_keeps_the_first_ones_and_says_so() -> None:
    parts = b"".join(b'--b\nContent-Disposition: attachment; filename="f%d.txt"\n\n%d\n' % (n, n)
                     for n in range(MAX_ATTACHMENTS + 10))
    email = parse_email(MIXED + parts + b"--b--\n")
    assert [a.filename for a in email.attachments] == [f"f{n}.txt" for n in range(MAX_ATTACHMENTS)]
    assert email.attachments[-1].data == b"%d" % (MAX_ATTACHMENTS - 1)
    assert email.metadata == {"attachments_dropped": "10"}


@pytest.mark.parametrize(
    ("name", "content_type", "clean"),
    [
        ("C:\\Users\\ada\\report.docx", "application/msword", "report.docx"),
        ("/etc/passwd", "text/plain", "passwd"),
        ("..", "application/pdf", "attachment-3.pdf"),
        ("", "image/jpeg", "attachment-3.jpg"),
        ("", "application/x-unknown", "attachment-3"),
        ("a\x00b\r\nc\u202e\u200bd.txt", "text/plain", "abcd.txt"),
        ("  spaced \t name .pdf. ", "application/pdf", "spaced name .pdf"),
        ("é" * 300 + ".pdf", "application/pdf", "é" * 125 + ".pdf"),
        ("x" * 300, "application/pdf", "x" * 255),
    ],
)
def test_file_names_are_cleaned(name: str, content_type: str, clean: str) -> None:
    assert clean_filename(name, content_type, 3) == clean


# --- kinds: automatic replies and bounces -----------------------------------------------------

OUT_OF_OFFICE = b"""From: Ada Lovelace <ada@example.com>
To: support@acme.example
Subject: Automatic reply: My order
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
In-Reply-To: <m1@acme.example>
Content-Type: text/plain; charset=utf-8

I am out of the office until Monday, 30 November.
"""


def test_an_out_of_office_reply_is_an_auto_reply() -> None:
    email = parse_email(OUT_OF_OFFICE)
    assert email.kind == "auto_reply"
    assert email.metadata == {"auto_submitted": "auto-replied"}
    assert email.text == "I am out of the office until Monday, 30 November.\n"


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ("Auto-Submitted: auto-generated\n", "auto_reply"),
        ("Auto-Submitted: auto-replied; owner-email=ada@example.com\n", "auto_reply"),
        ("Auto-Submitted: no\n", "message"),
        ("X-Autoreply: yes\n", "auto_reply"),
        ("X-Autorespond: Vacation\n", "auto_reply"),
        ("Precedence: auto_reply\n", "auto_reply"),
        ("Precedence: bulk\n", "message"),
        ("X-Auto-Response-Suppress: OOF, AutoReply\n", "message"),
    ],
)
def test_automatic_replies_are_told_by_their_headers(headers: str, kind: str) -> None:
    assert parse_email(f"From: ada@example.com\n{headers}\nHello".encode()).kind == kind


DSN = b"""From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: support@acme.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
Message-ID: <20261123093001.4F2B81C0@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F2B81C0.1763890201/mx.example.com"

--4F2B81C0.1763890201/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.com>: host mx.example.com said: 550 5.1.1 User unknown

--4F2B81C0.1763890201/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 4F2B81C0
Original-Envelope-Id: 0195f1e2-out-42
Arrival-Date: Mon, 23 Nov 2026 09:30:00 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.com
Original-Recipient: rfc822;nobody@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: Recipient address
    rejected: User unknown in local recipient table

--4F2B81C0.1763890201/mx.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Acme Support <support@acme.example>
To: nobody@example.com
Subject: Your order
Message-ID: <out-42@acme.example>
Date: Mon, 23 Nov 2026 09:29:58 +0000

--4F2B81C0.1763890201/mx.example.com--
"""


def test_a_delivery_status_notification_is_a_bounce_naming_the_returned_message() -> None:
    email = parse_email(DSN)
    assert email.kind == "bounce"
    assert email.metadata == {
        "auto_submitted": "auto-replied",
        "report_type": "delivery-status",
        "original_envelope_id": "0195f1e2-out-42",
        "bounce_recipient": "nobody@example.com",
        "bounce_status": "5.1.1",
        "bounce_action": "failed",
        "bounce_diagnostic": "550 5.1.1 <nobody@example.com>: Recipient address rejected: "
                             "User unknown in local recipient table",
        "bounced_message_id": "out-42@acme.example",
    }
    assert email.sender == "mailer-daemon@mx.example.com"
    assert email.text.startswith("This is the mail system at host mx.example.com.")
    assert [(a.filename, a.content_type) for a in email.attachments] == [
        ("attachment-1.txt", "message/delivery-status"), ("attachment-2.txt", "text/rfc822-headers")]


def test_a_report_that_only_delays_a_delivery_is_not_a_bounce() -> None:
    raw = DSN.replace(b"Action: failed", b"Action: delayed").replace(b"Status: 5.1.1", b"Status: 4.4.1")
    email = parse_email(raw)
    assert email.kind == "auto_reply"
    assert (email.metadata["bounce_action"], email.metadata["bounce_status"]) == ("delayed", "4.4.1")


def test_a_bounce_returning_the_whole_message_names_it() -> None:
    raw = DSN.replace(b"Content-Type: text/rfc822-headers", b"Content-Type: message/rfc822")
    assert parse_email(raw).metadata["bounced_message_id"] == "out-42@acme.example"


def test_a_mailer_daemons_failure_notice_without_a_report_is_a_bounce() -> None:
    raw = b"""From: MAILER-DAEMON@mail.example.net
To: support@acme.example
Subject: failure notice

Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.

<nobody@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <support@acme.example>
From: support@acme.example
Message-ID: <out-7@acme.example>
Subject: Your order

Hello
"""
    email = parse_email(raw)
    assert (email.kind, email.metadata) == ("bounce", {"bounced_message_id": "out-7@acme.example"})


# An abuse report as a mailbox provider's feedback loop sends it (RFC 5965, ARF): a recipient
# pressed "spam" on a message of ours, returned with its headers.
ARF = b"""From: feedback@fbl.mail.example
To: fbl@acme.example
Subject: Complaint about message from 192.0.2.10
Message-ID: <fbl-1@fbl.mail.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part"

--part
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.10.

--part
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <bounces@acme.example>
Original-Rcpt-To: <ada@example.com>
Arrival-Date: Mon, 23 Nov 2026 09:30:00 +0000
Reported-Domain: acme.example

--part
Content-Type: text/rfc822-headers

From: Acme News <news@acme.example>
To: ada@example.com
Subject: Our autumn news
Message-ID: <send-42@acme.example>

--part--
"""


def test_an_abuse_report_is_a_complaint_naming_the_message_reported() -> None:
    email = parse_email(ARF)
    assert email.kind == "complaint"
    assert email.metadata == {
        "report_type": "feedback-report",
        "feedback_type": "abuse",
        "complaint_recipient": "<ada@example.com>",
        "complained_message_id": "send-42@acme.example",
    }


def test_a_feedback_report_that_is_no_complaint_is_automatic_mail() -> None:
    email = parse_email(ARF.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam"))
    assert email.kind == "auto_reply"
    assert email.metadata["feedback_type"] == "not-spam"


def test_an_abuse_report_sent_base64_encoded_is_read_too() -> None:
    import base64

    report = (b"Feedback-Type: fraud\r\nVersion: 1\r\nOriginal-Rcpt-To: ada@example.com\r\n")
    raw = ARF.replace(
        b"Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\n"
        b"Version: 1\nOriginal-Mail-From: <bounces@acme.example>\nOriginal-Rcpt-To: <ada@example.com>\n"
        b"Arrival-Date: Mon, 23 Nov 2026 09:30:00 +0000\nReported-Domain: acme.example\n",
        b"Content-Type: message/feedback-report\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(report))
    assert raw != ARF
    email = parse_email(raw)
    assert (email.kind, email.metadata["feedback_type"]) == ("complaint", "fraud")
    assert email.metadata["complained_message_id"] == "send-42@acme.example"


def test_a_read_receipt_is_an_automatic_message() -> None:
    raw = (b"From: ada@example.com\nContent-Type: multipart/report; report-type=disposition-notification;"
           b" boundary=r\n\n--r\nContent-Type: text/plain\n\nYour message was read.\n--r\n"
           b"Content-Type: message/disposition-notification\n\nDisposition: manual-action/MDN-sent-manually;"
           b" displayed\n--r--\n")
    email = parse_email(raw)
    assert (email.kind, email.metadata) == ("auto_reply", {"report_type": "disposition-notification"})


def test_metadata_values_are_short_and_mailing_lists_are_named_by_their_id() -> None:
    raw = (b"From: news@acme.example\nPrecedence: Bulk\nList-Id: Acme News <news.acme.example>\n"
           b"Auto-Submitted: auto-generated; " + b"x" * 1000 + b"\n\nNews")
    email = parse_email(raw)
    assert email.metadata["list_id"] == "news.acme.example"
    assert email.metadata["precedence"] == "bulk"
    assert len(email.metadata["auto_submitted"]) == 200


# --- staying fast and standing on broken input ----------------------------------------------

def test_a_message_with_more_parts_than_the_parser_may_spend_time_on_is_malformed() -> None:
    parts = b"--b\nContent-Type: text/plain\n\nx\n" * (MAX_MIME_PARTS + 1)
    with pytest.raises(MalformedEmail, match="MIME parts"):
        parse_email(MIXED + parts + b"--b--\n")


def test_a_broken_recipient_header_costs_the_recipients_not_the_message() -> None:
    email = parse_email(b"From: ada@example.com\nTo: " + b"(" * 5000 + b"\n\nHello")
    assert (email.recipients, email.text) == ((), "Hello")


def test_huge_headers_are_read_only_as_far_as_needed() -> None:
    references = b" ".join(b"<r%d@example.com>" % n for n in range(5000))
    raw = (b"From: ada@example.com\nTo: " + b"a@example.com, " * 20000 + b"\nReferences: " + references
           + b"\nContent-Type: text/plain; " + b"p=v; " * 20000 + b"\n\nHello")
    email = parse_email(raw)
    assert email.recipients == ("a@example.com",)
    assert email.references[-1] == "r4999@example.com"
    assert email.text == "Hello"


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from([
    "Thanks!", "", " ", "> quoted", ">", "On Mon, Ada <a@b> wrote:", "On Mon, Ada <a@b>", "wrote:",
    "Am Mo. schrieb Ada <a@b>:", "-----Original Message-----", "From: Acme <s@acme.example>",
    "Sent: Monday", "________________________________", "-- ", "Ada", "From:",
]), max_size=14))
def test_splitting_off_the_quote_never_loses_text(lines: list[str]) -> None:
    text = "\n".join(lines)
    new, quoted = split_quote(text)
    assert "".join((new + quoted).split()) == "".join(text.split())
    assert not quoted or new.strip()
