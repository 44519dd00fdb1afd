-- Outbox events that can never be published (not a valid event, or larger than the broker
-- takes), set aside by the relay with the reason so that they never block the events behind
-- them. An operator reads, fixes or drops them.
CREATE TABLE IF NOT EXISTS outbox_dead (
    id          bigint      PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    headers     jsonb       NOT NULL,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    reason      text        NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now()
);
