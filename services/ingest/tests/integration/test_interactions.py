"""Reading interactions back: the timeline, threads, HTML bodies, attachments and raw payloads
by scope; following contacts' merges and erasures; bounces and abuse reports landing on the
message we sent."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from crm_ingest.domain.interaction import interaction_id
from crmkit.ids import uuid7
from crmkit.testing import bearer, contact_merged_event, eventually, publish, token_for
from crmkit.topics import INGEST_RAW

from .conftest import WORKSPACE, Platform

pytestmark = pytest.mark.integration


def address() -> str:
    return f"person-{uuid7().hex[:12]}@example.com"


def mime(sender: str, message_id: str, *, subject: str = "Question", text: str = "Hello there",
         html: str | None = None, attachment: bytes | None = None, in_reply_to: str = "",
         references: str = "") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@acme.example"
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        message["References"] = references
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    return message.as_bytes()


async def send(platform: Platform, raw: bytes) -> None:
    response = await platform.ingest.post("/v1/channels/email/inbound", content=raw, headers={
        "Content-Type": "message/rfc822", **bearer(platform.token)})
    assert response.status_code == 202, response.text


async def get(platform: Platform, path: str, token: str | None = None, **params: Any) -> Any:
    response = await platform.ingest.get(path, params=params, headers=bearer(token or platform.token))
    return response


async def test_an_email_keeps_its_html_attachments_and_raw_payload_for_the_right_people(
    platform: Platform,
) -> None:
    sender, message_id = address(), f"{uuid7()}@example.com"
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 8
    raw = mime(sender, message_id, html='<p>Hello <b>there</b><script>alert(1)</script></p>',
               attachment=pdf)
    await send(platform, raw)
    item = await platform.wait_stored(message_id)
    assert item["has_html"] is True
    assert item["attachments"] == [{"index": 0, "filename": "invoice.pdf", "content_type": "application/pdf",
                                    "size": len(pdf), "sha256": item["attachments"][0]["sha256"],
                                    "stored": True}]

    html = await get(platform, f"/v1/interactions/{item['id']}/html")
    assert html.status_code == 200
    assert "<b>there</b>" in html.text
    assert "script" not in html.text
    assert "sandbox" in html.headers["content-security-policy"]

    support = token_for(platform.infra, WORKSPACE, roles=("support",))
    analyst = token_for(platform.infra, WORKSPACE, roles=("analyst",))
    attachment = await get(platform, f"/v1/interactions/{item['id']}/attachments/0", support)
    assert attachment.status_code == 200
    assert attachment.content == pdf
    assert attachment.headers["content-type"] == "application/pdf"
    assert attachment.headers["content-disposition"].startswith("attachment;")
    assert (await get(platform, f"/v1/interactions/{item['id']}/attachments/0", analyst)).status_code == 403
    assert (await get(platform, f"/v1/interactions/{item['id']}/attachments/1", support)).status_code == 404

    # The raw payload, as the provider sent it, is for admins (and keys scoped for it) only.
    assert (await get(platform, f"/v1/interactions/{item['id']}/raw", support)).status_code == 403
    archived = await get(platform, f"/v1/interactions/{item['id']}/raw")
    assert archived.status_code == 200
    assert archived.content == raw
    other = token_for(platform.infra, "ws-someone-else")
    for path in ("", "/html", "/attachments/0", "/raw", "/thread"):
        assert (await get(platform, f"/v1/interactions/{item['id']}{path}", other)).status_code == 404


async def test_a_contacts_timeline_pages_newest_first_and_a_thread_holds_its_replies(
    platform: Platform,
) -> None:
    sender = address()
    first, second, third = (f"{uuid7()}@example.com" for _ in range(3))
    await send(platform, mime(sender, first, subject="Order 1"))
    one = await platform.wait_stored(first)
    await send(platform, mime(sender, second, subject="Re: Order 1", in_reply_to=first,
                              references=f"<{first}>"))
    await send(platform, mime(sender, third, subject="Another thing"))
    await platform.wait_stored(second)
    await platform.wait_stored(third)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"contact_id": one["contact_id"], "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await get(platform, "/v1/interactions", **params)).json()
        seen += [i["message_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([first, second, third])
    assert len(seen) == 3  # each once, across pages

    thread = (await get(platform, f"/v1/interactions/{one['id']}/thread")).json()
    assert [i["message_id"] for i in thread] == [first, second]
    bad = await get(platform, "/v1/interactions", contact_id=one["contact_id"], cursor="nonsense")
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


async def test_interactions_follow_a_merge_and_go_with_an_erasure(platform: Platform) -> None:
    loser_address, survivor_address = address(), address()
    loser_message, survivor_message = f"{uuid7()}@example.com", f"{uuid7()}@example.com"
    await send(platform, mime(loser_address, loser_message, attachment=b"%PDF-1.4 secret"))
    await send(platform, mime(survivor_address, survivor_message))
    loser = await platform.wait_stored(loser_message)
    survivor = await platform.wait_stored(survivor_message)
    await publish(platform.infra, [contact_merged_event(WORKSPACE, loser["contact_id"],
                                                        survivor["contact_id"])])

    async def moved() -> bool:
        return (await platform.wait_stored(loser_message))["contact_id"] == survivor["contact_id"]

    await eventually(moved, what="the loser's interaction on the survivor")
    # The merged-away id still answers, with the survivor's timeline.
    page = (await get(platform, "/v1/interactions", contact_id=loser["contact_id"])).json()
    assert {i["message_id"] for i in page["items"]} == {loser_message, survivor_message}

    # A delivery record of a reply sent to the person, whose error names their address.
    await platform.ingest_app.state.service.db.db.outbound.insert_one({
        "_id": "erasure-test-outbound", "workspace_id": WORKSPACE, "request_id": "r-1", "state": "failed",
        "contact_id": survivor["contact_id"], "last_error": f"550 <{survivor_address}>: unknown"})
    # Erasure goes through contacts, which publishes contact.erased; ingest erases and confirms.
    erased = await platform.contacts.post(f"/v1/contacts/{survivor['contact_id']}/erasure",
                                          headers=bearer(platform.token))
    assert erased.status_code == 202, erased.text

    async def confirmed() -> bool:
        status = (await platform.contacts.get(f"/v1/contacts/{survivor['contact_id']}/erasure",
                                              headers=bearer(platform.token))).json()
        return "ingest" in status["confirmed"]

    await eventually(confirmed, what="ingest's confirmation of the erasure")
    for message_id in (loser_message, survivor_message):
        assert (await platform.interaction(message_id)).status_code == 404
    iid = interaction_id(WORKSPACE, "email", loser_message)
    db = platform.ingest_app.state.service.db.db
    assert await db.attachments.count_documents({"interaction_id": iid}) == 0
    assert await db.raw_payloads.count_documents({"interaction_id": iid}) == 0
    # A delivery record keeps only what makes a redelivered request known: nothing of the person.
    kept = await db.outbound.find_one({"_id": "erasure-test-outbound"})
    assert kept is not None
    assert kept["erased"] is True
    assert "contact_id" not in kept
    assert "last_error" not in kept


def bounce_report(report_id: str, ours: str) -> bytes:
    """A delivery status notification (RFC 3464) returning the headers of our email ``ours``."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        "To: support@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{report_id}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@acme.example\r\nTo: gone@example.com\r\nMessage-ID: <{ours}>\r\n"
        "Subject: Hello\r\n--b1--\r\n").encode()


