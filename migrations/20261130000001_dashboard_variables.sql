-- Variables a dashboard's panels use as `$name` for their source (`app::dashboards::Variable`).
ALTER TABLE dashboards ADD COLUMN variables jsonb NOT NULL DEFAULT '[]';
