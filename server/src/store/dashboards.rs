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
        let panels: Option<Json<Vec<Panel>>> =
            sqlx::query_scalar("SELECT panels FROM dashboards WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(panels.map(|Json(panels)| Dashboard {
            name: name.to_owned(),
            panels,
        }))
    }

    pub async fn save_dashboard(&self, dashboard: &Dashboard) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboards (name, panels) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET panels = EXCLUDED.panels, updated_at = now()",
        )
        .bind(&dashboard.name)
        .bind(Json(&dashboard.panels))
        .execute(&self.pool)
        .await?;
        Ok(())
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
