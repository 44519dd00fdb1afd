-- Contacts merged away, as a service that holds contact ids keeps them (crmkit.redirects):
-- what named the loser now names the survivor, and so do the loser's late events. Kept flat:
-- a survivor is never itself a loser.
CREATE TABLE IF NOT EXISTS contact_redirects (
    workspace_id  text        NOT NULL,
    loser_id      uuid        NOT NULL,
    survivor_id   uuid        NOT NULL,
    merged_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, loser_id)
);
CREATE INDEX IF NOT EXISTS contact_redirects_by_survivor ON contact_redirects (workspace_id, survivor_id);
