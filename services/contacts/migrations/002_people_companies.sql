-- People and companies, custom fields, tags, merges, consent, erasure, segments, imports, audit.
-- Emails and phones are identities (one table, one uniqueness rule); the contact row keeps the
-- rest. Custom field values live in jsonb, so defining or removing a field never alters a table.

ALTER TABLE contacts
    ADD COLUMN first_name      text        NOT NULL DEFAULT '',
    ADD COLUMN last_name       text        NOT NULL DEFAULT '',
    ADD COLUMN addresses       jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN owner_id        text,
    ADD COLUMN lifecycle_stage text        NOT NULL DEFAULT 'subscriber',
    ADD COLUMN tags            text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN custom          jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN version         integer     NOT NULL DEFAULT 1,
    -- Interactions seen on the stream: for segments on activity.
    ADD COLUMN interaction_count integer   NOT NULL DEFAULT 0,
    -- Names, identities and company names, kept by the application for full-text search.
    ADD COLUMN search_text     text        NOT NULL DEFAULT '',
    -- A merged contact is a redirect to its survivor; an erased one keeps only its id.
    ADD COLUMN merged_into     uuid,
    ADD COLUMN erased_at       timestamptz;

CREATE INDEX contacts_workspace_updated ON contacts (workspace_id, updated_at DESC, id DESC);
CREATE INDEX contacts_workspace_name ON contacts (workspace_id, lower(display_name), id);
CREATE INDEX contacts_workspace_stage ON contacts (workspace_id, lifecycle_stage, id);
CREATE INDEX contacts_workspace_owner ON contacts (workspace_id, owner_id, id);
CREATE INDEX contacts_workspace_seen ON contacts (workspace_id, last_seen_at DESC NULLS LAST, id DESC);
CREATE INDEX contacts_tags ON contacts USING gin (tags);
CREATE INDEX contacts_search ON contacts USING gin (to_tsvector('simple', search_text));
CREATE INDEX contacts_merged_into ON contacts (merged_into) WHERE merged_into IS NOT NULL;

ALTER TABLE identities ADD COLUMN verified boolean NOT NULL DEFAULT false;

CREATE TABLE companies (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    domains       text[]      NOT NULL DEFAULT '{}',
    industry      text,
    size          integer,
    custom        jsonb       NOT NULL DEFAULT '{}',
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX companies_workspace_name ON companies (workspace_id, lower(name), id);
CREATE INDEX companies_domains ON companies USING gin (domains);

CREATE TABLE contact_companies (
    workspace_id  text NOT NULL,
    contact_id    uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    company_id    uuid NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    role          text NOT NULL DEFAULT '',
    PRIMARY KEY (contact_id, company_id)
);
CREATE INDEX contact_companies_company ON contact_companies (company_id);

-- Custom fields per workspace and entity ('contact' or 'company').
CREATE TABLE field_definitions (
    workspace_id  text        NOT NULL,
    entity        text        NOT NULL,
    key           text        NOT NULL,
    label         text        NOT NULL,
    type          text        NOT NULL,
    options       text[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, entity, key)
);

-- Every write, with who did it and the record before and after.
CREATE TABLE audit_log (
    id            bigserial   PRIMARY KEY,
    workspace_id  text        NOT NULL,
    entity        text        NOT NULL,
    entity_id     text        NOT NULL,
    action        text        NOT NULL,
    actor         text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    before        jsonb,
    after         jsonb
);
CREATE INDEX audit_by_record ON audit_log (workspace_id, entity, entity_id, id DESC);

CREATE TABLE merges (
    workspace_id  text        NOT NULL,
    loser_id      uuid        PRIMARY KEY,
    survivor_id   uuid        NOT NULL,
    actor         text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    choices       jsonb       NOT NULL DEFAULT '{}',
    loser         jsonb       NOT NULL
);
CREATE INDEX merges_survivor ON merges (workspace_id, survivor_id);

-- Consent: the current state per channel and purpose, and every change with its proof.
CREATE TABLE consents (
    workspace_id  text        NOT NULL,
    contact_id    uuid        NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel       text        NOT NULL,
    purpose       text        NOT NULL,
    status        text        NOT NULL,
    source        text        NOT NULL,
    proof         text        NOT NULL DEFAULT '',
    at            timestamptz NOT NULL,
    PRIMARY KEY (contact_id, channel, purpose)
);
CREATE TABLE consent_history (
    id            bigserial   PRIMARY KEY,
    workspace_id  text        NOT NULL,
    contact_id    uuid        NOT NULL,
    channel       text        NOT NULL,
    purpose       text        NOT NULL,
    status        text        NOT NULL,
    source        text        NOT NULL,
    proof         text        NOT NULL DEFAULT '',
    at            timestamptz NOT NULL
);
CREATE INDEX consent_history_contact ON consent_history (workspace_id, contact_id, id DESC);

-- GDPR erasure: the request, and which services confirmed they erased their copies.
CREATE TABLE erasures (
    workspace_id  text        NOT NULL,
    contact_id    uuid        PRIMARY KEY,
    requested_by  text        NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    expected      text[]      NOT NULL
);
CREATE TABLE erasure_confirmations (
    contact_id    uuid        NOT NULL REFERENCES erasures (contact_id),
    service       text        NOT NULL,
    confirmed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, service)
);

-- Identities of erased people, only as salted hashes: they are never re-created.
CREATE TABLE workspace_salts (
    workspace_id  text  PRIMARY KEY,
    salt          bytea NOT NULL
);
CREATE TABLE suppressions (
    workspace_id  text        NOT NULL,
    kind          text        NOT NULL,
    hash          text        NOT NULL,
    reason        text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, kind, hash)
);

CREATE TABLE segments (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    name          text        NOT NULL,
    rules         jsonb       NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX segments_workspace ON segments (workspace_id, created_at);

CREATE TABLE segment_members (
    segment_id    uuid        NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    contact_id    uuid        NOT NULL,
    since         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, contact_id)
);
CREATE INDEX segment_members_contact ON segment_members (contact_id);

-- CSV imports: the upload is staged row by row, then applied in batches; each batch moves
-- the job's position in the same transaction, so a restart resumes without duplicates.
CREATE TABLE import_jobs (
    id            uuid        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    created_by    text        NOT NULL,
    status        text        NOT NULL,
    mapping       jsonb       NOT NULL,
    on_duplicate  text        NOT NULL,
    columns       text[]      NOT NULL DEFAULT '{}',
    total_rows    integer     NOT NULL DEFAULT 0,
    position      integer     NOT NULL DEFAULT 0,
    created       integer     NOT NULL DEFAULT 0,
    updated       integer     NOT NULL DEFAULT 0,
    skipped       integer     NOT NULL DEFAULT 0,
    failed        integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX import_jobs_workspace ON import_jobs (workspace_id, created_at DESC);
CREATE INDEX import_jobs_pending ON import_jobs (status) WHERE status IN ('queued', 'running');

CREATE TABLE import_rows (
    job_id        uuid     NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    row_no        integer  NOT NULL,
    data          text[]   NOT NULL,
    PRIMARY KEY (job_id, row_no)
);

CREATE TABLE import_errors (
    job_id        uuid     NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    row_no        integer  NOT NULL,
    field         text     NOT NULL,
    message       text     NOT NULL,
    PRIMARY KEY (job_id, row_no, field)
);
