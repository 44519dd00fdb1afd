"""What kind of email a message is: a person's message, an automatic reply (RFC 3834 and the
usual vendor headers), a bounce (an RFC 3464 delivery status notification, or a mailer
daemon's failure notice), or a complaint (an RFC 5965 abuse report from a mailbox provider's
feedback loop: a recipient marked our message as spam), with the small facts the worker needs
about it. Pure."""

from __future__ import annotations

from email import policy
from email.message import Message
from email.parser import BytesHeaderParser

from crm_ingest.domain.email_headers import header, msg_id
from crm_ingest.domain.email_parts import walk
from crm_ingest.domain.message import clean_text

MAX_METADATA_KEYS = 20
MAX_METADATA_CHARS = 200
_MAX_DSN_BLOCKS = 100
_MAX_SCANNED_LINES = 5000

_DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon"})
# Subjects of the failure notices sent without a delivery status report (lower case).
_FAILURE_SUBJECTS = (
    "undeliverable", "undelivered mail", "delivery status notification (failure)",
    "delivery failure", "delivery has failed", "mail delivery failed", "failure notice",
    "returned mail", "could not be delivered", "unzustellbar", "nicht zugestellt",
    "non remis", "non distribuable", "no se puede entregar", "no entregado",
)
_NOT_AUTOMATIC = frozenset({"", "no", "false", "0"})
# RFC 5965 Feedback-Type values that say the recipient did not want the message.
_COMPLAINTS = frozenset({"abuse", "fraud"})
_ORIGINALS = frozenset({"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"})


class Facts(dict[str, str]):
    """Metadata: at most MAX_METADATA_KEYS keys, each value clean, one line and at most
    MAX_METADATA_CHARS; empty values are left out."""

    def add(self, key: str, value: str) -> None:
        value = " ".join(clean_text(value[:4 * MAX_METADATA_CHARS]).split())[:MAX_METADATA_CHARS]
        if value and (key in self or len(self) < MAX_METADATA_KEYS):
            self[key] = value


def classify(message: Message, sender: str, subject: str, body: str) -> tuple[str, Facts]:
    """(kind, metadata): "bounce", "complaint", "auto_reply" or "message". ``body`` is the whole text body,
    quote and all, where a failure notice without a report keeps the returned message."""
    facts = Facts()
    facts.add("auto_submitted", header(message, "auto-submitted"))
    facts.add("precedence", header(message, "precedence").lower())
    facts.add("list_id", _list_id(header(message, "list-id")))
    if message.get_content_type() == "multipart/report":
        report_type = _report_type(message)
        facts.add("report_type", report_type)
        if report_type == "feedback-report":
            feedback = _feedback_fields(message)
            facts.add("feedback_type", feedback.get("feedback-type", "").lower())
            facts.add("complaint_recipient", feedback.get("original-rcpt-to", ""))
            facts.add("complained_message_id", _original_message_id(message))
            # Only abuse (spam) and fraud reports are complaints about our mail; "not-spam",
            # "virus" or "other" are no reason to stop writing to someone. A report whose fields
            # cannot be read counts as a complaint: its type says that it is an abuse report.
            if facts.get("feedback_type") in _COMPLAINTS or not feedback:
                return "complaint", facts
            return "auto_reply", facts
        if report_type != "delivery-status":  # read receipts (disposition-notification)
            return "auto_reply", facts
        failed = _read_status(message, facts)
        facts.add("bounced_message_id", _original_message_id(message))
        # A delay or success report is automatic mail, not a failure to mark a message by.
        return ("bounce" if failed else "auto_reply"), facts
    local_part = sender.rpartition("@")[0]
    if local_part in _DAEMONS and any(words in subject.lower() for words in _FAILURE_SUBJECTS):
        facts.add("bounced_message_id", _original_message_id(message) or _message_id_in(body))
        return "bounce", facts
    return ("auto_reply" if _automatic(message) else "message"), facts


def _automatic(message: Message) -> bool:
    submitted = header(message, "auto-submitted").split(";")[0].strip().lower()
    if submitted and submitted != "no":  # RFC 3834: auto-replied, auto-generated, auto-notified
        return True
    for name in ("x-autoreply", "x-autorespond"):
        value = header(message, name)
        if value and value.lower() not in _NOT_AUTOMATIC:
            return True
    return header(message, "precedence").lower() == "auto_reply"


