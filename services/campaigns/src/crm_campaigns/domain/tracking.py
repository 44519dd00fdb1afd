"""Signed tracking links: open pixel, click redirect and unsubscribe (pure).

A token is ``base64url(payload) + "." + base64url(hmac)`` where the payload is the compact JSON
list ``[kind, workspace_id, send_id, target]`` and the MAC is HMAC-SHA256 over the encoded payload
with the service secret. Nothing in a token can be changed without the secret, so a click link
cannot be turned into an open redirect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Kind = Literal["o", "c", "u"]
KINDS: frozenset[str] = frozenset({"o", "c", "u"})

_HREF = re.compile(r"""(?P<pre>\bhref\s*=\s*)(?P<q>["'])(?P<url>https?://[^"']+)(?P=q)""", re.IGNORECASE)
_TEXT_URL = re.compile(r"""https?://[^\s<>"')\]]+""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    workspace_id: str
    send_id: str
    target: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest())


def sign(token: Token, secret: str) -> str:
    payload = _b64(json.dumps([token.kind, token.workspace_id, token.send_id, token.target],
                              separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_mac(secret, payload)}"


def verify(value: str, *, secret: str, kind: Kind | None = None) -> Token | None:
    """The token's content when its signature holds (and its kind matches), else None."""
    payload, dot, mac = value.partition(".")
    if not dot or not payload or not mac:
        return None
    try:
        expected = _mac(secret, payload)
    except UnicodeEncodeError:
        return None
    if not hmac.compare_digest(expected.encode(), mac.encode("ascii", "replace")):
        return None
    try:
        fields = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if (not isinstance(fields, list) or len(fields) != 4 or not all(isinstance(f, str) for f in fields)
            or fields[0] not in KINDS or (kind is not None and fields[0] != kind)):
        return None
    return Token(kind=fields[0], workspace_id=fields[1], send_id=fields[2], target=fields[3])


def _url(base_url: str, kind: Kind, token: str, suffix: str = "") -> str:
    return f"{base_url.rstrip('/')}/v1/t/{kind}/{token}{suffix}"


def click_url(target: str, *, base_url: str, secret: str, workspace_id: str, send_id: str) -> str:
    return _url(base_url, "c", sign(Token("c", workspace_id, send_id, target), secret))


def open_url(*, base_url: str, secret: str, workspace_id: str, send_id: str) -> str:
    return _url(base_url, "o", sign(Token("o", workspace_id, send_id), secret), ".gif")


def unsubscribe_url(*, base_url: str, secret: str, workspace_id: str, send_id: str) -> str:
    return _url(base_url, "u", sign(Token("u", workspace_id, send_id), secret))


def unsubscribe_headers(*, base_url: str, secret: str, workspace_id: str, send_id: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for one message."""
    url = unsubscribe_url(base_url=base_url, secret=secret, workspace_id=workspace_id, send_id=send_id)
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def tracked_content(html: str, text: str, *, base_url: str, secret: str, workspace_id: str,
                    send_id: str) -> tuple[str, str]:
    """Rewrite http(s) links to signed click URLs and append the open pixel to the HTML.

    ``mailto:``, ``tel:``, anchors and relative links are left alone, as are links already
    pointing at the tracking endpoint.
    """
    prefix = f"{base_url.rstrip('/')}/v1/t/"

    def wrap(url: str) -> str:
        if url.startswith(prefix):
            return url
        return click_url(url, base_url=base_url, secret=secret, workspace_id=workspace_id, send_id=send_id)

    def href(match: re.Match[str]) -> str:
        raw = match.group("url")
        target = raw.replace("&amp;", "&")
        wrapped = wrap(target)
        quote = match.group("q")
        return f"{match.group('pre')}{quote}{raw if wrapped == target else wrapped}{quote}"

    new_html = _HREF.sub(href, html) if html else html
    if new_html:
        src = open_url(base_url=base_url, secret=secret, workspace_id=workspace_id, send_id=send_id)
        pixel = (f'<img src="{src}"'
                 ' width="1" height="1" alt="" style="display:none;border:0" />')
        ends = list(_BODY_END.finditer(new_html))
        if ends:
            at = ends[-1].start()
            new_html = new_html[:at] + pixel + new_html[at:]
        else:
            new_html = new_html + pixel
    new_text = _TEXT_URL.sub(lambda m: wrap(m.group(0)), text) if text else text
    return new_html, new_text


# --- bot / prefetch detection ---------------------------------------------------------------

_SCANNER_AGENTS = (
    "googleimageproxy", "yahoomailproxy", "barracuda", "mimecast", "proofpoint", "symantec",
    "messagelabs", "trendmicro", "forcepoint", "fortiguard", "microsoft office/", "ms-office",
    "safelinks", "bot", "crawler", "spider", "curl/", "wget/", "python-requests", "go-http-client",
    "headlesschrome", "preview", "scanner",
)


def bot_reason(*, user_agent: str, method: str, sent_at: datetime | None, now: datetime,
               min_seconds: float, apple_proxy: bool = False) -> str | None:
    """Why a hit looks automated (``"head"``, ``"apple_privacy"``, ``"scanner"``, ``"too_fast"``), or None.

    Apple Mail Privacy Protection fetches every pixel through Apple's proxy with a bare
    ``Mozilla/5.0`` agent; the caller decides ``apple_proxy`` (e.g. from the client network).
    """
    if method.upper() == "HEAD":
        return "head"
    agent = user_agent.lower().strip()
    if apple_proxy or agent == "mozilla/5.0":
        return "apple_privacy"
    if not agent or any(mark in agent for mark in _SCANNER_AGENTS):
        return "scanner"
    if sent_at is not None and now - sent_at < timedelta(seconds=min_seconds):
        return "too_fast"
    return None
