-- The knowledge base: categories (a tree per workspace) and articles in locales.

CREATE TABLE kb_categories (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    slug          text        NOT NULL,
    parent_id     uuid,
    position      integer     NOT NULL DEFAULT 0,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kb_categories_workspace_id UNIQUE (workspace_id, id),
    CONSTRAINT kb_categories_slug UNIQUE (workspace_id, slug),
    -- A parent is a category of the same workspace.
    CONSTRAINT kb_categories_parent FOREIGN KEY (workspace_id, parent_id)
        REFERENCES kb_categories (workspace_id, id)
);
CREATE INDEX kb_categories_order ON kb_categories (workspace_id, position, name, id);
CREATE INDEX kb_categories_children ON kb_categories (workspace_id, parent_id);

-- One row per article and locale; the translations of one article share a group id.
-- The body is sanitised HTML; body_text its visible text, which is what is searched.
CREATE TABLE kb_articles (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    group_id      uuid        NOT NULL,
    category_id   uuid,
    locale        text        NOT NULL CHECK (locale ~ '^[a-z]{2,8}(-[A-Za-z0-9]{1,8})*$'),
    -- The locale's text search configuration ('english', 'german', ... else 'simple').
    search_config regconfig   NOT NULL,
    slug          text        NOT NULL,
    title         text        NOT NULL,
    body          text        NOT NULL DEFAULT '',
    body_text     text        NOT NULL DEFAULT '',
    status        text        NOT NULL DEFAULT 'draft'
                              CHECK (status IN ('draft', 'published', 'archived')),
    version       integer     NOT NULL DEFAULT 1,
    author        text        NOT NULL,
    updated_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    -- Kept by PostgreSQL in the statement that writes the row: title weighs A, body B.
    search        tsvector    GENERATED ALWAYS AS (
                      setweight(to_tsvector(search_config, title), 'A')
                      || setweight(to_tsvector(search_config, body_text), 'B')) STORED,
    CONSTRAINT kb_articles_slug UNIQUE (workspace_id, locale, slug),
    CONSTRAINT kb_articles_translation UNIQUE (workspace_id, group_id, locale),
    CONSTRAINT kb_articles_category FOREIGN KEY (workspace_id, category_id)
        REFERENCES kb_categories (workspace_id, id),
    CONSTRAINT kb_articles_published_at CHECK (status <> 'published' OR published_at IS NOT NULL)
);
CREATE INDEX kb_articles_search ON kb_articles USING gin (search);
CREATE INDEX kb_articles_by_title ON kb_articles (workspace_id, title, id);
CREATE INDEX kb_articles_by_category ON kb_articles (workspace_id, category_id);
