-- One row per room: `head` is the newest seq. Bumping it under the row lock makes per-room seqs
-- gapless: a rolled-back insert rolls the bump back with it.
CREATE TABLE rooms (
    name text PRIMARY KEY,
    head bigint NOT NULL CHECK (head >= 0)
);

CREATE TABLE events (
    room text NOT NULL REFERENCES rooms (name),
    seq bigint NOT NULL CHECK (seq > 0),
    ts timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL CHECK (kind IN ('metric', 'notice', 'alert', 'presence')),
    data jsonb NOT NULL,
    PRIMARY KEY (room, seq)
);
