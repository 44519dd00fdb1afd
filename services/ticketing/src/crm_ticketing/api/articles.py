"""The knowledge base's REST API: agents' CRUD and search under /v1/kb, the articles suggested
for a ticket, and the public help centre's reads under /v1/public/kb (no credentials)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_ticketing.domain.articles import (
    Article,
    ArticleHit,
    ArticleQuery,
    ArticleStatus,
    Category,
    Translation,
    parse_locale,
)
from crm_ticketing.service.articles import MAX_PAGE, MAX_SUGGESTIONS, ArticlePage, KnowledgeBase
from crm_ticketing.settings import Settings
from crmkit.auth import Principal, require
from crmkit.etags import etag, expected_version
from crmkit.problems import NotFound as NotFoundProblem
from crmkit.problems import Problem
from crmkit.ratelimit import RateLimiter
from crmkit.web import state

router = APIRouter(prefix="/v1", tags=["knowledge base"])

Reader = Annotated[Principal, Depends(require("tickets:read"))]
Writer = Annotated[Principal, Depends(require("kb:write"))]
Kb = Annotated[KnowledgeBase, Depends(state("knowledge_base", KnowledgeBase))]
IfMatch = Annotated[str | None, Header(max_length=100)]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Locale = Annotated[str | None, Query(max_length=64, description="A BCP 47 language tag: en, pt-BR")]
Text = Annotated[str | None, Query(max_length=500, description='Words, "a phrase", or, -not')]


# --- schemas --------------------------------------------------------------------------------

class CategoryIn(BaseModel):
    """A category write: only the fields sent are set (POST) or changed (PATCH)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    slug: str | None = Field(default=None, max_length=120, description="Made from the name when not sent")
    parent_id: UUID | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)


class ArticleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=300)
    locale: str | None = Field(default=None, max_length=64, description="A BCP 47 language tag")
    slug: str | None = Field(default=None, max_length=120,
                             description="Unique per locale; made from the title when not sent")
    body: str | None = Field(default=None, max_length=500_000,
                             description="HTML; sanitised (allowed tags and attributes only) when stored")
    category_id: UUID | None = None


class ArticleCreate(ArticleUpdate):
    translation_of: UUID | None = Field(default=None,
                                        description="The article this one translates into its locale")


class CategoryOut(BaseModel):
    id: UUID
    name: str
    slug: str
    parent_id: UUID | None
    position: int
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, category: Category) -> CategoryOut:
        return cls(id=category.id, name=category.name, slug=category.slug, parent_id=category.parent_id,
                   position=category.position, version=category.version, created_at=category.created_at,
                   updated_at=category.updated_at)


class CategoryPageOut(BaseModel):
    items: list[CategoryOut]
    next_cursor: str | None


class TranslationOut(BaseModel):
    id: UUID
    locale: str
    slug: str
    status: ArticleStatus


class ArticleOut(BaseModel):
    id: UUID
    group_id: UUID
    category_id: UUID | None
    locale: str
    slug: str
    title: str
    body: str
    status: ArticleStatus
    version: int
    author: str
    updated_by: str
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    translations: list[TranslationOut] | None = Field(
        default=None, description="Every locale of the article (itself too); on GET only")

    @classmethod
    def of(cls, article: Article, translations: list[Translation] | None = None) -> ArticleOut:
        return cls(
            id=article.id, group_id=article.group_id, category_id=article.category_id, locale=article.locale,
            slug=article.slug, title=article.title, body=article.body, status=article.status,
            version=article.version, author=article.author, updated_by=article.updated_by,
            created_at=article.created_at, updated_at=article.updated_at, published_at=article.published_at,
            translations=None if translations is None else [
                TranslationOut(id=t.id, locale=t.locale, slug=t.slug, status=t.status) for t in translations],
        )


class ArticleSummaryOut(BaseModel):
    id: UUID
    category_id: UUID | None
    locale: str
    slug: str
    title: str
    status: ArticleStatus
    version: int
    updated_at: datetime
    published_at: datetime | None
    score: float | None = Field(description="The rank of a search's match (higher is better)")
    snippet: str | None = Field(description="HTML: the body's text around the matches, escaped, "
                                            "the matches in <mark>")

    @classmethod
    def of(cls, hit: ArticleHit) -> ArticleSummaryOut:
        a = hit.article
        return cls(id=a.id, category_id=a.category_id, locale=a.locale, slug=a.slug, title=a.title,
                   status=a.status, version=a.version, updated_at=a.updated_at, published_at=a.published_at,
                   score=hit.score, snippet=hit.snippet)


class ArticlePageOut(BaseModel):
    items: list[ArticleSummaryOut]
    next_cursor: str | None


class SuggestionsOut(BaseModel):
    items: list[ArticleSummaryOut]


class PublicTranslationOut(BaseModel):
    locale: str
    slug: str


