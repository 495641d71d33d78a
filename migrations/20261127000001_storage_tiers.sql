-- Raw samples by the hour: retention and compaction drop whole partitions, never rows of the hot
-- table. The server creates each hour's partition ahead of time; a sample whose hour has none
-- (already compacted, or stored before partitions) lands in `samples_late`, which compaction
-- sweeps into blocks.
ALTER TABLE samples RENAME TO samples_unpartitioned;
ALTER INDEX samples_series_ts RENAME TO samples_unpartitioned_series_ts;

CREATE TABLE samples (
    series integer NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX samples_series_ts ON samples (series, ts) INCLUDE (value);
-- Rollups read the newest seconds of every series; samples arrive in time order, so a block
-- range index finds them for a few bytes per megabyte.
CREATE INDEX samples_ts ON samples USING brin (ts);

CREATE TABLE samples_late PARTITION OF samples DEFAULT;
CREATE INDEX samples_late_by_ts ON samples_late (ts);

INSERT INTO samples SELECT series, ts, value FROM samples_unpartitioned;
DROP TABLE samples_unpartitioned;

-- Cold raw samples: one row per series per hour, delta-of-delta timestamps and XOR-ed values
-- (Gorilla) packed in `data`. Day partitions, dropped whole by retention.
CREATE TABLE sample_blocks (
    series integer NOT NULL,
    start timestamptz NOT NULL,
    count integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (series, start)
) PARTITION BY RANGE (start);
-- Already packed bit by bit: compressing it again gains nothing and costs every read.
ALTER TABLE sample_blocks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Rollup tiers: per series, buckets of a minute and of an hour. `sum / count` is the mean.
CREATE TABLE rollups_1m (
    series integer NOT NULL,
    count integer NOT NULL,
    t timestamptz NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    sum double precision NOT NULL,
    PRIMARY KEY (series, t)
) PARTITION BY RANGE (t);

-- Complete hours are rebuilt from all series' minutes of that hour.
CREATE INDEX rollups_1m_t ON rollups_1m USING brin (t);

CREATE TABLE rollups_1h (
    series integer NOT NULL,
    count integer NOT NULL,
    t timestamptz NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    sum double precision NOT NULL,
    PRIMARY KEY (series, t)
) PARTITION BY RANGE (t);

-- Minute buckets of samples that arrived after their minute was rolled up, written with them
-- by the writer; the rollup job folds them in.
CREATE TABLE rollup_pending (LIKE rollups_1m);

-- `rolled`: every minute bucket before it is complete in `rollups_1m` (pending aside).
-- `fence`: samples stamped before it are late; writers hold it shared while they commit, so
-- moving it waits for every commit that read the old one.
CREATE TABLE rollup_state (
    name text PRIMARY KEY,
    at timestamptz NOT NULL
);
INSERT INTO rollup_state (name, at)
SELECT name, date_bin('1 minute', coalesce((SELECT min(ts) FROM samples), now()), 'epoch')
FROM (VALUES ('rolled'), ('fence')) AS v (name);
