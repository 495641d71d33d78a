-- The history of discrete events (notices and alerts) across rooms, newest first, paged by
-- (ts, room, seq). Metric events are many and big; they get their own index, used when they are
-- asked for and by retention. One index per discrete kind lets a kind filter read only its rows.
CREATE INDEX events_history ON events (ts, room, seq) WHERE kind <> 'metric';
CREATE INDEX events_history_room ON events (room, ts, seq) WHERE kind <> 'metric';
CREATE INDEX events_notices ON events (ts, room, seq) WHERE kind = 'notice';
CREATE INDEX events_alerts ON events (ts, room, seq) WHERE kind = 'alert';
CREATE INDEX events_metrics ON events (ts, room, seq) WHERE kind = 'metric';

-- The words of an event for full-text search: a notice's title, text and tags; an alert's
-- text, rule name and summary. Immutable, so an index can hold it.
CREATE FUNCTION event_words(data json) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_tsvector('english'::regconfig, concat_ws(' ',
        data ->> 'title', data ->> 'text', data ->> 'tags', data ->> 'name', data ->> 'summary'));

CREATE INDEX events_words ON events USING gin (event_words(data)) WHERE kind <> 'metric';
