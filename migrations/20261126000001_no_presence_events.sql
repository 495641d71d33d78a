-- Presence is a live frame, never a stored event: the log holds only what publishers write.
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('metric', 'notice', 'alert'));
