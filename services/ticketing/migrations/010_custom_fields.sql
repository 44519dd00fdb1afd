-- Custom fields of tickets: definitions per workspace (the rules are crmkit.fields'), values
-- as JSON on the ticket keyed by the field's key, so defining a field changes no table.
CREATE TABLE ticket_field_definitions (
    workspace_id  text        NOT NULL,
    key           text        NOT NULL,
    label         text        NOT NULL,
    type          text        NOT NULL,
    options       text[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, key)
);

ALTER TABLE tickets ADD COLUMN custom_fields jsonb NOT NULL DEFAULT '{}';
