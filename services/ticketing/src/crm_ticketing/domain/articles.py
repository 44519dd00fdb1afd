"""The knowledge base: categories and articles, their rules and errors. Pure.

An article's body is HTML, sanitised here on every write (an allow-list), so whatever is
stored can be rendered as it is, on the public help centre as in the agents' tool. Search
runs on the body's visible text, which is derived from the sanitised HTML in the same write.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any
from uuid import UUID

import nh3

from crm_ticketing.domain.errors import FieldError, InvalidFields, TicketingError

ARTICLE_PUBLISHED = "crm.tickets.kb.article.published.v1"
ARTICLE_UNPUBLISHED = "crm.tickets.kb.article.unpublished.v1"

MAX_SLUG = 120
MAX_SUGGESTION_WORDS = 16

# PostgreSQL's built-in text search configurations, by ISO 639 language subtag.
_SEARCH_CONFIGS = {
    "ar": "arabic", "ca": "catalan", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "eu": "basque", "fi": "finnish", "fr": "french",
    "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian",
    "it": "italian", "lt": "lithuanian", "nb": "norwegian", "ne": "nepali", "nl": "dutch",
    "nn": "norwegian", "no": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}

# Private-use characters that ts_headline puts around a match; see ``highlighted``.
MARK_START = "\ue000"
MARK_END = "\ue001"


# --- errors ---------------------------------------------------------------------------------

class KnowledgeBaseError(TicketingError):
    """Base of the knowledge base's own errors."""


class DuplicateSlug(KnowledgeBaseError):
    """Another category (per workspace) or article (per workspace and locale) has the slug."""

    def __init__(self, what: str, slug: str) -> None:
        super().__init__(f"another {what} has the slug {slug!r}")
        self.what = what
        self.slug = slug


class Conflict(KnowledgeBaseError):
    """The write cannot be done in the current state (a category still in use, a second
    translation into one locale...)."""


class InvalidTransition(KnowledgeBaseError):
    def __init__(self, status: ArticleStatus, action: str) -> None:
        super().__init__(f"a {status.value} article cannot be {action}")
        self.status = status
        self.action = action


# --- the model ------------------------------------------------------------------------------

class ArticleStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


# action -> (the statuses it starts from, the status it leads to)
_ACTIONS: dict[str, tuple[frozenset[ArticleStatus], ArticleStatus]] = {
    "published": (frozenset({ArticleStatus.DRAFT, ArticleStatus.ARCHIVED}), ArticleStatus.PUBLISHED),
    "unpublished": (frozenset({ArticleStatus.PUBLISHED}), ArticleStatus.DRAFT),
    "archived": (frozenset({ArticleStatus.DRAFT, ArticleStatus.PUBLISHED}), ArticleStatus.ARCHIVED),
}


@dataclass(frozen=True)
class Category:
    id: UUID
    workspace_id: str
    name: str
    slug: str
    parent_id: UUID | None
    position: int
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Translation:
    id: UUID
    locale: str
    slug: str
    status: ArticleStatus


@dataclass(frozen=True)
class Article:
    id: UUID
    workspace_id: str
    # The same article in every locale shares one group id.
    group_id: UUID
    category_id: UUID | None
    locale: str
    slug: str
    title: str
    body: str  # sanitised HTML
    status: ArticleStatus
    version: int
    author: str
    updated_by: str
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None


@dataclass(frozen=True)
class ArticleHit:
    """An article in a list; found by a search, with its rank and a snippet of its body (as
    ts_headline made it until ``highlighted``, HTML after)."""

    article: Article
    score: float | None = None
    snippet: str | None = None


@dataclass(frozen=True)
class ArticleQuery:
    """A search of the knowledge base: ``text`` in websearch syntax ("quoted phrase", or,
    -not); with no text, articles by title."""

    text: str | None = None
    locale: str | None = None
    status: ArticleStatus | None = None
    category_id: UUID | None = None

    @property
    def search_config(self) -> str | None:
        return search_config(self.locale) if self.locale else None


