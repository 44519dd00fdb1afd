"""An email's HTML: sanitised for display (nh3, an allow-list), and its visible text with the
quoted earlier message that mail programs mark in the markup. Pure."""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser

import nh3

from crm_ingest.domain.message import clean_text

MAX_HTML_CHARS = 1_000_000  # sanitised HTML kept for display; a longer one is cut, then cleaned again
MAX_HTML_INPUT_CHARS = 2 * MAX_HTML_CHARS  # what is read of an HTML part at all
# The HTML5 tree builder works in time proportional to tags x nesting depth: deeper markup is
# not shown at all (its text still is), so that a crafted message cannot stall the worker.
MAX_HTML_DEPTH = 512

_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup",
    "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
    "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small", "span", "strike",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
})
# Removed with everything inside them (other tags not allowed lose the tag, keep the text).
_DROPPED = frozenset({
    "script", "style", "title", "template", "noscript", "iframe", "frame", "frameset", "object",
    "embed", "applet", "svg", "math", "select", "textarea", "button",
})
_CELL = {"align", "valign", "width", "height", "colspan", "rowspan", "bgcolor"}
_ATTRIBUTES = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color", "face", "size"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor"},
    "td": _CELL,
    "th": _CELL,
    "ol": {"start", "type"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
}
# Kept so that a viewer can fold the quoted earlier message away.
_QUOTE_CLASSES = {"gmail_quote", "gmail_attr", "moz-cite-prefix", "yahoo_quoted"}
_CLASSES = {"div": _QUOTE_CLASSES, "blockquote": _QUOTE_CLASSES}
_STYLES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "text-transform", "vertical-align",
    "line-height", "letter-spacing", "white-space", "direction", "list-style-type",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-collapse",
    "border-color", "border-style", "border-width", "border-spacing", "border-radius",
    "width", "max-width", "min-width", "height", "max-height", "min-height",
}
# A style attribute holding any of these is dropped whole: old IE's expression(), url()s that
# load or run something, and the escapes and comments that could spell them in disguise.
_STYLE_REFUSED = ("expression", "url(", "javascript", "behavior", "binding", "@import", "\\", "/*", "&")
# Negative lengths (margin-top:-900px) move a message's content over the page showing it.
_NEGATIVE = re.compile(r"[:\s,(]-[\d.]")
_IMAGE_SOURCES = ("cid:", "https://")


def _attribute(tag: str, name: str, value: str) -> str | None:
    if name == "style":
        lowered = value.lower()
        refused = any(word in lowered for word in _STYLE_REFUSED) or _NEGATIVE.search(lowered)
        return None if refused else value
    if tag == "img" and name == "src":
        return value if value.strip().lower().startswith(_IMAGE_SOURCES) else None
    if tag == "a" and name == "href":
        return None if value.strip().lower().startswith("cid:") else value
    return value


_CLEANER = nh3.Cleaner(
    tags=set(_TAGS),
    clean_content_tags=set(_DROPPED),
    attributes=_ATTRIBUTES,
    attribute_filter=_attribute,
    link_rel="noopener noreferrer nofollow",
    url_schemes={"http", "https", "mailto", "tel", "cid"},
    url_relative="deny",  # a relative link in an email points nowhere, or somewhere unintended
    allowed_classes=_CLASSES,
    tag_attribute_values={"blockquote": {"type": {"cite"}}},
    filter_style_properties=set(_STYLES),
    strip_comments=True,
)


def sanitise_html(html: str) -> tuple[str, str]:
    """(the HTML safe to show in the CRM, why it was left out or ""). Safe: no scripts, styles,
    event handlers, frames or forms; links with rel="noopener noreferrer nofollow"; images only
    from cid: or https: sources. At most MAX_HTML_CHARS: a longer result is cut and cleaned
    again, so that no half tag is left, and left out if it still does not fit."""
    html = clean_text(html[:MAX_HTML_INPUT_CHARS])
    if _Nesting().exceeds(html, MAX_HTML_DEPTH):
        return "", "nested too deeply"
    cleaned = _CLEANER.clean(html)
    if len(cleaned) > MAX_HTML_CHARS:
        # Cleaning again closes what the cut left open, which takes a little room.
        cleaned = _CLEANER.clean(cleaned[:MAX_HTML_CHARS - MAX_HTML_CHARS // 16])
    return (cleaned, "") if len(cleaned) <= MAX_HTML_CHARS else ("", "too large")


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]{0,15})")
# Elements that never hold others (void) or that the next sibling closes: they add no depth.
_FLAT = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody",
    "tfoot", "colgroup", "caption", "rb", "rt", "rp", "rtc",
})
# HTML5's formatting elements: one left open is reopened in every later block ("reconstruct
# the active formatting elements"), at most three alike (same tag and attributes).
_FORMATTING = frozenset({
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
})
MAX_OPEN_FORMATTING = 12  # left open (three alike at most count); each block repeats them all
# With this few tags even the worst nesting costs the tree builder a few milliseconds.
_FEW_TAGS = 256


