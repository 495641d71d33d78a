//! Saved dashboards in Postgres, and the Host dashboard a fresh install starts with.

use app::dashboards::{Dashboard, DashboardStore, Panel};
use futures::future::BoxFuture;
use sqlx::types::Json;

use crate::{error::Result, store::Store};

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

    /// Saves the Host dashboard for `host_source` when no dashboard exists yet.
    pub async fn seed_dashboards(&self, host_source: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboards (name, panels)
             SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM dashboards)",
        )
        .bind(app::dashboards::HOST)
        .bind(Json(&Dashboard::host(host_source).panels))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl DashboardStore for Store {
    fn list(&self) -> BoxFuture<'static, Result<Vec<String>, String>> {
        self.serve_page("listing dashboards", |store| async move {
            store.dashboard_names().await
        })
    }

    fn get(&self, name: String) -> BoxFuture<'static, Result<Option<Dashboard>, String>> {
        self.serve_page("reading a dashboard", |store| async move {
            store.dashboard(&name).await
        })
    }

    fn save(&self, dashboard: Dashboard) -> BoxFuture<'static, Result<(), String>> {
        self.serve_page("saving a dashboard", |store| async move {
            store.save_dashboard(&dashboard).await
        })
    }

    fn delete(&self, name: String) -> BoxFuture<'static, Result<(), String>> {
        self.serve_page("deleting a dashboard", |store| async move {
            store.delete_dashboard(&name).await
        })
    }
}