def after_action(status: ArticleStatus, action: str) -> ArticleStatus:
    """The status ``action`` (published, unpublished, archived) leads to; InvalidTransition
    when it does not start from ``status``."""
    starts, leads_to = _ACTIONS[action]
    if status not in starts:
        raise InvalidTransition(status, action)
    return leads_to


# --- locales --------------------------------------------------------------------------------

_ALNUM = re.compile(r"^[A-Za-z0-9]+$")


def parse_locale(raw: str) -> str:
    """A BCP 47 language tag in its canonical case (``pt-BR``, ``zh-Hant-TW``, ``de-CH-1996``);
    ValueError for anything else. Extended language subtags and grandfathered tags are not
    taken; ``en_US`` is not a tag."""
    if not raw or len(raw) > 64 or not all(_ALNUM.match(p) for p in raw.split("-")):
        raise ValueError("not a BCP 47 language tag")
    parts = raw.split("-")
    language = parts.pop(0)
    if not (language.isalpha() and (2 <= len(language) <= 3 or 5 <= len(language) <= 8)):
        raise ValueError("a language tag starts with a 2-3 letter language code")
    out = [language.lower()]
    if parts and len(parts[0]) == 4 and parts[0].isalpha():
        out.append(parts.pop(0).title())
    if parts and ((len(parts[0]) == 2 and parts[0].isalpha()) or (len(parts[0]) == 3 and parts[0].isdigit())):
        out.append(parts.pop(0).upper())
    while parts and (5 <= len(parts[0]) <= 8 or (len(parts[0]) == 4 and parts[0][0].isdigit())):
        out.append(parts.pop(0).lower())
    while parts:
        singleton = parts.pop(0).lower()
        if len(singleton) != 1:
            raise ValueError(f"unexpected subtag {singleton!r}")
        if singleton == "x":  # private use: everything after it
            values, parts = parts, []
        else:
            values = []
            while parts and len(parts[0]) > 1:
                values.append(parts.pop(0))
        if not values or any(len(v) > 8 or (singleton != "x" and len(v) < 2) for v in values):
            raise ValueError(f"extension {singleton!r} needs subtags of 2 to 8 characters")
        out.extend([singleton, *(v.lower() for v in values)])
    return "-".join(out)


def search_config(locale: str) -> str:
    """The PostgreSQL text search configuration for a (canonical) locale: its language's
    stemmer, else ``simple`` (words as they are, lower-cased)."""
    return _SEARCH_CONFIGS.get(locale.split("-", 1)[0], "simple")


# --- slugs ----------------------------------------------------------------------------------

_SLUG = re.compile(r"^[^\W_]+(?:-[^\W_]+)*$")
_NOT_SLUG = re.compile(r"[\W_]+")


def slugify(text: str) -> str:
    """A slug for a title: lower-case letters and digits of any script joined by hyphens, with
    the accents of Latin letters dropped (``Café crème`` -> ``cafe-creme``); ``article`` when
    nothing is left."""
    kept: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char) and kept and kept[-1].isascii():
            continue
        kept.append(char)
    words = _NOT_SLUG.sub("-", unicodedata.normalize("NFC", "".join(kept)).lower()).strip("-")
    if len(words) > MAX_SLUG:
        words = words[:MAX_SLUG].rsplit("-", 1)[0] if "-" in words[:MAX_SLUG] else words[:MAX_SLUG]
    return words or "article"


def is_slug(value: str) -> bool:
    return len(value) <= MAX_SLUG and value == value.lower() and bool(_SLUG.match(value))


# --- bodies ---------------------------------------------------------------------------------

_CLEANER = nh3.Cleaner(url_schemes={"http", "https", "mailto"})
_BLOCKS = frozenset({"address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div",
                     "dl", "dt", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
                     "header", "hr", "li", "nav", "ol", "p", "pre", "section", "summary", "table", "td",
                     "th", "tr", "ul"})


