-- Seeds series `year` of source :'source' with what a year of one sample a second leaves in the
-- rollups: an hour bucket for each of the last 365 days' hours, a minute bucket for each of the
-- last 90 days' minutes (values of a daily wave). Ingest takes samples of the last 30 days
-- only, so a year can only be written here. Partitions as the server names them: 7-day spans
-- of minutes, 30-day spans of hours, from the epoch.
BEGIN;
INSERT INTO series (source, name) VALUES (:'source', 'year') ON CONFLICT DO NOTHING;

DO $$
DECLARE
  spec record;
  start timestamptz;
BEGIN
  FOR spec IN SELECT * FROM (VALUES ('rollups_1m', 7, 91), ('rollups_1h', 30, 366)) AS v (tab, span, back) LOOP
    start := to_timestamp(floor(extract(epoch FROM now() - make_interval(days => spec.back))
                                / (spec.span * 86400)) * spec.span * 86400);
    WHILE start < now() + interval '1 day' LOOP
      EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                     spec.tab || '_p' || to_char(start AT TIME ZONE 'UTC', 'YYYYMMDDHH24'), spec.tab,
                     start, start + make_interval(days => spec.span));
      start := start + make_interval(days => spec.span);
    END LOOP;
  END LOOP;
END $$;

WITH s AS (SELECT id FROM series WHERE source = :'source' AND name = 'year')
INSERT INTO rollups_1h (series, count, t, min, max, sum)
SELECT s.id, 3600, t, 50 + 40 * sin(extract(epoch FROM t) / 13751) - 5,
       50 + 40 * sin(extract(epoch FROM t) / 13751) + 5, 3600 * (50 + 40 * sin(extract(epoch FROM t) / 13751))
FROM s, generate_series(date_trunc('hour', now()) - interval '365 days',
                        date_trunc('hour', now()) - interval '1 day', interval '1 hour') t
ON CONFLICT DO NOTHING;

WITH s AS (SELECT id FROM series WHERE source = :'source' AND name = 'year')
INSERT INTO rollups_1m (series, count, t, min, max, sum)
SELECT s.id, 60, t, 50 + 40 * sin(extract(epoch FROM t) / 13751) - 1,
       50 + 40 * sin(extract(epoch FROM t) / 13751) + 1, 60 * (50 + 40 * sin(extract(epoch FROM t) / 13751))
FROM s, generate_series(date_trunc('minute', now()) - interval '90 days',
                        date_trunc('hour', now()) - interval '1 day', interval '1 minute') t
ON CONFLICT DO NOTHING;
COMMIT;
ANALYZE rollups_1m;
ANALYZE rollups_1h;