class PublicArticleOut(BaseModel):
    slug: str
    locale: str
    title: str
    body: str = Field(description="Sanitised HTML")
    category_id: UUID | None
    published_at: datetime | None
    updated_at: datetime
    translations: list[PublicTranslationOut] = Field(description="Every published locale, itself too")


class PublicSummaryOut(BaseModel):
    slug: str
    locale: str
    title: str
    category_id: UUID | None
    published_at: datetime | None
    score: float | None
    snippet: str | None


class PublicPageOut(BaseModel):
    items: list[PublicSummaryOut]
    next_cursor: str | None


# --- categories -----------------------------------------------------------------------------

@router.post("/kb/categories", status_code=201, response_model=CategoryOut)
async def create_category(body: CategoryIn, caller: Writer, kb: Kb, response: Response) -> CategoryOut:
    category = await kb.create_category(caller.workspace_id, body.model_dump(exclude_unset=True))
    response.headers["ETag"] = etag(category.version)
    response.headers["Location"] = f"/v1/kb/categories/{category.id}"
    return CategoryOut.of(category)


@router.get("/kb/categories", response_model=CategoryPageOut)
async def list_categories(caller: Reader, kb: Kb, cursor: Cursor = None,
                          limit: Limit = 50) -> CategoryPageOut:
    items, next_cursor = await kb.categories(caller.workspace_id, cursor, limit)
    return CategoryPageOut(items=[CategoryOut.of(c) for c in items], next_cursor=next_cursor)


@router.get("/kb/categories/{category_id}", response_model=CategoryOut)
async def get_category(category_id: UUID, caller: Reader, kb: Kb, response: Response) -> CategoryOut:
    category = await kb.category(caller.workspace_id, category_id)
    if category is None:
        raise NotFoundProblem("category")
    response.headers["ETag"] = etag(category.version)
    return CategoryOut.of(category)


@router.patch("/kb/categories/{category_id}", response_model=CategoryOut)
async def update_category(category_id: UUID, body: CategoryIn, caller: Writer, kb: Kb, response: Response,
                          if_match: IfMatch = None) -> CategoryOut:
    category = await kb.update_category(caller.workspace_id, category_id, body.model_dump(exclude_unset=True),
                                        expected_version(if_match))
    response.headers["ETag"] = etag(category.version)
    return CategoryOut.of(category)


@router.delete("/kb/categories/{category_id}", status_code=204,
               responses={409: {"description": "The category has subcategories or articles"}})
async def delete_category(category_id: UUID, caller: Writer, kb: Kb, if_match: IfMatch = None) -> None:
    await kb.delete_category(caller.workspace_id, category_id, expected_version(if_match))


# --- articles -------------------------------------------------------------------------------

@router.post("/kb/articles", status_code=201, response_model=ArticleOut,
             responses={409: {"description": "The slug is taken in this locale, or the translation exists"}})
async def create_article(body: ArticleCreate, caller: Writer, kb: Kb, response: Response) -> ArticleOut:
    article = await kb.create_article(caller.workspace_id, caller.subject,
                                      body.model_dump(exclude_unset=True))
    response.headers["ETag"] = etag(article.version)
    response.headers["Location"] = f"/v1/kb/articles/{article.id}"
    return ArticleOut.of(article)


@router.get("/kb/articles", response_model=ArticlePageOut)
async def find_articles(caller: Reader, kb: Kb, q: Text = None, locale: Locale = None,
                        status: ArticleStatus | None = None, category: UUID | None = None,
                        cursor: Cursor = None, limit: Limit = 50) -> ArticlePageOut:
    """With ``q``: the matching articles, best first, each with its score and a snippet.
    Without: articles by title. ``locale`` also chooses how ``q`` is stemmed."""
    query = ArticleQuery(text=q or None, locale=_locale(locale), status=status, category_id=category)
    page = await kb.find(caller.workspace_id, query, cursor, limit)
    return ArticlePageOut(items=[ArticleSummaryOut.of(h) for h in page.items], next_cursor=page.next_cursor)


@router.get("/kb/articles/{article_id}", response_model=ArticleOut)
async def get_article(article_id: UUID, caller: Reader, kb: Kb, response: Response) -> ArticleOut:
    view = await kb.article(caller.workspace_id, article_id)
    if view is None:
        raise NotFoundProblem("article")
    response.headers["ETag"] = etag(view.article.version)
    return ArticleOut.of(view.article, view.translations)


@router.patch("/kb/articles/{article_id}", response_model=ArticleOut)
async def update_article(article_id: UUID, body: ArticleUpdate, caller: Writer, kb: Kb, response: Response,
                         if_match: IfMatch = None) -> ArticleOut:
    article = await kb.update_article(caller.workspace_id, caller.subject, article_id,
                                      body.model_dump(exclude_unset=True), expected_version(if_match))
    response.headers["ETag"] = etag(article.version)
    return ArticleOut.of(article)