class _Nesting:
    """How deep the HTML5 tree builder will nest the elements, estimated from the tags alone
    in one linear pass (no text, comments or scripts are told apart: an estimate that errs on
    the deep side). An end tag closes the latest open element of its name and everything
    opened inside it; one without an open element of its name is ignored."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.open: dict[str, int] = {}  # open elements in stack by name
        self.unclosed: dict[str, list[str]] = {}  # formatting elements never ended, by name
        self.alike: dict[str, int] = {}  # ... by tag and attributes
        self.reopened = 0  # what reconstruction could add: sum of min(3, alike)

    def exceeds(self, html: str, depth: int) -> bool:
        if html.count("<") <= _FEW_TAGS:
            return False
        stack, is_open = self.stack, self.open
        for match in _TAG.finditer(html):
            closing, name = match.groups()
            name = name.lower()
            if name in _FLAT:
                continue
            if closing:
                self._end(name)
                continue
            stack.append(name)
            is_open[name] = is_open.get(name, 0) + 1
            if name in _FORMATTING:
                after = match.end()
                close = html.find(">", after, after + 500)
                attributes = html[after:close if close >= 0 else after + 500]
                self._formatting(name, name + " " + " ".join(attributes.rstrip("/").split()))
                if self.reopened > MAX_OPEN_FORMATTING:
                    return True
            if len(stack) > depth:
                return True
        return False

    def _formatting(self, name: str, key: str) -> None:
        self.unclosed.setdefault(name, []).append(key)
        alike = self.alike.get(key, 0)
        self.alike[key] = alike + 1
        if alike < 3:
            self.reopened += 1

    def _end(self, name: str) -> None:
        keys = self.unclosed.get(name)
        if keys:  # the end tag takes it out of the active formatting elements
            key = keys.pop()
            self.alike[key] -= 1
            if self.alike[key] < 3:
                self.reopened -= 1
        if not self.open.get(name):
            return
        reopened: list[str] = []
        if name in _FORMATTING and self.stack[-1] != name:
            # Misnested (<b><i>x</b>): when nothing but formatting elements is open inside it,
            # the tree builder closes them with it and opens them again at once (<b><i>x</b>
            # <i>...); when a block is, it keeps the block open and clones the element into it.
            for tag in reversed(self.stack[-8:]):
                if tag == name:
                    break
                if tag not in _FORMATTING:
                    return
                reopened.append(tag)
            else:
                return
        while self.stack:  # each element is popped once: linear over the whole document
            top = self.stack.pop()
            self.open[top] -= 1
            if top == name:
                break
        for tag in reversed(reopened):
            self.stack.append(tag)
            self.open[tag] += 1


def html_to_text(html: str) -> str:
    """The visible text of an HTML body: no markup, scripts or styles."""
    new, quoted = html_text_and_quote(html)
    return "\n".join(part for part in (new, quoted) if part)


def html_text_and_quote(html: str) -> tuple[str, str]:
    """The visible text of an HTML body, split where the quoted earlier message starts when the
    mail program marked it (Gmail's gmail_quote, a blockquote type="cite", Thunderbird's
    moz-cite-prefix, Yahoo's yahoo_quoted) and nothing but the quote follows it."""
    html = html[:MAX_HTML_INPUT_CHARS]
    parser = _VisibleText()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError:  # HTMLParser on a broken declaration ("<![foo["): the text between tags
        return _lines(html_lib.unescape(_ANY_TAG.sub("\n", html))), ""
    start = parser.quote_start()
    return _lines("".join(parser.parts[:start])), _lines("".join(parser.parts[start:]))


_ANY_TAG = re.compile(r"<[^<>]*>")


def _lines(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


class _VisibleText(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                         "blockquote", "hr", "table", "pre", "dt", "dd"})
    _HIDDEN = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.spans: list[tuple[int, int]] = []  # [start, end) in parts of each quote, outermost
        self._quote_tag = ""
        self._quote_depth = 0
        self._quote_from = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.hidden = 0  # a <head> that was never closed hides nothing of the body
        elif tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")
        if self._quote_tag:
            if tag == self._quote_tag:
                self._quote_depth += 1
        elif _is_quote(tag, attrs):
            self._quote_tag, self._quote_depth, self._quote_from = tag, 1, len(self.parts)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self.hidden:
            self.hidden -= 1
        elif tag in self._BREAKS:
            self.parts.append("\n")
        if tag == self._quote_tag:
            self._quote_depth -= 1
            if not self._quote_depth:
                self.spans.append((self._quote_from, len(self.parts)))
                self._quote_tag = ""

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)

    def quote_start(self) -> int:
        """Where in parts the closing quote starts (len(parts) when there is none): the last
        marked quote when only blank text follows it, joined by the marked quotes right above."""
        spans = list(self.spans)
        if self._quote_tag:  # never closed: it runs to the end
            spans.append((self._quote_from, len(self.parts)))
        start = len(self.parts)
        end = len(self.parts)
        for span_start, span_end in reversed(spans):
            if "".join(self.parts[span_end:end]).strip():
                break
            start, end = span_start, span_start
        return start


def _is_quote(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    if tag not in ("div", "blockquote"):
        return False
    for name, value in attrs:
        if not value:
            continue
        if name == "class" and not _QUOTE_CLASSES.isdisjoint(value.split()):
            return True
        if tag == "blockquote" and name == "type" and value.strip().lower() == "cite":
            return True
    return False