def abuse_report(report_id: str, ours: str) -> bytes:
    """A feedback loop's abuse report (RFC 5965 ARF): a recipient marked our email as spam."""
    return (
        "From: feedback@fbl.example.com\r\nTo: fbl@acme.example\r\nSubject: Abuse report\r\n"
        f"Message-ID: <{report_id}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nA recipient reported this message as spam.\r\n"
        "--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n"
        "Original-Rcpt-To: <ada@example.com>\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@acme.example\r\nTo: ada@example.com\r\nMessage-ID: <{ours}>\r\n"
        "Subject: News\r\n--b1--\r\n").encode()


@pytest.mark.parametrize(("report", "kind", "status"), [(bounce_report, "bounce", "bounced"),
                                                       (abuse_report, "complaint", "complained")])
async def test_a_report_marks_the_message_we_sent_and_is_not_a_customer_message(
        platform: Platform, report: Callable[[str, str], bytes], kind: str, status: str) -> None:
    ours = f"{uuid7()}@acme.example"
    ours_id = interaction_id(WORKSPACE, "email", ours)
    db = platform.ingest_app.state.service.db.db
    # An outbound email as the outbound worker stores it.
    await db.interactions.insert_one({"_id": ours_id, "workspace_id": WORKSPACE, "channel": "email",
                                      "direction": "outbound", "message_id": ours,
                                      "contact_id": str(uuid7()), "outbound_id": f"out-{uuid7()}",
                                      "metadata": {"origin": "campaigns", "reference": f"send-{uuid7()}"}})
    report_id = f"{uuid7()}@reports.example.com"
    await send(platform, report(report_id, ours))
    item = await platform.wait_stored(report_id)
    assert item["kind"] == kind  # stored, marked: nobody wrote to us

    async def recorded() -> bool:
        doc = await db.interactions.find_one({"_id": ours_id})
        return bool(doc and f"{status}_at" in (doc.get("delivery") or {}))

    await eventually(recorded, what=f"{status} recorded on our message")


async def test_a_redelivered_record_of_an_erased_person_does_not_bring_them_back(platform: Platform) -> None:
    sender, message_id = address(), f"{uuid7()}@example.com"
    await send(platform, mime(sender, message_id))
    item = await platform.wait_stored(message_id)
    # The raw record as the worker received it, to deliver it again later (a rebalance, a retry).
    reader = AIOKafkaConsumer(INGEST_RAW, bootstrap_servers=platform.infra.kafka_bootstrap_servers,
                              auto_offset_reset="earliest", enable_auto_commit=False)
    await reader.start()
    try:
        found: list[Any] = []

        async def read() -> bool:
            for records in (await reader.getmany(timeout_ms=200)).values():
                found.extend(r for r in records if message_id.encode() in (r.value or b""))
            return bool(found)

        await eventually(read, what="the raw record on the topic")
    finally:
        await reader.stop()
    original = found[0]

    erased = await platform.contacts.post(f"/v1/contacts/{item['contact_id']}/erasure",
                                          headers=bearer(platform.token))
    assert erased.status_code == 202, erased.text

    async def confirmed() -> bool:
        status = (await platform.contacts.get(f"/v1/contacts/{item['contact_id']}/erasure",
                                              headers=bearer(platform.token))).json()
        return "ingest" in status["confirmed"]

    await eventually(confirmed, what="ingest's confirmation of the erasure")
    consumer = platform.ingest_app.state.runtime.consumers[0]
    before = consumer.processed
    producer = platform.ingest_app.state.service.producer
    await (await producer.send_raw(INGEST_RAW, original.key, original.value, list(original.headers)))

    async def handled() -> bool:
        return bool(consumer.processed > before)

    await eventually(handled, what="the redelivered record handled")
    # Handled, and nothing came back: no interaction, no contact with the person's address.
    assert (await platform.interaction(message_id)).status_code == 404
    search = await platform.contacts.get("/v1/contacts", params={"q": sender}, headers=bearer(platform.token))
    assert search.status_code == 200
    assert search.json()["items"] == []
