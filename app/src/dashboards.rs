//! Saved dashboards: named sets of panels, each bound to a source's room and some of its series.
//! A panel's source may be a variable (`$source`) the page chooses among the stored sources
//! matching a pattern, so one dashboard serves many hosts.

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
/// The grid's columns: the widest a panel can be.
pub const MAX_WIDTH: u8 = 4;
/// Most variables on one dashboard.
pub const MAX_VARIABLES: usize = 8;
/// Names a variable cannot take: the page's address uses them (`?range=1h&source=…`).
const RESERVED: [&str; 4] = ["range", "at", "from", "to"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    /// A time-series line chart of one or more series.
    Line,
    /// The newest value, big, with its trend.
    Stat,
    /// The newest value against its thresholds.
    Gauge,
    /// The newest value of each of many series, sortable.
    Table,
    /// The source's latest notices and alerts, newest first; it shows no series.
    Logs,
}

impl PanelKind {
    pub const ALL: [PanelKind; 5] = [Self::Line, Self::Stat, Self::Gauge, Self::Table, Self::Logs];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Stat => "stat",
            Self::Gauge => "gauge",
            Self::Table => "table",
            Self::Logs => "logs",
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
    /// A source (`host:web-1`), or a variable of the dashboard (`$source`).
    pub source: String,
    /// Each written as `metrics::Series` writes it: `name` or `name{key="value",...}`.
    pub series: Vec<String>,
    #[serde(default)]
    pub unit: Unit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    /// Columns of the grid it spans (1–4); none: its kind's own (a line chart two, others one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u8>,
}

/// A name panels use as `$name` for their source, whose values are the stored sources matching
/// `sources`; the page's address chooses one (`?source=host:web-2`), else `default`, else the
/// first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    /// A pattern, `*` taking any run of characters: `host:*`.
    pub sources: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A variable as a page offers it: the values to pick from and the one chosen (none when no
/// stored source matches).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub name: String,
    pub values: Vec<String>,
    pub chosen: Option<String>,
}

impl Choice {
    /// `asked` if it is among `values`, else the variable's default if it is, else the first.
    pub fn new(variable: &Variable, values: Vec<String>, asked: Option<&str>) -> Self {
        let among = |v: Option<&str>| {
            v.filter(|v| values.iter().any(|value| value == v))
                .map(str::to_owned)
        };
        let chosen = among(asked)
            .or_else(|| among(variable.default.as_deref()))
            .or_else(|| values.first().cloned());
        Self {
            name: variable.name.clone(),
            values,
            chosen,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Variable>,
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

/// Variable names: a lowercase letter, then lowercase letters, digits or `_`; not one of the
/// words the page's address uses.
fn check_variable_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "variable {name:?}: a name is a lowercase letter, then up to 31 lowercase letters, digits or '_'"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "variable {name:?}: the page's address uses that name"
        ));
    }
    Ok(())
}

impl Variable {
    pub fn check(&self) -> Result<(), String> {
        check_variable_name(&self.name)?;
        crate::auth::Pattern::parse(&self.sources)?;
        if let Some(default) = &self.default {
            crate::metrics::source_room(default)?;
        }
        Ok(())
    }
}

impl Panel {
    pub fn width(&self) -> u8 {
        self.width.unwrap_or(match self.kind {
            PanelKind::Line | PanelKind::Table | PanelKind::Logs => 2,
            PanelKind::Stat | PanelKind::Gauge => 1,
        })
    }

    /// The variable this panel's source names, if it names one.
    pub fn variable(&self) -> Option<&str> {
        self.source.strip_prefix('$')
    }

