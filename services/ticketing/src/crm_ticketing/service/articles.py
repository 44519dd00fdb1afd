"""The knowledge base's use cases: categories, articles and their lifecycle, search, the
public help centre's reads, and the articles suggested for a ticket."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crm.ticketing.v1 import events_pb2
from crm_ticketing.domain import events
from crm_ticketing.domain.articles import (
    ARTICLE_PUBLISHED,
    ARTICLE_UNPUBLISHED,
    Article,
    ArticleHit,
    ArticleQuery,
    ArticleStatus,
    Category,
    Conflict,
    Translation,
    after_action,
    any_of,
    article_values,
    category_values,
    highlighted,
    publishable,
    significant_words,
    text_of,
)
from crm_ticketing.domain.errors import FieldError, InvalidFields, NotFound, VersionMismatch
from crm_ticketing.store.articles import ArticlesStore
from crm_ticketing.store.tickets import TicketsStore
from crmkit.ids import uuid7
from crmkit.kafka import Event, make_event
from crmkit.pagination import InvalidCursor, decode_cursor, encode_cursor
from crmkit.postgres import PgDatabase
from crmkit.topics import TICKETS

MAX_PAGE = 100
MAX_SUGGESTIONS = 20


@dataclass(frozen=True)
class ArticlePage:
    items: list[ArticleHit]
    next_cursor: str | None


@dataclass(frozen=True)
class ArticleView:
    """One article with every locale it is written in (itself included)."""

    article: Article
    translations: list[Translation]


class KnowledgeBase:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    # --- categories -----------------------------------------------------------------------------

    async def create_category(self, workspace_id: str, raw: dict[str, Any]) -> Category:
        values = category_values(raw, creating=True)
        async with self.db.unit_of_work() as uow:
            store = ArticlesStore(uow.conn)
            await self._check_category(store, workspace_id, values.get("parent_id"), "parent_id")
            category_id = uuid7()
            await store.insert_category(workspace_id, category_id, values)
            category = await store.category(workspace_id, category_id)
        assert category is not None
        return category

    async def update_category(self, workspace_id: str, category_id: UUID, raw: dict[str, Any],
                              expected_version: int) -> Category:
        values = category_values(raw, creating=False)
        async with self.db.unit_of_work() as uow:
            store = ArticlesStore(uow.conn)
            before = await self._locked_category(store, workspace_id, category_id, expected_version)
            parent = values.get("parent_id")
            if parent is not None:
                await store.lock_tree(workspace_id)
                await self._check_category(store, workspace_id, parent, "parent_id")
                if await store.is_within(workspace_id, parent, category_id):
                    raise InvalidFields([FieldError("parent_id", "a category cannot be inside itself")])
            await store.update_category(replace(before, **values))
            after = await store.category(workspace_id, category_id)
        assert after is not None
        return after

    async def delete_category(self, workspace_id: str, category_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            store = ArticlesStore(uow.conn)
            await self._locked_category(store, workspace_id, category_id, expected_version)
            if await store.category_in_use(workspace_id, category_id):
                raise Conflict("the category has subcategories or articles; move or delete them first")
            await store.delete_category(workspace_id, category_id)

    async def category(self, workspace_id: str, category_id: UUID) -> Category | None:
        async with self.db.pool.acquire() as conn:
            return await ArticlesStore(conn).category(workspace_id, category_id)

    async def categories(self, workspace_id: str, cursor: str | None, limit: int
                         ) -> tuple[list[Category], str | None]:
        after = None
        if cursor:
            position, name, category_id = decode_cursor("kb-categories", cursor, 3)
            after = (_int(position), str(name), _uuid(category_id))
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            rows = await ArticlesStore(conn).categories(workspace_id, after, limit + 1)
        items = rows[:limit]
        if len(rows) <= limit:
            return items, None
        last = items[-1]
        return items, encode_cursor("kb-categories", [last.position, last.name, str(last.id)])

    @staticmethod
    async def _locked_category(store: ArticlesStore, workspace_id: str, category_id: UUID,
                               expected_version: int) -> Category:
        category = await store.category(workspace_id, category_id, for_update=True)
        if category is None:
            raise NotFound("category")
        if category.version != expected_version:
            raise VersionMismatch(category.version)
        return category

    # --- articles -------------------------------------------------------------------------------

    async def create_article(self, workspace_id: str, actor: str, raw: dict[str, Any]) -> Article:
        """A draft; with ``translation_of``, in that article's group (one article per locale)."""
        values = article_values(raw, creating=True)
        async with self.db.unit_of_work() as uow:
            store = ArticlesStore(uow.conn)
            await self._check_category(store, workspace_id, values.get("category_id"))
            group_id = uuid7()
            if values.get("translation_of") is not None:
                original = await store.article(workspace_id, values["translation_of"])
                if original is None:
                    raise InvalidFields([FieldError("translation_of", "no such article in this workspace")])
                group_id = original.group_id
            now = datetime.now(UTC)
            article = Article(
                id=uuid7(), workspace_id=workspace_id, group_id=group_id,
                category_id=values.get("category_id"), locale=values["locale"], slug=values["slug"],
                title=values["title"], body=values["body"], status=ArticleStatus.DRAFT, version=1,
                author=actor, updated_by=actor, created_at=now, updated_at=now, published_at=None,
            )
            await store.insert_article(article, values["body_text"])
            created = await store.article(workspace_id, article.id)
        assert created is not None
        return created

    async def update_article(self, workspace_id: str, actor: str, article_id: UUID, raw: dict[str, Any],
                             expected_version: int) -> Article:
        values = article_values(raw, creating=False)
        values.pop("translation_of", None)  # a translation stays in its group
        async with self.db.unit_of_work() as uow:
            store = ArticlesStore(uow.conn)
            before = await self._locked_article(store, workspace_id, article_id, expected_version)
            if "category_id" in values:
                await self._check_category(store, workspace_id, values["category_id"])
            body_text = values.pop("body_text", None)
            changed = replace(before, updated_by=actor, **values)
            if changed.status is ArticleStatus.PUBLISHED:
                publishable(changed)
            await store.update_article(changed, body_text if body_text is not None else text_of(changed.body))
            after = await store.article(workspace_id, article_id)
        assert after is not None
        return after

    async def change_status(self, workspace_id: str, actor: str, article_id: UUID, action: str,
                            expected_version: int) -> Article:
        """``action``: published, unpublished (back to draft) or archived. Leaving or entering
        the public knowledge base is published as an event in the same transaction."""
        async with self.db.unit_of_work() as uow:
            store = ArticlesStore(uow.conn)
            before = await self._locked_article(store, workspace_id, article_id, expected_version)
            status = after_action(before.status, action)
            changed = replace(before, status=status, updated_by=actor)
            if status is ArticleStatus.PUBLISHED:
                publishable(changed)
                changed = replace(changed, published_at=datetime.now(UTC))
            await store.update_article(changed, text_of(changed.body))
            after = await store.article(workspace_id, article_id)
            assert after is not None
            if status is ArticleStatus.PUBLISHED:
                uow.add(_article_event(ARTICLE_PUBLISHED, after))
            elif before.status is ArticleStatus.PUBLISHED:
                uow.add(_article_event(ARTICLE_UNPUBLISHED, after))
        return after

    async def delete_article(self, workspace_id: str, article_id: UUID, expected_version: int) -> None:
        async with self.db.unit_of_work() as uow:
            store = ArticlesStore(uow.conn)
            before = await self._locked_article(store, workspace_id, article_id, expected_version)
            await store.delete_article(workspace_id, article_id)
            if before.status is ArticleStatus.PUBLISHED:
                uow.add(_article_event(ARTICLE_UNPUBLISHED, before, deleted=True))

    async def article(self, workspace_id: str, article_id: UUID) -> ArticleView | None:
        async with self.db.pool.acquire() as conn:
            store = ArticlesStore(conn)
            article = await store.article(workspace_id, article_id)
            if article is None:
                return None
            return ArticleView(article, await store.translations(workspace_id, article.group_id))

    async def find(self, workspace_id: str, query: ArticleQuery, cursor: str | None, limit: int
                   ) -> ArticlePage:
        """With text: matches, best first, with snippets. Without: articles by title."""
        limit = max(1, min(limit, MAX_PAGE))
        async with self.db.pool.acquire() as conn:
            store = ArticlesStore(conn)
            if query.text:
                after_rank = None
                if cursor:
                    score, article_id = decode_cursor("kb-rank", cursor, 2)
                    after_rank = (_float(score), _uuid(article_id))
                hits = await store.search(workspace_id, query, after_rank, limit + 1)
            else:
                after_title = None
                if cursor:
                    title, article_id = decode_cursor("kb-title", cursor, 2)
                    after_title = (str(title), _uuid(article_id))
                hits = [ArticleHit(a) for a in await store.by_title(workspace_id, query, after_title,
                                                                    limit + 1)]
        items = [_highlighted(hit) for hit in hits[:limit]]
        if len(hits) <= limit:
            return ArticlePage(items, None)
        last = items[-1]
        if query.text:
            return ArticlePage(items, encode_cursor("kb-rank", [last.score, str(last.article.id)]))
        return ArticlePage(items, encode_cursor("kb-title", [last.article.title, str(last.article.id)]))

    async def public_find(self, workspace_id: str, text: str | None, locale: str | None,
                          cursor: str | None, limit: int) -> ArticlePage:
        """What the public help centre lists and finds: published articles only."""
        query = ArticleQuery(text=text, locale=locale, status=ArticleStatus.PUBLISHED)
        return await self.find(workspace_id, query, cursor, limit)

    async def public_article(self, workspace_id: str, slug: str, locale: str | None) -> ArticleView | None:
        """A published article by slug, and its published translations; None for anything else."""
        async with self.db.pool.acquire() as conn:
            store = ArticlesStore(conn)
            article = await store.published_by_slug(workspace_id, slug, locale)
            if article is None:
                return None
            translations = await store.translations(workspace_id, article.group_id, published_only=True)
            return ArticleView(article, translations)

    async def suggestions(self, workspace_id: str, ticket_id: UUID, locale: str | None, limit: int
                          ) -> list[ArticleHit]:
        """Published articles that answer the ticket, best first: any significant word of its
        subject, then of the customer's first message, each article read in its own locale's
        configuration. NotFound for a ticket outside the workspace."""
        async with self.db.pool.acquire() as conn:
            tickets = TicketsStore(conn)
            ticket = await tickets.get(workspace_id, ticket_id)
            if ticket is None:
                raise NotFound("ticket")
            first = await tickets.first_inbound_text(workspace_id, ticket_id)
            words = significant_words(f"{ticket.subject}\n{first}")
            if not words:
                return []
            hits = await ArticlesStore(conn).matching_any(
                workspace_id, any_of(words), locale, max(1, min(limit, MAX_SUGGESTIONS)))
        return [_highlighted(hit) for hit in hits]

    @staticmethod
    async def _check_category(store: ArticlesStore, workspace_id: str, category_id: UUID | None,
                              field: str = "category_id") -> None:
        if category_id is not None and await store.category(workspace_id, category_id) is None:
            raise InvalidFields([FieldError(field, "no such category in this workspace")])

    @staticmethod
    async def _locked_article(store: ArticlesStore, workspace_id: str, article_id: UUID,
                              expected_version: int) -> Article:
        article = await store.article(workspace_id, article_id, for_update=True)
        if article is None:
            raise NotFound("article")
        if article.version != expected_version:
            raise VersionMismatch(article.version)
        return article


def _highlighted(hit: ArticleHit) -> ArticleHit:
    return hit if hit.snippet is None else replace(hit, snippet=highlighted(hit.snippet))


def _article_event(event_type: str, article: Article, *, deleted: bool = False) -> Event:
    message = events_pb2.KbArticle(
        id=str(article.id), workspace_id=article.workspace_id, group_id=str(article.group_id),
        category_id=str(article.category_id or ""), locale=article.locale, slug=article.slug,
        title=article.title, status=f"ARTICLE_STATUS_{article.status.name}", version=article.version,
    )
    if article.published_at is not None:
        message.published_at.FromDatetime(article.published_at)
    payload = (events_pb2.ArticlePublished(article=message) if event_type == ARTICLE_PUBLISHED
               else events_pb2.ArticleUnpublished(article=message, deleted=deleted))
    return make_event(topic=TICKETS, type=event_type, source=events.SOURCE, workspace=article.workspace_id,
                      subject=str(article.id), payload=payload)


def _uuid(value: object) -> UUID:
    try:
        return UUID(str(value))
    except ValueError as exc:
        raise InvalidCursor() from exc


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCursor()
    return value


def _float(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidCursor()
    return float(value)
