"""Signed tracking links, link rewriting, unsubscribe headers, bot detection and report math."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from crm_campaigns.domain.errors import InvalidFields
from crm_campaigns.domain.reports import bucket, figures, parse_interval, series
from crm_campaigns.domain.tracking import (
    Token,
    bot_reason,
    click_url,
    sign,
    tracked_content,
    unsubscribe_headers,
    unsubscribe_url,
    verify,
)

KEY = dict(base_url="https://t.example.com/", secret="s3cret", workspace_id="ws-a", send_id="send-1")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _token(url: str, kind: str) -> str:
    match = re.search(rf"/v1/t/{kind}/([A-Za-z0-9_\-.]+?)(?:\.gif)?$", url)
    assert match, url
    return match.group(1)


def test_a_signed_click_token_carries_its_target_and_send() -> None:
    url = click_url("https://shop.example.com/p?x=1&y=2", **KEY)
    assert url.startswith("https://t.example.com/v1/t/c/")
    token = verify(_token(url, "c"), secret="s3cret", kind="c")
    assert token == Token("c", "ws-a", "send-1", "https://shop.example.com/p?x=1&y=2")


def test_tampered_tokens_wrong_secrets_and_other_kinds_are_refused() -> None:
    value = sign(Token("c", "ws-a", "send-1", "https://good.example.com"), "s3cret")
    forged = sign(Token("c", "ws-a", "send-1", "https://evil.example.com"), "guess")
    payload, _, mac = value.partition(".")
    evil_payload = forged.partition(".")[0]
    assert verify(value, secret="s3cret", kind="c") is not None
    assert verify(value, secret="other", kind="c") is None
    assert verify(value, secret="s3cret", kind="o") is None  # a click token is not an open token
    assert verify(f"{evil_payload}.{mac}", secret="s3cret") is None
    assert verify(forged, secret="s3cret") is None
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    assert verify(f"{payload}.{flipped}", secret="s3cret") is None
    for junk in ("", ".", "abc", "abc.", ".abc", "é.é", f"{payload}"):
        assert verify(junk, secret="s3cret") is None


def test_links_are_rewritten_except_mailto_tel_anchors_and_relative_ones() -> None:
    html = ('<html><body><a href="https://a.example.com/x?q=1&amp;r=2">A</a> '
            "<a href='http://b.example.com'>B</a> <a href=\"mailto:me@example.com\">M</a> "
            '<a href="tel:+3612345">T</a> <a href="#top">top</a> <a href="/relative">R</a></body></html>')
    text = "Visit https://a.example.com/x?q=1 or mail me@example.com."
    new_html, new_text = tracked_content(html, text, **KEY)
    clicks = re.findall(r"https://t\.example\.com/v1/t/c/([^\"']+)", new_html)
    assert [verify(c, secret="s3cret", kind="c").target for c in clicks] == [  # type: ignore[union-attr]
        "https://a.example.com/x?q=1&r=2", "http://b.example.com"]
    for untouched in ('href="mailto:me@example.com"', 'href="tel:+3612345"', 'href="#top"',
                      'href="/relative"'):
        assert untouched in new_html
    pixel = re.search(r'<img src="(https://t\.example\.com/v1/t/o/[^"]+\.gif)"', new_html)
    assert pixel
    assert new_html.index(pixel.group(0)) < new_html.index("</body>")
    assert verify(_token(pixel.group(1), "o"), secret="s3cret", kind="o") == Token("o", "ws-a", "send-1")
    text_click = re.search(r"https://t\.example\.com/v1/t/c/(\S+)", new_text)
    assert text_click
    assert "me@example.com." in new_text
    followed = verify(text_click.group(1), secret="s3cret", kind="c")
    assert followed is not None
    assert followed.target == "https://a.example.com/x?q=1"


def test_content_without_html_gets_no_pixel_and_each_link_one_click_url() -> None:
    assert tracked_content("", "plain", **KEY) == ("", "plain")
    once = tracked_content('<a href="https://a.example.com">a</a>', "", **KEY)[0]
    assert once.count("/v1/t/c/") == 1
    assert once.count("/v1/t/o/") == 1


def test_unsubscribe_headers_follow_rfc_8058() -> None:
    headers = unsubscribe_headers(**KEY)
    url = unsubscribe_url(**KEY)
    assert headers == {"List-Unsubscribe": f"<{url}>",
                       "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert url.startswith("https://t.example.com/v1/t/u/")
    assert verify(_token(url, "u"), secret="s3cret", kind="u") == Token("u", "ws-a", "send-1")


@pytest.mark.parametrize(("agent", "method", "age", "reason"), [
    ("Mozilla/5.0 (Windows NT 10.0) Thunderbird/115", "HEAD", 3600, "head"),
    ("Mozilla/5.0", "GET", 3600, "apple_privacy"),
    ("Mozilla/5.0 (compatible; GoogleImageProxy)", "GET", 3600, "scanner"),
    ("Barracuda Sentinel", "GET", 3600, "scanner"),
    ("", "GET", 3600, "scanner"),
    ("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15", "GET", 1, "too_fast"),
    ("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15", "GET", 3600, None),
])
def test_bots_and_prefetches_are_told_from_people(agent: str, method: str, age: int,
                                                  reason: str | None) -> None:
    assert bot_reason(user_agent=agent, method=method, sent_at=NOW - timedelta(seconds=age), now=NOW,
                      min_seconds=5) == reason


def test_report_figures_per_variant_and_time_buckets() -> None:
    rows = figures([{"variant": "B", "sent": 2, "delivered": 2, "opened_unique": 1},
                    {"variant": "A", "sent": 4, "delivered": 4, "opened_unique": 2, "clicked_unique": 1}],
                   [{"variant": "A", "currency": "EUR", "count": 2, "amount_minor": 1500}])
    assert [r.variant for r in rows] == ["A", "B"]
    a = rows[0].as_dict()
    assert (a["conversions"], a["revenue"], a["open_rate"], a["click_rate"]) == (
        2, [{"currency": "EUR", "amount_minor": 1500}], 0.5, 0.25)
    at = datetime(2026, 11, 24, 10, 42, 7, tzinfo=UTC)
    assert bucket(at, "hour") == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert bucket(at, "day") == datetime(2026, 11, 24, tzinfo=UTC)
    hits = [{"variant": "", "kind": "open", "at": at}, {"variant": "", "kind": "click", "at": at},
            {"variant": "", "kind": "open", "at": at + timedelta(hours=1)}]
    assert series(hits, "hour") == [
        {"at": "2026-11-24T10:00:00+00:00", "variant": "", "opens": 1, "clicks": 1, "unsubscribes": 0},
        {"at": "2026-11-24T11:00:00+00:00", "variant": "", "opens": 1, "clicks": 0, "unsubscribes": 0}]
    with pytest.raises(InvalidFields) as error:
        parse_interval("week")
    assert error.value.errors[0].field == "interval"
