"""The knowledge base's pure rules: locales, slugs, bodies, snippets, statuses, suggestions."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from crm_ticketing.domain.articles import (
    MARK_END,
    MARK_START,
    MAX_SLUG,
    MAX_SUGGESTION_WORDS,
    Article,
    ArticleStatus,
    InvalidFields,
    InvalidTransition,
    after_action,
    any_of,
    article_values,
    category_values,
    highlighted,
    is_slug,
    parse_locale,
    publishable,
    sanitised,
    search_config,
    significant_words,
    slugify,
    text_of,
)


@pytest.mark.parametrize(("raw", "canonical"), [
    ("en", "en"),
    ("EN-us", "en-US"),
    ("pt-br", "pt-BR"),
    ("zh-hant-tw", "zh-Hant-TW"),
    ("sr-latn", "sr-Latn"),
    ("es-419", "es-419"),
    ("de-ch-1996", "de-CH-1996"),
    ("en-US-x-Twain", "en-US-x-twain"),
    ("de-DE-u-co-phonebk", "de-DE-u-co-phonebk"),
])
def test_locales_are_bcp47_tags_in_canonical_case(raw: str, canonical: str) -> None:
    assert parse_locale(raw) == canonical


@pytest.mark.parametrize("raw", ["", "e", "en_US", "en-", "en--US", "123", "x-private", "en-US-u",
                                 "en-toolongsubtag", "de-DE-u-c", "en US", "fr-FR;q=0.8", "a" * 70])
def test_anything_but_a_language_tag_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"tag|subtag|extension|language"):
        parse_locale(raw)


@pytest.mark.parametrize(("locale", "config"), [
    ("en", "english"), ("en-GB", "english"), ("de-AT", "german"), ("fr", "french"), ("es-419", "spanish"),
    ("pt-BR", "portuguese"), ("nb", "norwegian"), ("ja", "simple"), ("zh-Hant-TW", "simple"),
])
def test_each_locale_is_searched_with_its_languages_stemmer_or_simple(locale: str, config: str) -> None:
    assert search_config(locale) == config


@pytest.mark.parametrize(("title", "slug"), [
    ("How to Reset Your Password?", "how-to-reset-your-password"),
    ("Café crème & Co.", "cafe-creme-co"),
    ("Как вернуть товар", "как-вернуть-товар"),
    ("  --Ünïcödé__snake_case--  ", "unicode-snake-case"),
    ("!!!", "article"),
])
def test_slugs_are_made_from_titles(title: str, slug: str) -> None:
    assert slugify(title) == slug
    assert is_slug(slug)


def test_a_long_titles_slug_is_cut_at_a_word() -> None:
    slug = slugify("word " * 100)
    assert len(slug) <= MAX_SLUG
    assert slug.endswith("word")


@pytest.mark.parametrize("slug", ["Upper", "two--hyphens", "-lead", "trail-", "under_score", "sp ace", ""])
def test_what_is_not_a_slug(slug: str) -> None:
    assert not is_slug(slug)


def test_bodies_keep_their_formatting_and_lose_anything_that_runs() -> None:
    body = sanitised(
        '<h2>Steps</h2><p onclick="steal()">Open <a href="https://x.example/a">settings</a>'
        '<script>alert(1)</script></p><img src="x.png" onerror="steal()" alt="Screen">'
        '<a href="javascript:steal()">bad</a><style>p{}</style>'
    )
    assert "<h2>Steps</h2>" in body
    assert '<a href="https://x.example/a" rel="noopener noreferrer">settings</a>' in body
    for dangerous in ("script", "onclick", "onerror", "javascript:", "style", "alert"):
        assert dangerous not in body


def test_the_searched_text_is_the_visible_text_one_line_per_block() -> None:
    body = sanitised("<h1>Title</h1><p>One &amp; <b>two</b></p><ul><li>three</li><li>four</li></ul>"
                     f'<p>{MARK_START}x{MARK_END}</p><img src="a.png" alt="diagram">')
    assert text_of(body) == "Title\nOne & two\nthree\nfour\nx\ndiagram"


def test_snippets_are_escaped_text_with_the_matches_marked() -> None:
    snippet = f"type {MARK_START}<script>{MARK_END} & run"
    assert highlighted(snippet) == "type <mark>&lt;script&gt;</mark> &amp; run"


def test_a_tickets_significant_words_skip_reply_prefixes_short_words_and_numbers() -> None:
    words = significant_words("Re: AW: Fwd: Refund for my broken gear, order 12345 — refund OR gear?")
    assert words == ["refund", "for", "broken", "gear", "order"]
    assert any_of(words) == "refund or for or broken or gear or order"
    assert significant_words("Re: ok") == []
    assert len(significant_words(" ".join(f"word{n}x" for n in range(50)))) == MAX_SUGGESTION_WORDS


@pytest.mark.parametrize(("status", "action", "after"), [
    (ArticleStatus.DRAFT, "published", ArticleStatus.PUBLISHED),
    (ArticleStatus.ARCHIVED, "published", ArticleStatus.PUBLISHED),
    (ArticleStatus.PUBLISHED, "unpublished", ArticleStatus.DRAFT),
    (ArticleStatus.DRAFT, "archived", ArticleStatus.ARCHIVED),
    (ArticleStatus.PUBLISHED, "archived", ArticleStatus.ARCHIVED),
])
def test_allowed_status_changes(status: ArticleStatus, action: str, after: ArticleStatus) -> None:
    assert after_action(status, action) is after


@pytest.mark.parametrize(("status", "action"), [
    (ArticleStatus.PUBLISHED, "published"),
    (ArticleStatus.DRAFT, "unpublished"),
    (ArticleStatus.ARCHIVED, "unpublished"),
    (ArticleStatus.ARCHIVED, "archived"),
])
def test_other_status_changes_are_refused(status: ArticleStatus, action: str) -> None:
    with pytest.raises(InvalidTransition, match=f"a {status.value} article cannot be {action}"):
        after_action(status, action)


def test_a_new_article_names_every_invalid_field() -> None:
    with pytest.raises(InvalidFields) as error:
        article_values({"title": "  ", "locale": "en_US", "slug": "Not A Slug"}, creating=True)
    assert [e.field for e in error.value.errors] == ["title", "locale", "slug"]


def test_a_new_article_gets_a_canonical_locale_a_slug_and_a_clean_body() -> None:
    values = article_values({"title": " Export   your data ", "locale": "en-gb",
                             "body": "<p>Click <b>Export</b><script>x()</script></p>"}, creating=True)
    assert values["title"] == "Export your data"
    assert values["locale"] == "en-GB"
    assert values["slug"] == "export-your-data"
    assert values["body"] == "<p>Click <b>Export</b></p>"
    assert values["body_text"] == "Click Export"


def test_an_update_changes_only_what_it_names() -> None:
    assert article_values({"title": "New"}, creating=False) == {"title": "New"}
    assert category_values({"position": 3}, creating=False) == {"position": 3}


def test_a_category_needs_a_name_and_gets_a_slug() -> None:
    assert category_values({"name": "Billing & Payments"}, creating=True) == {
        "name": "Billing & Payments", "slug": "billing-payments", "position": 0}
    with pytest.raises(InvalidFields) as error:
        category_values({"name": ""}, creating=True)
    assert error.value.errors[0].field == "name"


def test_an_article_without_a_body_cannot_be_published() -> None:
    now = datetime.now(UTC)
    article = Article(id=uuid4(), workspace_id="ws", group_id=uuid4(), category_id=None, locale="en",
                      slug="a", title="A", body="<p> </p>", status=ArticleStatus.DRAFT, version=1,
                      author="me", updated_by="me", created_at=now, updated_at=now, published_at=None)
    with pytest.raises(InvalidFields, match="body"):
        publishable(article)
