"""The parts of a parsed email: walking its MIME tree within bounds, and the files that came
with it (attachments, inline images, attached messages). Pure."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from email import policy
from email.message import Message

from crm_ingest.domain.message import Attachment, clean_text

MAX_ATTACHMENTS = 50
MAX_PARTS = 1000  # parts of one message looked at; a deeper or wider tree is not read further
MAX_DEPTH = 32
MAX_FILENAME_BYTES = 255
_MAX_CONTENT_TYPE_CHARS = 255
_EXTENSIONS = {
    "application/pdf": ".pdf", "application/zip": ".zip", "image/png": ".png", "image/jpeg": ".jpg",
    "image/gif": ".gif", "image/webp": ".webp", "text/calendar": ".ics", "text/plain": ".txt",
    "text/html": ".html", "text/csv": ".csv", "message/rfc822": ".eml",
    "message/delivery-status": ".txt", "text/rfc822-headers": ".txt",
}
# Control and format characters (the bidi overrides that make "gpj.exe" look like ".jpg")
# and line or paragraph separators have no place in a file name.
_UNWANTED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def walk(message: Message) -> Iterator[tuple[Message, str, str]]:
    """Every part that is not a multipart container, with its content type and its parent's
    ("" for the message itself), in the order of the message; at most MAX_PARTS parts and
    MAX_DEPTH levels. An attached message (message/rfc822) is one part: its own parts are its
    business."""
    stack: list[tuple[Message, str, int]] = [(message, "", 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, parent_type, depth = stack.pop()
        seen += 1
        content_type = part.get_content_type()
        if not content_type.startswith("multipart/"):
            yield part, content_type, parent_type
            continue
        children = part.get_payload()
        if isinstance(children, list) and depth < MAX_DEPTH:
            stack.extend((child, content_type, depth + 1) for child in reversed(children)
                         if isinstance(child, Message))


def attachments(message: Message, bodies: tuple[Message | None, ...]) -> tuple[tuple[Attachment, ...], int]:
    """(the files, how many more there were than MAX_ATTACHMENTS). A file is every part but the
    chosen bodies and the other renderings of them: parts with Content-Disposition
    attachment, inline images, attached messages, unnamed text outside multipart/alternative."""
    found: list[Attachment] = []
    dropped = 0
    for part, content_type, parent_type in walk(message):
        if any(part is body for body in bodies):
            continue
        filename = _filename(part)
        if not _is_file(part, content_type, parent_type, filename):
            continue
        if len(found) >= MAX_ATTACHMENTS:
            dropped += 1
            continue
        content_type = clean_text(content_type)[:_MAX_CONTENT_TYPE_CHARS]
        found.append(Attachment(
            filename=clean_filename(filename, content_type, len(found) + 1),
            content_type=content_type,
            data=_data(part),
        ))
    return tuple(found), dropped


def _is_file(part: Message, content_type: str, parent_type: str, filename: str) -> bool:
    if content_type not in ("text/plain", "text/html") or filename:
        return True
    if _disposition(part) == "attachment":
        return True
    # Unnamed text: another rendering of the body, or a piece of a body split around an image.
    return parent_type not in ("", "multipart/alternative")


def _disposition(part: Message) -> str:
    try:
        return part.get_content_disposition() or ""
    except Exception:  # a header class that chokes on odd input: as if there were none
        return ""


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        return ""
    return name if isinstance(name, str) else ""


def _data(part: Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822, message/delivery-status: the message as sent
        return b"".join(message_bytes(m) for m in payload if isinstance(m, Message))
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a transfer encoding the stdlib cannot undo: nothing readable
        return b""
    return data if isinstance(data, bytes) else b""


def message_bytes(message: Message) -> bytes:
    """A parsed message written back out; b"" when even that fails."""
    try:
        return message.as_bytes(policy=policy.compat32)
    except Exception:
        return b""


def clean_filename(name: str, content_type: str, position: int) -> str:
    """A file name safe to store and offer for download: no directories, control or bidi
    characters, at most MAX_FILENAME_BYTES in UTF-8 (the extension kept), and
    attachment-<position><extension> when nothing usable is left."""
    name = clean_text(name[:4 * MAX_FILENAME_BYTES]).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char) not in _UNWANTED)
    name = " ".join(name.split()).strip(" .")
    if not name:
        return f"attachment-{position}{_EXTENSIONS.get(content_type, '')}"
    if len(name.encode()) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = "." + extension if dot and stem and len(extension) <= 16 else ""
    stem = stem if suffix else name
    budget = MAX_FILENAME_BYTES - len(suffix.encode())
    return stem.encode()[:budget].decode("utf-8", "ignore").rstrip(" .") + suffix
