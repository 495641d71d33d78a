-- Seeds the history benchmark: :rooms rooms `bench.hist.rNNNN` of :per_room events each, every
-- 20th an alert, 3 in 20 notices, the rest small metric events; notices and alerts spread over
-- the last 399 days, metric events over the last 47 hours (what their retention keeps). One
-- notice in 10,000 mentions a kraken, for a rare full-text word.
BEGIN;
INSERT INTO rooms (name, head)
SELECT format('bench.hist.r%s', lpad(r::text, 4, '0')), :per_room
FROM generate_series(0, :rooms - 1) r;

INSERT INTO events (room, seq, ts, kind, data)
SELECT format('bench.hist.r%s', lpad(r::text, 4, '0')), s,
       CASE WHEN s % 20 < 4
            THEN now() - interval '399 days' * (1 - s::float8 / :per_room) - interval '1 second' * r
            ELSE now() - interval '47 hours' * (1 - s::float8 / :per_room) - interval '1 ms' * r END,
       CASE WHEN s % 20 = 0 THEN 'alert' WHEN s % 20 < 4 THEN 'notice' ELSE 'metric' END,
       CASE WHEN s % 20 = 0 THEN json_build_object(
                'text', format('Rule%s %s on web-%s', s % 50, CASE WHEN s % 40 = 0 THEN 'resolved' ELSE 'firing' END, r),
                'type', 'transition', 'rule', s % 50, 'source', format('web-%s', r),
                'name', format('Rule%s', s % 50),
                'state', CASE WHEN s % 40 = 0 THEN 'resolved' ELSE 'firing' END,
                'previous', 'pending',
                'severity', (ARRAY['info', 'warning', 'critical'])[1 + (s / 20) % 3],
                'summary', format('latency over threshold on web-%s', r))
            WHEN s % 20 < 4 THEN json_build_object(
                'text', format('deploy api build %s to web-%s%s', s, r, CASE WHEN (r * 7919 + s) % 10000 = 0 THEN ' after kraken sighting' ELSE '' END),
                'level', (ARRAY['info', 'warning', 'error'])[1 + s % 3],
                'tags', json_build_array('deploy', format('team-%s', r % 10)))
            ELSE json_build_object('samples', json_build_array(
                json_build_object('series', 'cpu', 'value', (s % 100)::float8 / 100))) END
FROM generate_series(0, :rooms - 1) r, generate_series(1, :per_room) s;
COMMIT;
ANALYZE events;
