-- Alert rules, acknowledgements, silences and notification channels. Transitions themselves are
-- events in room `alerts`: the evaluator rebuilds its state from them at start.
CREATE TABLE alert_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule jsonb NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One acknowledgement per instance: it holds for the state whose `since` it names.
CREATE TABLE alert_acks (
    rule bigint NOT NULL REFERENCES alert_rules ON DELETE CASCADE,
    source text NOT NULL,
    labels jsonb NOT NULL,
    since timestamptz NOT NULL,
    by_user text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    comment text NOT NULL DEFAULT '',
    PRIMARY KEY (rule, source, labels)
);

CREATE TABLE alert_silences (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    matchers jsonb NOT NULL,
    starts timestamptz NOT NULL,
    ends timestamptz NOT NULL CHECK (ends > starts),
    comment text NOT NULL DEFAULT '',
    author text NOT NULL
);
CREATE INDEX alert_silences_ends ON alert_silences (ends);

CREATE TABLE alert_channels (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    channel jsonb NOT NULL
);

-- Notifications on their way: written in the transaction that moves the cursor past the
-- transition they tell of, sent at least once, retried with backoff, kept as the delivery log.
CREATE TABLE alert_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel bigint NOT NULL REFERENCES alert_channels ON DELETE CASCADE,
    instance text NOT NULL,
    summary text NOT NULL,
    body jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_at timestamptz NOT NULL DEFAULT now(),
    last_error text
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_at) WHERE status = 'queued';
CREATE INDEX alert_outbox_channel ON alert_outbox (channel, id DESC);
CREATE INDEX alert_outbox_instance ON alert_outbox (instance, channel, created DESC);

-- How far the notifier has routed room `alerts`: one row, locked while routing, so nodes route
-- each transition once. An epoch other than the room's means its log started over: from seq 1.
CREATE TABLE alert_cursor (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch text NOT NULL,
    seq bigint NOT NULL
);
INSERT INTO alert_cursor (epoch, seq) VALUES ('', 0);
