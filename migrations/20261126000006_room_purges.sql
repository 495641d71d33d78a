-- How far retention has removed each room's log: every seq at or below `purged` may be gone
-- (retention goes by kind, so a room can keep an old notice among removed metric events). Kept
-- apart from `rooms`, whose rows the writer locks on every commit, and per epoch, so a log that
-- starts over starts with nothing removed.
CREATE TABLE room_purges (
    room text PRIMARY KEY,
    epoch text NOT NULL,
    purged bigint NOT NULL
);
