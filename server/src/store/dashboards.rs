//! Saved dashboards in Postgres, and the Host dashboard a fresh install starts with.

use app::dashboards::{Dashboard, Panel};
use sqlx::types::Json;

use super::Store;
use crate::error::{Result, RunError};

impl Store {
    pub async fn dashboard_names(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM dashboards ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn dashboard(&self, name: &str) -> Result<Option<Dashboard>> {
        let row: Option<(Json<Vec<Panel>>, i64)> =
            sqlx::query_as("SELECT panels, version FROM dashboards WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(Json(panels), version)| Dashboard {
            name: name.to_owned(),
            panels,
            version,
        }))
    }

    /// Creates the empty dashboard `name`; one that exists is left as it is.
    pub async fn create_dashboard(&self, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO dashboards (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores `dashboard`'s panels as its next version if the stored one is still
    /// `dashboard.version`; says whether it was.
    pub async fn update_dashboard(&self, dashboard: &Dashboard) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE dashboards SET panels = $2, version = version + 1, updated_at = now()
             WHERE name = $1 AND version = $3",
        )
        .bind(&dashboard.name)
        .bind(Json(&dashboard.panels))
        .bind(dashboard.version)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub async fn delete_dashboard(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboards WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Saves the Host dashboard for `host_source` when no dashboard exists yet. Nodes starting
    /// together on an empty database all try: the conflict clause lets every one of them succeed.
    pub async fn seed_dashboards(&self, host_source: &str) -> Result<(), RunError> {
        sqlx::query(
            "INSERT INTO dashboards (name, panels)
             SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM dashboards)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(app::dashboards::HOST)
        .bind(Json(&Dashboard::host(host_source).panels))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
