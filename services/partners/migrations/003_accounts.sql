-- Partners are listed per workspace in id (creation) order, a page at a time.
CREATE INDEX partners_workspace ON partners (workspace_id, id);
