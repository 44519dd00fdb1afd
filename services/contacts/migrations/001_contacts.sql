CREATE TABLE contacts (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz
);
CREATE INDEX contacts_workspace_created ON contacts (workspace_id, created_at DESC, id DESC);

-- An identity belongs to at most one contact per workspace: the primary key says so.
-- The foreign key is checked at commit, so a resolver can claim the identity first
-- and create its contact after, in one transaction, without racing another resolver.
CREATE TABLE identities (
    workspace_id  text        NOT NULL,
    kind          text        NOT NULL,
    value         text        NOT NULL,
    contact_id    uuid        NOT NULL REFERENCES contacts (id) DEFERRABLE INITIALLY DEFERRED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, kind, value)
);
CREATE INDEX identities_contact ON identities (contact_id);

-- The 360 timeline, projected from crm.interactions.v1.
CREATE TABLE timeline_entries (
    workspace_id    text        NOT NULL,
    entry_id        text        NOT NULL,
    contact_id      uuid        NOT NULL,
    kind            text        NOT NULL,
    channel         text        NOT NULL,
    direction       text        NOT NULL,
    summary         text        NOT NULL DEFAULT '',
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, entry_id)
);
CREATE INDEX timeline_by_contact ON timeline_entries (workspace_id, contact_id, occurred_at DESC, entry_id DESC);
