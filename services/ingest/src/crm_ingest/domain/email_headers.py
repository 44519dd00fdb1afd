"""Reading the headers of a parsed email: addresses, message ids, dates and the optional
headers whose oddities must never cost the whole message. Pure."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from crm_ingest.domain.message import MAX_ID_CHARS, clean_text

# The header classes of policy.default take time far beyond a header's length (a 4 KB
# Content-Type with many parameters costs a tenth of a second, and it is parsed again on every
# look), so no header is handed to them longer than this. Real ones stay far below: a
# Content-Type with a long file name is under 1 KB, 8 KB of To holds some 200 addresses, more
# than the 100 recipients kept.
MAX_PARSED_HEADER_CHARS = 8192
_SHORTER = {"content-type": 2048, "content-disposition": 2048, "content-transfer-encoding": 256}
# The stdlib parses a header again on every look, and Content-Type is looked at some thirty
# times in one message (by the parser, get_body, get_content): short values are parsed once.
# The header objects are immutable, so they are shared between messages too.
_CACHED_CHARS = 512
MAX_HEADER_CHARS = 10_000  # what is read of an optional header; nobody needs more
MAX_MIME_BOUNDARIES = 100  # distinct boundaries declared in one message
MAX_MIME_PARTS = 500  # boundary lines in one message: the stdlib parser spends up to ~0.4 ms on each
_BOUNDARY = re.compile(rb"boundary[ \t]{0,8}=[ \t]{0,8}\"?([^\s\";]{1,70})", re.IGNORECASE)


if TYPE_CHECKING:
    _EmailPolicy = EmailPolicy[EmailMessage]
else:  # not subscriptable at run time
    _EmailPolicy = EmailPolicy


class _BoundedPolicy(_EmailPolicy):
    """policy.default, but for the length of the header values its header classes parse."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if not isinstance(value, str) or hasattr(value, "name"):  # already a header object
            return super().header_fetch_parse(name, value)
        if len(value) <= _CACHED_CHARS:
            return _parsed(name, value)
        limit = _SHORTER.get(name.lower(), MAX_PARSED_HEADER_CHARS)
        if len(value) > limit:
            value = _cut(value, limit, keep_end=name.lower() == "references")
        return super().header_fetch_parse(name, value)


@functools.lru_cache(maxsize=256)
def _parsed(name: str, value: str) -> Any:
    return policy.default.header_fetch_parse(name, value)


def _cut(value: str, limit: int, *, keep_end: bool) -> str:
    """A long header cut between two of its items where it can be (an address, a parameter,
    a message id), so that what is left still parses. References keep their end: the latest."""
    if keep_end:
        tail = value[-limit:]
        space = tail.find(" ")
        return tail[space + 1:] if 0 <= space < limit // 2 else tail
    head = value[:limit]
    separator = max(head.rfind(","), head.rfind(";"))
    return head[:separator] if separator > limit // 2 else head


POLICY = _BoundedPolicy()


def too_many_parts(raw: bytes) -> bool:
    """Whether a message declares more MIME boundaries, or has more boundary lines, than the
    parser may spend time on. A cheap look at the bytes, before parsing."""
    boundaries: set[bytes] = set()
    for match in _BOUNDARY.finditer(raw):
        boundaries.add(match.group(1))
        if len(boundaries) > MAX_MIME_BOUNDARIES:
            return True
    return sum(raw.count(b"\n--" + boundary) for boundary in boundaries) > MAX_MIME_PARTS



def header(message: Message, name: str) -> str:
    """An optional header's value as clean text, "" when missing or unreadable: a malformed
    List-Id or Precedence is no reason to dead-letter a message."""
    try:
        value = message.get(name)
        return "" if value is None else clean_text(str(value))[:MAX_HEADER_CHARS].strip()
    except Exception:  # the header classes of policy.default fail in many ways on odd input
        return ""


def addresses(message: Message, name: str) -> list[Address]:
    """The addresses of an address header; none when it is missing or unreadable (the stdlib
    fails on some broken ones, "a@" for one)."""
    try:
        value = message.get(name)
        found = getattr(value, "addresses", ()) if value is not None else ()
        return [a for a in found if isinstance(a, Address) and a.addr_spec]
    except Exception:
        return []


def msg_id(value: object) -> str:
    """A Message-ID (or In-Reply-To, or a Final-Recipient-like id) without its angle brackets."""
    text = clean_text(str(value)).strip()
    text = text[1:-1].strip() if text.startswith("<") and text.endswith(">") else text
    return text[:MAX_ID_CHARS]


def date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