def sanitised(body: str) -> str:
    """The body as HTML safe to render: allowed tags and attributes only, no scripts, styles,
    event handlers or ``javascript:`` links; links get ``rel="noopener noreferrer"``."""
    return _CLEANER.clean(body).strip()


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")
        elif tag == "img":
            self.parts.append(" ".join(v for k, v in attrs if k == "alt" and v))

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(body: str) -> str:
    """The visible text of sanitised HTML, one line per block: what is searched and quoted in
    snippets. The highlight markers cannot occur in it."""
    parser = _Text()
    parser.feed(body)
    parser.close()
    text = "".join(parser.parts).replace(MARK_START, "").replace(MARK_END, "")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def highlighted(headline: str) -> str:
    """A ts_headline snippet (matches between the markers) as HTML: the text escaped, the
    matches in ``<mark>``. Safe to render: the text is the body's visible text, not its HTML."""
    return html.escape(headline).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


# --- suggestions ----------------------------------------------------------------------------

_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|tr|sv|vs|rv|res|enc)\s*(?:\[\d+\])?\s*:\s*)+",
                           re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")


def significant_words(text: str) -> list[str]:
    """The words of a ticket's text worth searching for: reply and forward prefixes dropped,
    words of at least three letters that are not only digits, each once, in order (at most
    ``MAX_SUGGESTION_WORDS``). Stop words are left to each locale's configuration."""
    words: list[str] = []
    for word in _WORD.findall(_REPLY_PREFIX.sub("", text).lower()):
        if len(word) >= 3 and not word.isdigit() and word not in words and word != "or":
            words.append(word)
    return words[:MAX_SUGGESTION_WORDS]


def any_of(words: list[str]) -> str:
    """A websearch query matching any of ``words`` (each only letters and digits)."""
    return " or ".join(words)


# --- validation of writes -------------------------------------------------------------------

def category_values(raw: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The fields of a category write, normalised; InvalidFields naming every bad one."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    if "name" in raw or creating:
        name = " ".join(str(raw.get("name") or "").split())
        if not name:
            errors.append(FieldError("name", "a category needs a name"))
        values["name"] = name
    if raw.get("slug") is not None:
        values["slug"] = _slug(raw["slug"], "slug", errors)
    elif creating:
        values["slug"] = slugify(values.get("name", ""))
    if "parent_id" in raw:
        values["parent_id"] = raw["parent_id"]
    if "position" in raw or creating:
        values["position"] = int(raw.get("position") or 0)
    if errors:
        raise InvalidFields(errors)
    return values


def article_values(raw: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The fields of an article write, normalised: the locale canonical, the slug given or
    made from the title, the body sanitised with its text beside it (``body_text``)."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    if "title" in raw or creating:
        title = " ".join(str(raw.get("title") or "").split())
        if not title:
            errors.append(FieldError("title", "an article needs a title"))
        values["title"] = title
    if "locale" in raw or creating:
        try:
            values["locale"] = parse_locale(str(raw.get("locale") or ""))
        except ValueError as exc:
            errors.append(FieldError("locale", str(exc)))
    if raw.get("slug") is not None:
        values["slug"] = _slug(raw["slug"], "slug", errors)
    elif creating:
        values["slug"] = slugify(values.get("title", ""))
    if "body" in raw or creating:
        values["body"] = sanitised(str(raw.get("body") or ""))
        values["body_text"] = text_of(values["body"])
    for name in ("category_id", "translation_of"):
        if name in raw:
            values[name] = raw[name]
    if errors:
        raise InvalidFields(errors)
    return values


def publishable(article: Article) -> None:
    """InvalidFields unless the article can be read by the public: it needs a body."""
    if not text_of(article.body):
        raise InvalidFields([FieldError("body", "an article needs a body before it is published")])


def _slug(raw: Any, field: str, errors: list[FieldError]) -> str:
    slug = str(raw).strip()
    if not is_slug(slug):
        errors.append(FieldError(field, "lower-case letters and digits joined by single hyphens, "
                                        f"at most {MAX_SLUG} characters"))
    return slug
