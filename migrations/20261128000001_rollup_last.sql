-- The newest sample of each bucket: its value, and its time, by which late samples and coarser
-- buckets merge. Buckets rolled up before it was kept have none where their raw rows are gone.
ALTER TABLE rollups_1m ADD COLUMN last_at timestamptz, ADD COLUMN last double precision;
ALTER TABLE rollups_1h ADD COLUMN last_at timestamptz, ADD COLUMN last double precision;
ALTER TABLE rollup_pending ADD COLUMN last_at timestamptz, ADD COLUMN last double precision;

-- Minutes whose samples are all still raw rows learn their newest; hours whose minutes all did.
UPDATE rollups_1m r SET last_at = s.last_at, last = s.last
FROM (
    SELECT series, date_bin('1 minute', ts, 'epoch') AS t, count(*) AS count, max(ts) AS last_at,
           (max(ARRAY[date_part('epoch', ts), value]))[2] AS last
    FROM samples GROUP BY 1, 2
) s
WHERE r.series = s.series AND r.t = s.t AND r.count = s.count;

UPDATE rollups_1h h SET last_at = m.last_at, last = m.last
FROM (
    SELECT series, date_bin('1 hour', t, 'epoch') AS t, sum(count) AS count,
           bool_and(last_at IS NOT NULL) AS known, max(last_at) AS last_at,
           (max(ARRAY[date_part('epoch', last_at), last]))[2] AS last
    FROM rollups_1m GROUP BY 1, 2
) m
WHERE h.series = m.series AND h.t = m.t AND h.count = m.count AND m.known;
