-- Each edit of a dashboard bumps its version; an edit made to an older version is refused, so
-- two people editing at once cannot overwrite each other.
ALTER TABLE dashboards ADD COLUMN version bigint NOT NULL DEFAULT 1;