@router.delete("/kb/articles/{article_id}", status_code=204)
async def delete_article(article_id: UUID, caller: Writer, kb: Kb, if_match: IfMatch = None) -> None:
    await kb.delete_article(caller.workspace_id, article_id, expected_version(if_match))


_ACTIONS = {"publish": "published", "unpublish": "unpublished", "archive": "archived"}


@router.post("/kb/articles/{article_id}/{action}", response_model=ArticleOut,
             responses={422: {"description": "Not from the article's status, or publishing without a body"}})
async def change_article_status(article_id: UUID, action: Literal["publish", "unpublish", "archive"],
                                caller: Writer, kb: Kb, response: Response,
                                if_match: IfMatch = None) -> ArticleOut:
    """publish: draft or archived -> published; unpublish: published -> draft; archive: draft
    or published -> archived."""
    article = await kb.change_status(caller.workspace_id, caller.subject, article_id, _ACTIONS[action],
                                     expected_version(if_match))
    response.headers["ETag"] = etag(article.version)
    return ArticleOut.of(article)


@router.get("/tickets/{ticket_id}/suggested-articles", response_model=SuggestionsOut)
async def suggested_articles(ticket_id: UUID, caller: Reader, kb: Kb, locale: Locale = None,
                             limit: Annotated[int, Query(ge=1, le=MAX_SUGGESTIONS)] = 5) -> SuggestionsOut:
    """Published articles matching any significant word of the ticket's subject, best first."""
    hits = await kb.suggestions(caller.workspace_id, ticket_id, _locale(locale), limit)
    return SuggestionsOut(items=[ArticleSummaryOut.of(h) for h in hits])


# --- the public help centre -----------------------------------------------------------------

Limiter = Annotated[RateLimiter, Depends(state("kb_public_limiter", RateLimiter))]
AppSettings = Annotated[Settings, Depends(state("settings", Settings))]


def _within_rate(request: Request, limiter: Limiter) -> None:
    address = request.client.host if request.client else "unknown"
    limiter.check(address, "too many knowledge base requests from this address")


public_router = APIRouter(prefix="/v1/public/kb/{workspace}", tags=["knowledge base (public)"],
                          dependencies=[Depends(_within_rate)],
                          responses={429: {"description": "Too many requests from this address"}})
Workspace = Annotated[str, Path(min_length=1, max_length=200)]


@public_router.get("/articles", response_model=PublicPageOut)
async def public_articles(workspace: Workspace, kb: Kb, request: Request, settings: AppSettings,
                          q: Text = None, locale: Locale = None, cursor: Cursor = None,
                          limit: Limit = 20) -> Response:
    """Published articles: with ``q`` the matches, best first, with snippets; else by title."""
    page: ArticlePage = await kb.public_find(workspace, q or None, _locale(locale), cursor, limit)
    body = PublicPageOut(next_cursor=page.next_cursor, items=[
        PublicSummaryOut(slug=h.article.slug, locale=h.article.locale, title=h.article.title,
                         category_id=h.article.category_id, published_at=h.article.published_at,
                         score=h.score, snippet=h.snippet) for h in page.items])
    return _cacheable(body, request, settings)


@public_router.get("/articles/{slug}", response_model=PublicArticleOut,
                   responses={304: {"description": "Not modified (If-None-Match)"}})
async def public_article(workspace: Workspace, slug: Annotated[str, Path(max_length=120)], kb: Kb,
                         request: Request, settings: AppSettings, locale: Locale = None) -> Response:
    """A published article by its slug (in ``locale``, else the first published under it);
    404 for drafts, archived and unknown articles alike."""
    view = await kb.public_article(workspace, slug, _locale(locale))
    if view is None:
        raise NotFoundProblem("article")
    a = view.article
    body = PublicArticleOut(
        slug=a.slug, locale=a.locale, title=a.title, body=a.body, category_id=a.category_id,
        published_at=a.published_at, updated_at=a.updated_at,
        translations=[PublicTranslationOut(locale=t.locale, slug=t.slug) for t in view.translations])
    return _cacheable(body, request, settings)


def _cacheable(body: BaseModel, request: Request, settings: Settings) -> Response:
    """The JSON with a content hash as its ETag (a 304 when If-None-Match names it), public
    caching for a while, and readable from any origin (it is public)."""
    content = body.model_dump_json().encode()
    tag = f'"{hashlib.sha256(content).hexdigest()[:32]}"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={settings.public_kb_max_age_seconds}",
               "Access-Control-Allow-Origin": "*"}
    seen = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
    if tag in seen or "*" in seen:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type="application/json", headers=headers)


def _locale(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return parse_locale(raw)
    except ValueError as exc:
        raise Problem(422, "validation", "The request is not valid",
                      errors=[{"field": "locale", "message": str(exc)}]) from exc
