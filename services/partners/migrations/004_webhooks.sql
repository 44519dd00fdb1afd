-- Webhook delivery. A delivery is retried until its retry window has passed since
-- `retry_from`: its creation, or the moment someone retried it by hand (one delivery or the
-- whole DLQ), so a manual retry gets a full window again.
ALTER TABLE deliveries ADD COLUMN retry_from timestamptz NOT NULL DEFAULT now();

-- The DLQ view: a subscription's dead deliveries, newest first.
CREATE INDEX deliveries_dead ON deliveries (subscription_id, id) WHERE status = 'dead';
