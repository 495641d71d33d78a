//! Saved dashboards in Postgres, and the Host dashboard a fresh install starts with.

use app::dashboards::{Dashboard, Panel, Variable};
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
        /// Variables, panels, version.
        type Row = (Json<Vec<Variable>>, Json<Vec<Panel>>, i64);
        let row: Option<Row> =
            sqlx::query_as("SELECT variables, panels, version FROM dashboards WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(
            row.map(|(Json(variables), Json(panels), version)| Dashboard {
                name: name.to_owned(),
                variables,
                panels,
                version,
            }),
        )
    }

    /// Creates the empty dashboard `name`; one that exists is left as it is.
    pub async fn create_dashboard(&self, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO dashboards (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores `dashboard` as its next version if the stored one is still `dashboard.version`;
    /// says whether it was.
    pub async fn update_dashboard(&self, dashboard: &Dashboard) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE dashboards SET variables = $2, panels = $3, version = version + 1,
                                   updated_at = now()
             WHERE name = $1 AND version = $4",
        )
        .bind(&dashboard.name)
        .bind(Json(&dashboard.variables))
        .bind(Json(&dashboard.panels))
        .bind(dashboard.version)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Stores `dashboard` whatever version is stored, creating it if absent (provisioning from
    /// a repository); answers the version it now has.
    pub async fn put_dashboard(&self, dashboard: &Dashboard) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO dashboards (name, variables, panels) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                 SET variables = excluded.variables, panels = excluded.panels,
                     version = dashboards.version + 1, updated_at = now()
             RETURNING version",
        )
        .bind(&dashboard.name)
        .bind(Json(&dashboard.variables))
        .bind(Json(&dashboard.panels))
        .fetch_one(&self.pool)
        .await?)
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
        let host = Dashboard::host(host_source);
        sqlx::query(
            "INSERT INTO dashboards (name, variables, panels)
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM dashboards)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&host.name)
        .bind(Json(&host.variables))
        .bind(Json(&host.panels))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
