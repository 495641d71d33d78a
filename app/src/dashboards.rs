//! Saved dashboards: named sets of panels, each bound to a source's room and some of its series.

#[cfg(feature = "ssr")]
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use crate::error::AppError;

/// Longest dashboard name, in bytes.
pub const MAX_NAME_LEN: usize = 40;
/// Most panels on one dashboard.
pub const MAX_PANELS: usize = 48;
/// The dashboard a fresh install starts with.
pub const HOST: &str = "host";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    /// A time-series line chart of one or more series.
    Line,
    /// The newest value, big, with its trend.
    Stat,
    /// The newest value against its thresholds.
    Gauge,
}

impl PanelKind {
    pub const ALL: [PanelKind; 3] = [Self::Line, Self::Stat, Self::Gauge];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Stat => "stat",
            Self::Gauge => "gauge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How a panel's values read to a person.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    None,
    Percent,
    Bytes,
    BytesPerSec,
}

impl Unit {
    pub const ALL: [Unit; 4] = [Self::None, Self::Percent, Self::Bytes, Self::BytesPerSec];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Percent => "percent",
            Self::Bytes => "bytes",
            Self::BytesPerSec => "bytes_per_sec",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.as_str() == s)
    }
}

/// Values at or above `warn` show as a warning, at or above `critical` as critical.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub warn: f64,
    pub critical: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    pub title: String,
    pub kind: PanelKind,
    pub source: String,
    /// Each written as `metrics::Series` writes it: `name` or `name{key="value",...}`.
    pub series: Vec<String>,
    #[serde(default)]
    pub unit: Unit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub name: String,
    pub panels: Vec<Panel>,
    /// Counts its edits: an edit made to an older version than the stored one is refused, so
    /// two people editing at once cannot overwrite each other.
    #[serde(default)]
    pub version: i64,
}

/// Dashboard names appear in addresses: lowercase letters, digits and `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a dashboard name is 1–{MAX_NAME_LEN} lowercase letters, digits or '-'"
        ))
    }
}

impl Panel {
    pub fn check(&self) -> Result<(), String> {
        if self.title.trim().is_empty() || self.title.len() > 80 {
            return Err("a panel title is 1–80 characters".into());
        }
        crate::metrics::source_room(&self.source)?;
        if self.series.is_empty() || self.series.len() > 8 {
            return Err("a panel shows 1–8 series".into());
        }
        for series in &self.series {
            series.parse::<crate::metrics::Series>()?;
        }
        if self.kind != PanelKind::Line && self.series.len() > 1 {
            return Err(format!("a {} panel shows one series", self.kind.as_str()));
        }
        if let Some(t) = self.thresholds
            && !(t.warn.is_finite() && t.critical.is_finite() && t.warn <= t.critical)
        {
            return Err("thresholds need warn ≤ critical".into());
        }
        Ok(())
    }
}

impl Dashboard {
    /// What a fresh install shows for its own host.
    pub fn host(source: &str) -> Self {
        let panel = |title: &str, kind, series: &[&str], unit, thresholds| Panel {
            title: title.into(),
            kind,
            source: source.into(),
            series: series.iter().map(|s| (*s).to_owned()).collect(),
            unit,
            thresholds,
        };
        let busy = Some(Thresholds {
            warn: 70.0,
            critical: 90.0,
        });
        Self {
            name: HOST.into(),
            version: 0,
            panels: vec![
                panel("CPU", PanelKind::Gauge, &["cpu.total"], Unit::Percent, busy),
                panel(
                    "Memory available",
                    PanelKind::Stat,
                    &["mem.available"],
                    Unit::Bytes,
                    None,
                ),
                panel("Load", PanelKind::Stat, &["load.1"], Unit::None, None),
                panel(
                    "Root filesystem",
                    PanelKind::Gauge,
                    &[r#"fs.used_pct{mount="/"}"#],
                    Unit::Percent,
                    Some(Thresholds {
                        warn: 80.0,
                        critical: 95.0,
                    }),
                ),
                panel(
                    "CPU use",
                    PanelKind::Line,
                    &["cpu.total"],
                    Unit::Percent,
                    busy,
                ),
                panel(
                    "Memory used",
                    PanelKind::Line,
                    &["mem.used"],
                    Unit::Bytes,
                    None,
                ),
                panel(
                    "Network",
                    PanelKind::Line,
                    &["net.rx", "net.tx"],
                    Unit::BytesPerSec,
                    None,
                ),
                panel(
                    "Disk",
                    PanelKind::Line,
                    &["disk.read", "disk.write"],
                    Unit::BytesPerSec,
                    None,
                ),
            ],
        }
    }
}

/// The refusal of an edit to a dashboard someone else changed after the editor loaded it.
#[cfg(feature = "ssr")]
pub fn changed_since() -> AppError {
    AppError::Conflict(
        "this dashboard was changed by someone else since this page was loaded: \
         reload it to see their change, then make yours again"
            .into(),
    )
}

/// Where dashboards are kept; the server provides it as context to server functions.
#[cfg(feature = "ssr")]
pub trait DashboardStore: Send + Sync + 'static {
    fn list(&self) -> BoxFuture<'static, Result<Vec<String>, AppError>>;
    fn get(&self, name: String) -> BoxFuture<'static, Result<Option<Dashboard>, AppError>>;
    /// Creates an empty dashboard, unless one of that name exists.
    fn create(&self, name: String) -> BoxFuture<'static, Result<(), AppError>>;
    /// Stores `dashboard` as its next version, refused with [`AppError::Conflict`] when the
    /// stored one is no longer `dashboard.version`.
    fn update(&self, dashboard: Dashboard) -> BoxFuture<'static, Result<(), AppError>>;
    fn delete(&self, name: String) -> BoxFuture<'static, Result<(), AppError>>;
}

#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct SharedDashboards(pub std::sync::Arc<dyn DashboardStore>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_dashboard_is_valid() {
        let host = Dashboard::host("host:vm");
        check_name(&host.name).unwrap();
        for panel in &host.panels {
            panel.check().unwrap();
        }
    }

    #[test]
    fn names_and_panels_are_checked() {
        assert!(check_name("Ops Board").is_err());
        assert!(check_name("").is_err());
        check_name("ops-2").unwrap();
        let mut panel = Dashboard::host("h").panels[0].clone();
        panel.series.push("cpu.core0".into());
        assert!(panel.check().is_err(), "a gauge shows one series");
        panel.kind = PanelKind::Line;
        panel.check().unwrap();
        panel.thresholds = Some(Thresholds {
            warn: 9.0,
            critical: 1.0,
        });
        assert!(panel.check().is_err());
    }
}
