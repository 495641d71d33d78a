-- People: a role each, and the rooms they may see (patterns; a room outside them does not exist
-- for them). Passwords are kept as argon2id PHC strings.
CREATE TABLE users (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    rooms text[] NOT NULL DEFAULT '{*}',
    disabled_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Browser sessions. The cookie holds a random 256-bit id; only its SHA-256 is kept, so a copy
-- of this table logs nobody in.
CREATE TABLE sessions (
    hash bytea PRIMARY KEY,
    user_id integer NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    address text NOT NULL DEFAULT '',
    agent text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);

-- API tokens for agents and scripts: shown once, kept as SHA-256, limited by scopes and by what
-- their user may.
CREATE TABLE tokens (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hash bytea NOT NULL UNIQUE,
    user_id integer NOT NULL REFERENCES users ON DELETE CASCADE,
    name text NOT NULL,
    scopes text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX tokens_user ON tokens (user_id);
