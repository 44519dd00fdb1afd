"""The knowledge base's SQL. Every query is scoped by workspace.

Unique and foreign-key violations become the domain's errors here, so a use case never sees
asyncpg's; the transaction they happen in is rolled back by the unit of work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from crm_ticketing.domain.articles import (
    MARK_END,
    MARK_START,
    Article,
    ArticleHit,
    ArticleQuery,
    ArticleStatus,
    Category,
    Conflict,
    DuplicateSlug,
    Translation,
    search_config,
)
from crm_ticketing.domain.errors import FieldError, InvalidFields

_CATEGORY = "id, workspace_id, name, slug, parent_id, position, version, created_at, updated_at"
_ARTICLE_FIELDS = ("id", "workspace_id", "group_id", "category_id", "locale", "slug", "title", "body",
                   "status", "version", "author", "updated_by", "created_at", "updated_at", "published_at")
_ARTICLE = ", ".join(f"a.{name}" for name in _ARTICLE_FIELDS)
_ARTICLE_OF_R = ", ".join(f"r.{name}" for name in _ARTICLE_FIELDS)
_HEADLINE = (f'StartSel="{MARK_START}", StopSel="{MARK_END}", MaxWords=30, MinWords=12,'
             ' MaxFragments=2, FragmentDelimiter=" … "')

# The sort of a page: by rank (a search) or by title, then id.
CategoryKey = tuple[int, str, UUID]
TitleKey = tuple[str, UUID]
RankKey = tuple[float, UUID]


def _category(row: asyncpg.Record) -> Category:
    return Category(**dict(row))


def _article(row: asyncpg.Record) -> Article:
    fields = {name: row[name] for name in _ARTICLE_FIELDS}
    fields["status"] = ArticleStatus(fields["status"])
    return Article(**fields)


@asynccontextmanager
async def _constraints(slug: str = "", *, deleting: bool = False) -> AsyncIterator[None]:
    """asyncpg's integrity errors as the domain's. The use cases check first; these are the
    backstop when two writes race."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "kb_categories_slug":
            raise DuplicateSlug("category", slug) from exc
        if exc.constraint_name == "kb_articles_slug":
            raise DuplicateSlug("article in this locale", slug) from exc
        if exc.constraint_name == "kb_articles_translation":
            raise Conflict("the article already has a translation into this locale") from exc
        raise
    except asyncpg.ForeignKeyViolationError as exc:
        if deleting:
            raise Conflict("the category has subcategories or articles") from exc
        field = "category_id" if exc.constraint_name == "kb_articles_category" else "parent_id"
        raise InvalidFields([FieldError(field, "no such category in this workspace")]) from exc


class ArticlesStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- categories -----------------------------------------------------------------------------

    async def insert_category(self, workspace_id: str, category_id: UUID, values: dict[str, Any]) -> None:
        async with _constraints(values["slug"]):
            await self.conn.execute(
                "INSERT INTO kb_categories (id, workspace_id, name, slug, parent_id, position)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                category_id, workspace_id, values["name"], values["slug"], values.get("parent_id"),
                values["position"],
            )

    async def update_category(self, category: Category) -> None:
        async with _constraints(category.slug):
            await self.conn.execute(
                "UPDATE kb_categories SET name = $3, slug = $4, parent_id = $5, position = $6,"
                " version = version + 1, updated_at = now() WHERE workspace_id = $1 AND id = $2",
                category.workspace_id, category.id, category.name, category.slug, category.parent_id,
                category.position,
            )

    async def delete_category(self, workspace_id: str, category_id: UUID) -> None:
        async with _constraints(deleting=True):
            await self.conn.execute("DELETE FROM kb_categories WHERE workspace_id = $1 AND id = $2",
                                    workspace_id, category_id)

    async def category(self, workspace_id: str, category_id: UUID, *, for_update: bool = False
                       ) -> Category | None:
        row = await self.conn.fetchrow(
            f"SELECT {_CATEGORY} FROM kb_categories WHERE workspace_id = $1 AND id = $2"  # noqa: S608
            f"{' FOR UPDATE' if for_update else ''}",
            workspace_id, category_id,
        )
        return None if row is None else _category(row)

    async def category_in_use(self, workspace_id: str, category_id: UUID) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM kb_categories WHERE workspace_id = $1 AND parent_id = $2)"
            " OR EXISTS (SELECT 1 FROM kb_articles WHERE workspace_id = $1 AND category_id = $2)",
            workspace_id, category_id,
        ))

    async def lock_tree(self, workspace_id: str) -> None:
        """Until the transaction ends, no other move of a category in this workspace: two
        concurrent moves could otherwise each pass the check and make a cycle together."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                                f"kb-categories:{workspace_id}")

    async def is_within(self, workspace_id: str, category_id: UUID, ancestor_id: UUID) -> bool:
        """Whether ``category_id`` is ``ancestor_id`` or below it."""
        return bool(await self.conn.fetchval(
            "WITH RECURSIVE up (id, parent_id) AS ("
            "  SELECT id, parent_id FROM kb_categories WHERE workspace_id = $1 AND id = $2"
            "  UNION SELECT c.id, c.parent_id FROM kb_categories c JOIN up ON c.id = up.parent_id"
            "  WHERE c.workspace_id = $1)"
            " SELECT EXISTS (SELECT 1 FROM up WHERE id = $3)",
            workspace_id, category_id, ancestor_id,
        ))

    async def categories(self, workspace_id: str, after: CategoryKey | None, limit: int
                         ) -> list[Category]:
        """By position, then name, then id."""
        rows = await self.conn.fetch(
            f"SELECT {_CATEGORY} FROM kb_categories WHERE workspace_id = $1"  # noqa: S608
            " AND ($2::integer IS NULL OR (position, name, id) > ($2, $3::text, $4::uuid))"
            " ORDER BY position, name, id LIMIT $5",
            workspace_id, *(after or (None, None, None)), limit,
        )
        return [_category(r) for r in rows]

    # --- articles -------------------------------------------------------------------------------

    async def insert_article(self, article: Article, body_text: str) -> None:
        async with _constraints(article.slug):
            await self.conn.execute(
                "INSERT INTO kb_articles (id, workspace_id, group_id, category_id, locale, search_config,"
                " slug, title, body, body_text, status, author, updated_by)"
                " VALUES ($1, $2, $3, $4, $5, $6::regconfig, $7, $8, $9, $10, $11, $12, $12)",
                article.id, article.workspace_id, article.group_id, article.category_id, article.locale,
                search_config(article.locale), article.slug, article.title, article.body, body_text,
                article.status.value, article.author,
            )

    async def update_article(self, article: Article, body_text: str) -> None:
        """Writes every field the caller may change, the status and published_at too."""
        async with _constraints(article.slug):
            await self.conn.execute(
                "UPDATE kb_articles SET category_id = $3, locale = $4, search_config = $5::regconfig,"
                " slug = $6, title = $7, body = $8, body_text = $9, status = $10, updated_by = $11,"
                " published_at = $12, version = version + 1, updated_at = now()"
                " WHERE workspace_id = $1 AND id = $2",
                article.workspace_id, article.id, article.category_id, article.locale,
                search_config(article.locale), article.slug, article.title, article.body, body_text,
                article.status.value, article.updated_by, article.published_at,
            )

    async def delete_article(self, workspace_id: str, article_id: UUID) -> None:
        await self.conn.execute("DELETE FROM kb_articles WHERE workspace_id = $1 AND id = $2",
                                workspace_id, article_id)

    async def article(self, workspace_id: str, article_id: UUID, *, for_update: bool = False
                      ) -> Article | None:
        row = await self.conn.fetchrow(
            f"SELECT {_ARTICLE} FROM kb_articles a WHERE a.workspace_id = $1 AND a.id = $2"  # noqa: S608
            f"{' FOR UPDATE' if for_update else ''}",
            workspace_id, article_id,
        )
        return None if row is None else _article(row)

    async def published_by_slug(self, workspace_id: str, slug: str, locale: str | None) -> Article | None:
        """The published article with this slug; without a locale, the first published of them."""
        row = await self.conn.fetchrow(
            f"SELECT {_ARTICLE} FROM kb_articles a WHERE a.workspace_id = $1 AND a.slug = $2"  # noqa: S608
            " AND a.status = 'published' AND ($3::text IS NULL OR a.locale = $3)"
            " ORDER BY a.published_at, a.locale LIMIT 1",
            workspace_id, slug, locale,
        )
        return None if row is None else _article(row)

    async def translations(self, workspace_id: str, group_id: UUID, *, published_only: bool = False
                           ) -> list[Translation]:
        """Every article of the group (the asking one too), by locale."""
        rows = await self.conn.fetch(
            "SELECT id, locale, slug, status FROM kb_articles WHERE workspace_id = $1 AND group_id = $2"
            " AND (NOT $3 OR status = 'published') ORDER BY locale",
            workspace_id, group_id, published_only,
        )
        return [Translation(r["id"], r["locale"], r["slug"], ArticleStatus(r["status"])) for r in rows]

    async def by_title(self, workspace_id: str, query: ArticleQuery, after: TitleKey | None, limit: int
                       ) -> list[Article]:
        """Articles matching the query's filters, by title, then id."""
        conditions, args = _filters(workspace_id, query)
        if after is not None:
            args.extend(after)
            conditions.append(f"(a.title, a.id) > (${len(args) - 1}::text, ${len(args)}::uuid)")
        args.append(limit)
        rows = await self.conn.fetch(
            f"SELECT {_ARTICLE} FROM kb_articles a WHERE {' AND '.join(conditions)}"  # noqa: S608
            f" ORDER BY a.title, a.id LIMIT ${len(args)}",
            *args,
        )
        return [_article(r) for r in rows]

    async def search(self, workspace_id: str, query: ArticleQuery, after: RankKey | None, limit: int
                     ) -> list[ArticleHit]:
        """Articles matching ``query.text`` (websearch syntax) and the filters, best first:
        ts_rank over the weighted vector (a word in the title counts more than in the body),
        then id; each with a highlighted snippet of its body. The text is read with the
        locale's configuration when the query names a locale, else with each article's own."""
        conditions, args = _filters(workspace_id, query)
        args.append(query.text)
        if query.search_config:
            args.append(query.search_config)
            tsquery = f"websearch_to_tsquery(${len(args)}::regconfig, ${len(args) - 1})"
        else:
            tsquery = f"websearch_to_tsquery(a.search_config, ${len(args)})"
        conditions.append(f"a.search @@ {tsquery}")
        if after is not None:
            args.extend(after)
            conditions.append(f"(ts_rank(a.search, {tsquery}) < ${len(args) - 1}::real"
                              f" OR (ts_rank(a.search, {tsquery}) = ${len(args) - 1}::real"
                              f" AND a.id > ${len(args)}::uuid))")
        args.extend([limit, _HEADLINE])
        return await self._hits(
            f"SELECT {_ARTICLE}, a.body_text, a.search_config, {tsquery} AS q,"  # noqa: S608
            f" ts_rank(a.search, {tsquery}) AS score FROM kb_articles a"
            f" WHERE {' AND '.join(conditions)} ORDER BY score DESC, a.id LIMIT ${len(args) - 1}",
            args,
        )

    async def _hits(self, ranked: str, args: list[Any]) -> list[ArticleHit]:
        """The rows of ``ranked`` (which selects body_text, search_config, q and score, and
        takes the headline options as its last argument) with their snippets, made for the
        page's rows only."""
        rows = await self.conn.fetch(
            f"SELECT {_ARTICLE_OF_R}, r.score,"  # noqa: S608
            f" ts_headline(r.search_config, r.body_text, r.q, ${len(args)}) AS snippet"
            f" FROM ({ranked}) r ORDER BY r.score DESC, r.id",
            *args,
        )
        return [ArticleHit(_article(r), float(r["score"]), r["snippet"]) for r in rows]

    async def matching_any(self, workspace_id: str, websearch: str, locale: str | None, limit: int
                           ) -> list[ArticleHit]:
        """Published articles that match the websearch query (read with each article's own
        configuration), best first."""
        return await self._hits(
            f"SELECT {_ARTICLE}, a.body_text, a.search_config, q,"  # noqa: S608
            " ts_rank(a.search, q) AS score"
            " FROM kb_articles a CROSS JOIN LATERAL websearch_to_tsquery(a.search_config, $2) q"
            " WHERE a.workspace_id = $1 AND a.status = 'published' AND ($3::text IS NULL OR a.locale = $3)"
            " AND a.search @@ q ORDER BY score DESC, a.id LIMIT $4",
            [workspace_id, websearch, locale, limit, _HEADLINE],
        )


def _filters(workspace_id: str, query: ArticleQuery) -> tuple[list[str], list[Any]]:
    conditions = ["a.workspace_id = $1"]
    args: list[Any] = [workspace_id]
    status = query.status.value if query.status is not None else None
    for column, value in (("locale", query.locale), ("status", status), ("category_id", query.category_id)):
        if value is not None:
            args.append(value)
            conditions.append(f"a.{column} = ${len(args)}")
    return conditions, args
