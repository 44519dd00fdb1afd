"""What every Meta webhook shares (WhatsApp Cloud API, Messenger, Instagram): the app-secret
signature of a delivery and the ids Meta gives accounts. Pure."""

from __future__ import annotations

import hashlib
import hmac

# An id in Meta's Graph API (a business phone number, a Page, an Instagram account): digits.
GRAPH_ID = r"^\d{1,32}$"


def signature_valid(app_secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` is "sha256=" and the hex HMAC-SHA256 of the raw body
    keyed with the app secret, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign(app_secret, body).encode(), header.strip().lower().encode())


def sign(app_secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret, body, hashlib.sha256).hexdigest()