    pub fn check(&self) -> Result<(), String> {
        if self.title.trim().is_empty() || self.title.len() > 80 {
            return Err("a panel title is 1–80 characters".into());
        }
        match self.variable() {
            Some(name) => check_variable_name(name)?,
            None => crate::metrics::source_room(&self.source).map(drop)?,
        }
        if self.kind == PanelKind::Logs {
            if !self.series.is_empty() {
                return Err("a logs panel shows its source's events, not series".into());
            }
        } else if self.series.is_empty() || self.series.len() > 8 {
            return Err("a panel shows 1–8 series".into());
        }
        for series in &self.series {
            series.parse::<crate::metrics::Series>()?;
        }
        if matches!(self.kind, PanelKind::Stat | PanelKind::Gauge) && self.series.len() > 1 {
            return Err(format!("a {} panel shows one series", self.kind.as_str()));
        }
        if self.width.is_some_and(|w| !(1..=MAX_WIDTH).contains(&w)) {
            return Err(format!("width: 1–{MAX_WIDTH} columns"));
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
    /// Everything a dashboard must be to be stored, each fault named by where it is
    /// (`panels[2].series: …`).
    pub fn check(&self) -> Result<(), String> {
        check_name(&self.name).map_err(|e| format!("name: {e}"))?;
        if self.variables.len() > MAX_VARIABLES {
            return Err(format!("variables: at most {MAX_VARIABLES}"));
        }
        for (i, variable) in self.variables.iter().enumerate() {
            variable
                .check()
                .map_err(|e| format!("variables[{i}]: {e}"))?;
            if self.variables[..i].iter().any(|v| v.name == variable.name) {
                return Err(format!(
                    "variables[{i}]: {:?} is there twice",
                    variable.name
                ));
            }
        }
        if self.panels.len() > MAX_PANELS {
            return Err(format!("panels: at most {MAX_PANELS}"));
        }
        for (i, panel) in self.panels.iter().enumerate() {
            panel.check().map_err(|e| format!("panels[{i}]: {e}"))?;
            if let Some(name) = panel.variable()
                && !self.variables.iter().any(|v| v.name == name)
            {
                return Err(format!(
                    "panels[{i}].source: no variable {name:?} on this dashboard"
                ));
            }
        }
        Ok(())
    }

    /// A dashboard as JSON gives it (an export, or a repository provisioning it), checked; a
    /// fault names the field it is in.
    #[cfg(feature = "ssr")]
    pub fn from_json(json: &[u8]) -> Result<Self, String> {
        let reader = &mut serde_json::Deserializer::from_slice(json);
        let dashboard: Self = serde_path_to_error::deserialize(reader).map_err(|e| {
            match e.path().to_string().as_str() {
                "." => e.inner().to_string(),
                path => format!("{path}: {}", e.inner()),
            }
        })?;
        dashboard.check()?;
        Ok(dashboard)
    }

    /// The panels' sources with each variable replaced by its chosen value; a variable with no
    /// value leaves `$name`, which names no source, so its panels stay empty.
    pub fn resolve(&mut self, choices: &[Choice]) {
        for panel in &mut self.panels {
            let chosen = panel
                .variable()
                .and_then(|name| choices.iter().find(|c| c.name == name))
                .and_then(|c| c.chosen.clone());
            if let Some(source) = chosen {
                panel.source = source;
            }
        }
    }

    /// What a fresh install shows for its hosts: `source` at first, any other host pushing the
    /// collector's series by choosing it.
    pub fn host(source: &str) -> Self {
        let panel = |title: &str, kind, series: &[&str], unit, thresholds| Panel {
            title: title.into(),
            kind,
            source: "$source".into(),
            series: series.iter().map(|s| (*s).to_owned()).collect(),
            unit,
            thresholds,
            width: None,
        };
        let busy = Some(Thresholds {
            warn: 70.0,
            critical: 90.0,
        });
        Self {
            name: HOST.into(),
            version: 0,
            variables: vec![Variable {
                name: "source".into(),
                sources: "host:*".into(),
                default: Some(source.into()),
            }],
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
        Dashboard::host("host:vm").check().unwrap();
    }

    #[test]
    fn variables_resolve_to_the_asked_value_else_the_default_else_the_first() {
        let host = Dashboard::host("host:b");
        let values = || vec!["host:a".to_owned(), "host:b".to_owned()];
        let variable = &host.variables[0];
        let chosen = |asked| Choice::new(variable, values(), asked).chosen;
        assert_eq!(chosen(Some("host:a")).as_deref(), Some("host:a"));
        assert_eq!(
            chosen(Some("host:zz")).as_deref(),
            Some("host:b"),
            "not among the values"
        );
        assert_eq!(chosen(None).as_deref(), Some("host:b"));
        let other = Variable {
            default: None,
            ..variable.clone()
        };
        assert_eq!(
            Choice::new(&other, values(), None).chosen.as_deref(),
            Some("host:a")
        );
        assert_eq!(Choice::new(&other, vec![], None).chosen, None);

        let mut board = host.clone();
        board.resolve(&[Choice::new(variable, values(), Some("host:a"))]);
        assert!(board.panels.iter().all(|p| p.source == "host:a"));
        let mut unresolved = host.clone();
        unresolved.resolve(&[Choice::new(variable, vec![], None)]);
        assert!(unresolved.panels.iter().all(|p| p.source == "$source"));
    }

    #[test]
    fn a_dashboard_names_the_field_that_is_wrong() {
        let mut board = Dashboard::host("host:vm");
        board.panels[2].source = "$host".into();
        assert_eq!(
            board.check().unwrap_err(),
            r#"panels[2].source: no variable "host" on this dashboard"#
        );
        board.panels[2].source = "$source".into();
        board.variables.push(board.variables[0].clone());
        assert_eq!(
            board.check().unwrap_err(),
            r#"variables[1]: "source" is there twice"#
        );
        board.variables[1].name = "range".into();
        assert!(
            board
                .check()
                .unwrap_err()
                .starts_with("variables[1]: variable \"range\"")
        );
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn a_dashboard_round_trips_through_json_and_bad_json_names_its_field() {
        let board = Dashboard::host("host:vm");
        let json = serde_json::to_vec(&board).unwrap();
        assert_eq!(Dashboard::from_json(&json).unwrap(), board);
        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        value["panels"][3]["kind"] = "pie".into();
        let error = Dashboard::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(
            error.starts_with("panels[3].kind: unknown variant `pie`"),
            "{error}"
        );
        value["panels"][3]["kind"] = "gauge".into();
        value["panels"][3]["series"] = serde_json::json!(["a", "b"]);
        let error = Dashboard::from_json(value.to_string().as_bytes()).unwrap_err();
        assert_eq!(error, "panels[3]: a gauge panel shows one series");
        assert!(Dashboard::from_json(b"{").unwrap_err().contains("EOF"));
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
        panel.thresholds = None;
        panel.kind = PanelKind::Table;
        panel.check().unwrap();
        panel.width = Some(5);
        assert_eq!(panel.check().unwrap_err(), "width: 1–4 columns");
        panel.width = Some(4);
        panel.kind = PanelKind::Logs;
        assert!(panel.check().is_err(), "a logs panel shows no series");
        panel.series.clear();
        panel.check().unwrap();
    }
}
