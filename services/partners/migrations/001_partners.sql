-- The partners service's schema. Every row belongs to one workspace; every query filters on it.

-- A workspace's opt-in to public events: nothing of a workspace is published until an admin
-- enables it. `domains` limits it to some public topics (empty: all). Hashed personal fields
-- are keyed HMAC-SHA256 digests under `hash_key`, so they are stable within the workspace
-- and useless elsewhere.
CREATE TABLE workspace_settings (
    workspace_id text PRIMARY KEY,
    enabled boolean NOT NULL DEFAULT false,
    domains text[] NOT NULL DEFAULT '{}',
    hash_key bytea NOT NULL,
    version integer NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The replay store: every public event as partners see it (after the data policy), for the
-- pull API, webhook fan-out and replays. `seq` is the cursor: rows of one workspace are
-- written under that workspace's advisory lock, so seq order is commit order within a
-- workspace and a cursor never skips a late commit.
CREATE TABLE public_events (
    seq bigserial PRIMARY KEY,
    workspace_id text NOT NULL,
    id text NOT NULL,
    topic text NOT NULL,
    type text NOT NULL,
    source text NOT NULL,
    subject text NOT NULL,
    key text NOT NULL,
    time timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- The people the event is about (contact ids), so an erasure finds them.
    contact_ids text[] NOT NULL DEFAULT '{}',
    data jsonb NOT NULL,
    UNIQUE (workspace_id, id)
);
CREATE INDEX public_events_workspace_seq ON public_events (workspace_id, seq);
CREATE INDEX public_events_workspace_time ON public_events (workspace_id, time);
CREATE INDEX public_events_contacts ON public_events USING gin (contact_ids);
CREATE INDEX public_events_recorded ON public_events (recorded_at);

CREATE TABLE partners (
    id uuid PRIMARY KEY,
    workspace_id text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1,
    UNIQUE (workspace_id, name)
);

-- API keys are shown once; only their SHA-256 is kept. `prefix` (the key's first characters)
-- lets people tell keys apart.
CREATE TABLE partner_api_keys (
    id uuid PRIMARY KEY,
    workspace_id text NOT NULL,
    partner_id uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    name text NOT NULL,
    prefix text NOT NULL,
    sha256 text NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);
CREATE INDEX partner_api_keys_partner ON partner_api_keys (workspace_id, partner_id);

-- What a partner receives: event types and filters, delivered by webhook (url), read from the
-- public topics with the partner's own Kafka user, or pulled over HTTP.
CREATE TABLE subscriptions (
    id uuid PRIMARY KEY,
    workspace_id text NOT NULL,
    partner_id uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    name text NOT NULL,
    event_types text[] NOT NULL,
    filters jsonb NOT NULL DEFAULT '{}',
    delivery text NOT NULL CHECK (delivery IN ('webhook', 'kafka', 'pull')),
    url text,
    status text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1,
    CHECK ((delivery = 'webhook') = (url IS NOT NULL))
);
CREATE INDEX subscriptions_partner ON subscriptions (workspace_id, partner_id);

-- A webhook subscription's signing secrets (Standard Webhooks `whsec_...`). During a
-- rotation the old secret stays valid until `expires_at`, and both sign every request.
CREATE TABLE webhook_secrets (
    id uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX webhook_secrets_subscription ON webhook_secrets (subscription_id);

-- One event for one webhook subscription. Per subscription and key, deliveries go in id
-- order: a later one waits while an earlier one of the same key is pending.
CREATE TABLE deliveries (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_seq bigint NOT NULL REFERENCES public_events (seq) ON DELETE CASCADE,
    event_id text NOT NULL,
    key text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    -- Set when a replay made this delivery.
    replay_id uuid
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, subscription_id) WHERE status = 'pending';
CREATE INDEX deliveries_pending_key ON deliveries (subscription_id, key, id) WHERE status = 'pending';
CREATE INDEX deliveries_log ON deliveries (workspace_id, subscription_id, id DESC);
CREATE INDEX deliveries_event ON deliveries (event_seq);

-- Every attempt of a delivery: when, how it ended, how long it took.
CREATE TABLE delivery_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL,
    status_code integer,
    latency_ms integer NOT NULL,
    error text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

CREATE TABLE replays (
    id uuid PRIMARY KEY,
    workspace_id text NOT NULL,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    from_time timestamptz,
    to_time timestamptz,
    after_event_id text,
    requested_by text NOT NULL,
    deliveries integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