def _list_id(value: str) -> str:
    """List-Id: "Acme News <news.acme.example>" -> "news.acme.example"."""
    start, end = value.rfind("<"), value.rfind(">")
    return value[start + 1:end].strip() if 0 <= start < end else value


def _report_type(message: Message) -> str:
    try:
        value = message.get_param("report-type", "", header="content-type")
    except Exception:
        return ""
    return value.strip().lower() if isinstance(value, str) else ""


def _read_status(message: Message, facts: Facts) -> bool:
    """Reads the delivery status part into facts; whether a recipient failed (also when the
    report cannot be read: the report type said it is about a delivery)."""
    part = next((p for p, kind, _ in walk(message) if kind == "message/delivery-status"), None)
    blocks = _status_blocks(part) if part is not None else []
    if not blocks:
        return True
    facts.add("original_envelope_id", blocks[0].get("original-envelope-id", ""))
    recipients = [b for b in blocks if "action" in b or "final-recipient" in b]
    if not recipients:
        return True
    failed = [b for b in recipients if b.get("action", "").startswith("failed")]
    chosen = (failed or recipients)[0]
    recipient = chosen.get("final-recipient") or chosen.get("original-recipient", "")
    facts.add("bounce_recipient", recipient.partition(";")[2].strip() or recipient)
    facts.add("bounce_status", (chosen.get("status", "").split() or [""])[0])
    facts.add("bounce_action", chosen.get("action", ""))
    diagnostic = chosen.get("diagnostic-code", "")
    facts.add("bounce_diagnostic", diagnostic.partition(";")[2].strip() or diagnostic)
    return bool(failed) or not any("action" in b for b in recipients)


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a message/delivery-status part: the per-message block first, then
    one per recipient; names lower-cased, values on one line."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):  # what the stdlib makes of a plain report
        for block in payload[:_MAX_DSN_BLOCKS]:
            if isinstance(block, Message):
                blocks.append({name.lower(): " ".join(header(block, name).split()) for name in block})
        return blocks
    data = part.get_payload(decode=True)  # a report sent base64-encoded, say
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
    for chunk in text.replace("\r\n", "\n").split("\n\n")[:_MAX_DSN_BLOCKS]:
        fields: dict[str, str] = {}
        last = ""
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                last = name.strip().lower()
                fields[last] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def _feedback_fields(message: Message) -> dict[str, str]:
    """The fields of an abuse report's message/feedback-report part (names lower-cased, the
    first of each), or {} when it has none."""
    part = next((p for p, kind, _ in walk(message) if kind == "message/feedback-report"), None)
    if part is None:
        return {}
    payload = part.get_payload()
    block = next((m for m in payload if isinstance(m, Message)), None) if isinstance(payload, list) else None
    if block is None or not block.keys():
        # Not read as fields by the stdlib: a report sent base64 or quoted-printable encoded.
        text = block.get_payload() if block is not None else payload
        carrier = Message()
        carrier["Content-Transfer-Encoding"] = header(part, "content-transfer-encoding") or "7bit"
        carrier.set_payload(text if isinstance(text, str) else "")
        data = carrier.get_payload(decode=True)
        block = BytesHeaderParser(policy=policy.compat32).parsebytes(data if isinstance(data, bytes) else b"")
    return {name.lower(): " ".join(header(block, name).split()) for name in dict.fromkeys(block.keys())}


def _original_message_id(message: Message) -> str:
    """The Message-ID of the returned message, when the report or notice includes it (whole,
    or its headers only)."""
    for part, content_type, _ in walk(message):
        if content_type not in _ORIGINALS:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            original = next((m for m in payload if isinstance(m, Message)), None)
            found = header(original, "message-id") if original is not None else ""
        else:
            data = part.get_payload(decode=True)
            data = data if isinstance(data, bytes) else b""
            headers = BytesHeaderParser(policy=policy.compat32).parsebytes(data)
            found = header(headers, "message-id")
        if found:
            return msg_id(found)
    return ""


def _message_id_in(body: str) -> str:
    """The first Message-ID header line in a failure notice's text, where the notices that
    send no report copy the returned message."""
    for line in body.split("\n", _MAX_SCANNED_LINES)[:_MAX_SCANNED_LINES]:
        if line[:11].lower() == "message-id:":
            return msg_id(line[11:])
    return ""
