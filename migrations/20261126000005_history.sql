-- The history of discrete events (notices and alerts) across rooms, newest first, paged by
-- (ts, room, seq). Metric events are many and big; they get their own index, used when they are
-- asked for and by retention. One index per discrete kind lets a kind filter read only its rows,
-- and an alert's state and severity lead indexes of their own, in the same order.
CREATE INDEX events_history ON events (ts, room, seq) WHERE kind <> 'metric';
CREATE INDEX events_history_room ON events (room, ts, seq) WHERE kind <> 'metric';
CREATE INDEX events_notices ON events (ts, room, seq) WHERE kind = 'notice';
CREATE INDEX events_alerts ON events (ts, room, seq) WHERE kind = 'alert';
CREATE INDEX events_alert_states ON events ((data ->> 'state'), ts, room, seq) WHERE kind = 'alert';
CREATE INDEX events_alert_severities ON events ((data ->> 'severity'), ts, room, seq) WHERE kind = 'alert';
CREATE INDEX events_metrics ON events (ts, room, seq) WHERE kind = 'metric';

-- The words of a notice (title, text, tags) or an alert (text, rule name, summary), for
-- full-text search. Stored, not an index expression: the planner keeps statistics of a column's
-- words (it ignores a partial index's), which is what tells a rare word, read through the GIN
-- index, from a common one, read newest first until a page is full; and a row checked while
-- reading newest first costs a lookup, not a parse. Metric events have none, and their big
-- batches are not parsed for them.
ALTER TABLE events ADD COLUMN words tsvector GENERATED ALWAYS AS (
    CASE WHEN kind <> 'metric' THEN to_tsvector('english'::regconfig,
        coalesce(data ->> 'title', '') || ' ' || coalesce(data ->> 'text', '') || ' ' ||
        coalesce(data ->> 'tags', '') || ' ' || coalesce(data ->> 'name', '') || ' ' ||
        coalesce(data ->> 'summary', ''))
    END) STORED;
CREATE INDEX events_words ON events USING gin (words) WHERE kind <> 'metric';
