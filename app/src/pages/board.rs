//! `/d/{name}`: a saved dashboard, its panels drawn from history and moved on by pushes, and the
//! forms that edit it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use super::{
    chart::{Crosshair, Gauge, LineChart, Logs, SeriesData, Stat, ValueTable},
    deferred::deferred,
    follow_events,
    form::{PostForm, Posted},
    loaded,
    markup::Text,
    replay::{Replay, ReplayOf},
};
use crate::{
    dashboards::{Choice, Dashboard, Panel, PanelKind, Thresholds, Unit},
    error::AppError,
    history::Marker,
    metrics::Series,
    protocol::RoomSnapshot,
};

/// The time ranges a dashboard offers, as they appear in `?range=`.
pub const RANGES: [(&str, i64); 9] = [
    ("5m", 5 * 60),
    ("15m", 15 * 60),
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 24 * 3600),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
    ("90d", 90 * 86_400),
    ("1y", 365 * 86_400),
];
const DEFAULT_RANGE: &str = "15m";

/// A dashboard's page: the dashboard, if there is one by that name, and whether the one asking
/// may change it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoardPage {
    pub board: Option<BoardData>,
    pub may_edit: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoardData {
    /// As stored: panels name their variables (`$source`), as their edit forms must keep them.
    pub dashboard: Dashboard,
    /// The dashboard's variables, each with the value the page shows.
    pub variables: Vec<Choice>,
    pub window_ms: i64,
    pub now_ms: i64,
    /// Each source room the panels show, with its head (and epoch) when the page was drawn;
    /// room `notices` too when it may be read. None in a replay, which follows nothing live.
    pub heads: Vec<RoomSnapshot>,
    /// Per panel, per series: the range's buckets as (time, average).
    pub panels: Vec<Vec<SeriesData>>,
    /// Notices and the panels' sources' alerts over the range, oldest first.
    pub markers: Vec<Marker>,
    /// The panels' sources, whose alerts mark the charts.
    pub sources: Vec<String>,
    /// In a replay, the moment the panels end at (milliseconds since the epoch).
    pub at_ms: Option<i64>,
    /// A zoomed view's span (milliseconds since the epoch): drawn still, not followed.
    pub zoomed: Option<(i64, i64)>,
    /// Per panel: the thresholds of the alert rules watching its series, drawn on line charts.
    #[serde(default)]
    pub rules: Vec<Vec<RuleLine>>,
}

/// An alert rule's threshold as a chart draws it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleLine {
    pub rule: String,
    pub threshold: f64,
    /// `info`, `warning` or `critical`.
    pub severity: String,
}

/// Per panel of `dashboard` (its sources resolved), the rules whose source pattern takes the
/// panel's source and whose series is one of the panel's.
#[cfg(feature = "ssr")]
async fn read_rule_lines(dashboard: &Dashboard) -> Result<Vec<Vec<RuleLine>>, AppError> {
    let book = expect_context::<crate::alerts::SharedAlertBook>().0;
    let rules = book.rules().await?;
    Ok(dashboard
        .panels
        .iter()
        .map(|panel| {
            let series: Vec<Series> = panel.series.iter().filter_map(|s| s.parse().ok()).collect();
            rules
                .iter()
                .map(|stored| &stored.rule)
                .filter(|rule| rule.source.matches(&panel.source) && series.contains(&rule.series))
                .map(|rule| RuleLine {
                    rule: rule.name.clone(),
                    threshold: rule.threshold,
                    severity: rule.severity.as_str().to_owned(),
                })
                .collect()
        })
        .collect())
}

/// Buckets per line: about one per horizontal pixel of a panel.
#[cfg(feature = "ssr")]
const BUCKETS: i64 = 600;
/// Markers a dashboard keeps in view.
pub(super) const MARKERS_KEPT: usize = 200;
/// Most markers read for one span.
#[cfg(feature = "ssr")]
const MARKERS: usize = 500;

/// The width of a range's buckets, in milliseconds, as the metrics store answers it.
#[cfg(feature = "ssr")]
pub(super) fn step_ms(secs: i64) -> i64 {
    (crate::metrics::snap_width(secs as f64 / BUCKETS as f64) * 1000.0).round() as i64
}

/// The range's length in seconds, by its name in `?range=`.
#[cfg(feature = "ssr")]
pub(super) fn range_secs(range: &str) -> Result<i64, AppError> {
    RANGES
        .iter()
        .find(|(name, _)| *name == range)
        .map(|(_, secs)| *secs)
        .ok_or_else(|| AppError::Invalid(format!("unknown range {range:?}")))
}

/// Most values a variable offers.
#[cfg(feature = "ssr")]
const MAX_VALUES: usize = 500;

/// A dashboard as one identity sees it with the variables `asked` in the page's address.
#[cfg(feature = "ssr")]
pub(super) struct Readable {
    /// As stored.
    pub stored: Dashboard,
    /// With the variables replaced by their chosen values.
    pub resolved: Dashboard,
    pub variables: Vec<Choice>,
    /// The resolved panels' sources the identity may read.
    pub sources: Vec<String>,
    pub identity: crate::auth::Identity,
}

#[cfg(feature = "ssr")]
pub(super) async fn readable_board(
    name: String,
    asked: &BTreeMap<String, String>,
) -> Result<Option<Readable>, AppError> {
    let identity = crate::auth::identity()?;
    // A name no dashboard can have names none: it is not worth a query.
    if crate::dashboards::check_name(&name).is_err() {
        return Ok(None);
    }
    let store = expect_context::<crate::dashboards::SharedDashboards>().0;
    let Some(stored) = store.get(name).await? else {
        return Ok(None);
    };
    let history = expect_context::<crate::history::SharedHistory>().0;
    let mut variables = Vec::new();
    for variable in &stored.variables {
        let Ok(pattern) = crate::auth::Pattern::parse(&variable.sources) else {
            continue;
        };
        // The store filters by a part of the name; the pattern decides.
        let part = variable.sources.split('*').max_by_key(|p| p.len());
        let (_, found) = history
            .sources(
                part.unwrap_or_default().to_owned(),
                MAX_VALUES,
                0,
                identity.clone(),
            )
            .await?;
        let values = found
            .into_iter()
            .map(|(source, _)| source)
            .filter(|source| pattern.matches(source))
            .collect();
        let asked = asked.get(&variable.name).map(String::as_str);
        variables.push(Choice::new(variable, values, asked));
    }
    let mut resolved = stored.clone();
    resolved.resolve(&variables);
    // Sources outside the identity's rooms do not exist for it: their panels stay empty.
    let mut sources: Vec<String> = resolved
        .panels
        .iter()
        .map(|p| p.source.clone())
        .filter(|source| {
            crate::metrics::source_room(source).is_ok_and(|room| identity.may_read(room.as_str()))
        })
        .collect();
    sources.sort();
    sources.dedup();
    Ok(Some(Readable {
        stored,
        resolved,
        variables,
        sources,
        identity,
    }))
}

/// Every panel's series over `[from, to)` in buckets of `step_ms`; panels of sources not in
/// `sources` stay empty.
#[cfg(feature = "ssr")]
pub(super) async fn read_panels(
    dashboard: &Dashboard,
    sources: &[String],
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    step_ms: i64,
) -> Result<Vec<Vec<SeriesData>>, AppError> {
    let history = expect_context::<crate::history::SharedHistory>().0;
    let mut asked = Vec::new();
    for panel in dashboard
        .panels
        .iter()
        .filter(|p| sources.contains(&p.source))
    {
        for text in &panel.series {
            let series: Series = text.parse().map_err(AppError::Invalid)?;
            asked.push((panel.source.clone(), series));
        }
    }
    let mut ranges = history.ranges(asked, from, to, step_ms).await?.into_iter();
    Ok(dashboard
        .panels
        .iter()
        .map(|panel| {
            let shown = sources.contains(&panel.source);
            panel
                .series
                .iter()
                .map(|text| {
                    let buckets = if shown { ranges.next() } else { None };
                    SeriesData::from_buckets(text.clone(), step_ms, &buckets.unwrap_or_default())
                })
                .collect()
        })
        .collect())
}

/// The markers of `[from, to)` on a dashboard of `sources`: notices of room `notices` and of the
/// sources' rooms, and the sources' alert transitions, oldest first.
#[cfg(feature = "ssr")]
pub(super) async fn read_markers(
    sources: &[String],
    identity: &crate::auth::Identity,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Marker>, AppError> {
    use crate::{
        auth::Pattern,
        history::{Filter, Moment, NOTICES_ROOM, Query},
        protocol::EventKind,
    };
    let history = expect_context::<crate::history::SharedHistory>().0;
    // Each source's notices and alerts read apart: a busy source does not crowd out the others.
    let in_span = Filter {
        from: Some(Moment::At(from)),
        to: Some(Moment::At(to)),
        ..Filter::default()
    };
    let mut filters: Vec<Filter> = Vec::new();
    for source in sources {
        filters.extend(crate::metrics::source_room(source).ok().map(|room| Filter {
            room: Pattern::parse(room.as_str()).ok(),
            kinds: vec![EventKind::Notice],
            ..in_span.clone()
        }));
        filters.push(Filter {
            room: Pattern::parse(crate::alerts::ROOM).ok(),
            kinds: vec![EventKind::Alert],
            source: Pattern::parse(source).ok(),
            ..in_span.clone()
        });
    }
    filters.push(Filter {
        room: Pattern::parse(NOTICES_ROOM).ok(),
        kinds: vec![EventKind::Notice],
        ..in_span
    });
    let mut markers = Vec::new();
    for filter in filters {
        let query = Query {
            filter,
            limit: crate::history::MAX_PAGE,
            ..Query::default()
        };
        let page = history.events(query, identity.clone()).await?;
        markers.extend(page.events.iter().filter_map(|e| Marker::of(e, sources)));
    }
    markers.sort_by_key(|m| m.t_ms);
    let extra = markers.len().saturating_sub(MARKERS);
    markers.drain(..extra);
    Ok(markers)
}

/// A time as `?at=`, `?from=` or `?to=` give it (`field`): RFC 3339 or `now-1h`.
#[cfg(feature = "ssr")]
fn moment(field: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>, AppError> {
    crate::history::Moment::parse(text, crate::history::Zone::default())
        .map(|m| m.resolve(chrono::Utc::now()))
        .map_err(|reason| AppError::Invalid(format!("{field}: {reason}")))
}

/// The shortest span a chart zooms into.
pub const MIN_ZOOM_MS: i64 = 10_000;

/// A zoomed view's span from its `from` and `to`.
#[cfg(feature = "ssr")]
fn zoom_span(
    from: &str,
    to: &str,
) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>), AppError> {
    let (from, to) = (moment("from", from)?, moment("to", to)?);
    let span = (to - from).num_milliseconds();
    let longest = RANGES[RANGES.len() - 1].1 * 1000;
    if !(MIN_ZOOM_MS..=longest).contains(&span) {
        return Err(AppError::Invalid(format!(
            "from–to spans {} s to {} days",
            MIN_ZOOM_MS / 1000,
            longest / 86_400_000
        )));
    }
    Ok((from, to))
}

/// `vars`: the page's choice of each variable, by name. With `from` and `to` (RFC 3339 or
/// `now-1h`), the panels show that span, still (a zoom), and `range` and `at` are ignored.
#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn load_board(
    name: String,
    range: String,
    at: Option<String>,
    #[server(default)] vars: BTreeMap<String, String>,
    #[server(default)] from: Option<String>,
    #[server(default)] to: Option<String>,
) -> Result<BoardPage, AppError> {
    use crate::{error::answer, history::NOTICES_ROOM, protocol::RoomName};
    use futures::future::try_join_all;

    answer(async move {
        let zoomed = match (from.as_deref(), to.as_deref()) {
            (Some(from), Some(to)) => Some(zoom_span(from, to)?),
            (None, None) => None,
            _ => return Err(AppError::Invalid("a zoom needs both from and to".into())),
        };
        let replay_at = match zoomed {
            Some(_) => None,
            None => at.as_deref().map(|at| moment("at", at)).transpose()?,
        };
        let window_ms = match zoomed {
            Some((from, to)) => (to - from).num_milliseconds(),
            None => range_secs(&range)? * 1000,
        };
        let Some(Readable {
            stored,
            resolved,
            variables,
            sources,
            identity,
        }) = readable_board(name, &vars).await?
        else {
            return Ok(BoardPage {
                board: None,
                may_edit: crate::auth::identity()?.may_edit(),
            });
        };
        let history = expect_context::<crate::history::SharedHistory>().0;
        // Heads before history: an event committed in between is then pushed, not lost.
        let mut rooms: Vec<RoomName> = Vec::new();
        if replay_at.is_none() && zoomed.is_none() {
            rooms.extend(
                sources
                    .iter()
                    .filter_map(|s| crate::metrics::source_room(s).ok()),
            );
            rooms.extend(
                RoomName::parse(NOTICES_ROOM)
                    .ok()
                    .filter(|room| identity.may_read(room.as_str())),
            );
        }
        let heads = try_join_all(rooms.into_iter().map(|room| history.snapshot(room, 0))).await?;
        let to = match zoomed {
            Some((_, to)) => to,
            None => replay_at.unwrap_or_else(chrono::Utc::now),
        };
        let from = to
            .checked_sub_signed(chrono::Duration::milliseconds(window_ms))
            .unwrap_or(crate::history::EARLIEST);
        let step_ms = step_ms(window_ms / 1000);
        let panels = read_panels(&resolved, &sources, from, to, step_ms).await?;
        let markers = read_markers(&sources, &identity, from, to).await?;
        let rules = read_rule_lines(&resolved).await?;
        Ok(BoardPage {
            board: Some(BoardData {
                dashboard: stored,
                variables,
                window_ms,
                now_ms: to.timestamp_millis(),
                heads,
                panels,
                markers,
                sources,
                at_ms: replay_at.map(|t| t.timestamp_millis()),
                zoomed: zoomed.map(|(from, to)| (from.timestamp_millis(), to.timestamp_millis())),
                rules,
            }),
            may_edit: identity.may_edit(),
        })
    })
    .await
}

/// Refuses a change from an identity that may not edit dashboards.
#[cfg(feature = "ssr")]
fn require_edit() -> Result<(), AppError> {
    if crate::auth::identity()?.may_edit() {
        Ok(())
    } else {
        Err(AppError::Forbidden("you may not change dashboards".into()))
    }
}

#[server(output = crate::json::Json)]
pub async fn create_dashboard(name: String) -> Result<(), AppError> {
    use crate::{
        dashboards::{SharedDashboards, check_name},
        error::answer,
    };

    answer(async move {
        require_edit()?;
        check_name(&name).map_err(AppError::Invalid)?;
        let store = expect_context::<SharedDashboards>().0;
        store.create(name.clone()).await?;
        leptos_axum::redirect(&format!("/d/{name}"));
        Ok(())
    })
    .await
}

#[server(output = crate::json::Json)]
pub async fn delete_dashboard(name: String) -> Result<(), AppError> {
    use crate::error::answer;

    answer(async move {
        require_edit()?;
        crate::dashboards::check_name(&name).map_err(AppError::Invalid)?;
        let store = expect_context::<crate::dashboards::SharedDashboards>().0;
        store.delete(name).await?;
        leptos_axum::redirect("/");
        Ok(())
    })
    .await
}

/// A panel form's fields, as typed: `series` is a comma-separated list (`metrics::Series`),
/// empty thresholds mean none.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PanelForm {
    pub title: String,
    pub kind: String,
    pub source: String,
    pub series: String,
    pub unit: String,
    pub warn: String,
    pub critical: String,
}

#[cfg(any(feature = "ssr", test))]
impl PanelForm {
    /// The panel these fields describe, or what is wrong with them.
    pub fn panel(&self) -> Result<Panel, String> {
        let number = |field: &str, text: &str| {
            text.trim()
                .parse::<f64>()
                .map_err(|_| format!("{field} must be a number"))
        };
        let thresholds = match (self.warn.trim(), self.critical.trim()) {
            ("", "") => None,
            (w, c) => Some(crate::dashboards::Thresholds {
                warn: number("warn", w)?,
                critical: number("critical", c)?,
            }),
        };
        let panel = Panel {
            title: self.title.trim().to_owned(),
            kind: PanelKind::parse(&self.kind).ok_or("unknown panel type")?,
            source: self.source.trim().to_owned(),
            series: Series::parse_list(&self.series)?
                .iter()
                .map(Series::to_string)
                .collect(),
            unit: Unit::parse(&self.unit).ok_or("unknown unit")?,
            thresholds,
            width: None,
        };
        panel.check()?;
        Ok(panel)
    }
}

impl From<&Panel> for PanelForm {
    fn from(panel: &Panel) -> Self {
        let (warn, critical) = panel.thresholds.map_or_else(Default::default, |t| {
            (t.warn.to_string(), t.critical.to_string())
        });
        Self {
            title: panel.title.clone(),
            kind: panel.kind.as_str().to_owned(),
            source: panel.source.clone(),
            series: panel.series.join(", "),
            unit: panel.unit.as_str().to_owned(),
            warn,
            critical,
        }
    }
}

/// Where an edit of dashboard `name` goes back to: the page it was made on, its range and
/// variables kept, else the dashboard as it opens.
#[cfg(feature = "ssr")]
fn return_to(name: &str) -> String {
    let board = format!("/d/{name}");
    let referer = use_context::<http::request::Parts>().and_then(|request| {
        let referer = request.headers.get(http::header::REFERER)?.to_str().ok()?;
        // Only the path is kept: the redirect stays on this site whatever the header says.
        let (_, rest) = referer.split_once("://")?;
        let path = &rest[rest.find('/')?..];
        let query = path.strip_prefix(board.as_str())?;
        (query.is_empty() || query.starts_with('?')).then(|| path.to_owned())
    });
    referer.unwrap_or(board)
}

/// The dashboard `name` at `version`, the one its editor was showing; refused when it has
/// changed since, as the panel `index` may be another one now.
#[cfg(feature = "ssr")]
async fn board_at(name: &str, version: i64) -> Result<Dashboard, AppError> {
    let store = expect_context::<crate::dashboards::SharedDashboards>().0;
    let board = store
        .get(name.to_owned())
        .await?
        .ok_or_else(|| AppError::NotFound("dashboard".into()))?;
    if board.version != version {
        return Err(crate::dashboards::changed_since());
    }
    Ok(board)
}

/// Replaces the panel at `index`, or adds one at the end when there is no index; `version` is
/// the dashboard's as the editor showed it.
#[server(output = crate::json::Json)]
pub async fn save_panel(
    dashboard: String,
    version: i64,
    index: Option<usize>,
    panel: PanelForm,
) -> Result<(), AppError> {
    use crate::{
        dashboards::{MAX_PANELS, SharedDashboards},
        error::answer,
    };

    answer(async move {
        require_edit()?;
        crate::dashboards::check_name(&dashboard).map_err(AppError::Invalid)?;
        let panel = panel.panel().map_err(AppError::Invalid)?;
        let mut board = board_at(&dashboard, version).await?;
        match index {
            Some(i) => {
                let stored = board
                    .panels
                    .get_mut(i)
                    .ok_or_else(|| AppError::NotFound("panel".into()))?;
                // The form does not carry the panel's place on the grid.
                *stored = Panel {
                    width: stored.width,
                    ..panel
                };
            }
            None if board.panels.len() >= MAX_PANELS => {
                return Err(AppError::Invalid(format!(
                    "a dashboard holds at most {MAX_PANELS} panels"
                )));
            }
            None => board.panels.push(panel),
        }
        board.check().map_err(AppError::Invalid)?;
        expect_context::<SharedDashboards>().0.update(board).await?;
        leptos_axum::redirect(&return_to(&dashboard));
        Ok(())
    })
    .await
}

#[server(output = crate::json::Json)]
pub async fn delete_panel(dashboard: String, version: i64, index: usize) -> Result<(), AppError> {
    use crate::error::answer;

    answer(async move {
        require_edit()?;
        crate::dashboards::check_name(&dashboard).map_err(AppError::Invalid)?;
        let mut board = board_at(&dashboard, version).await?;
        if index < board.panels.len() {
            board.panels.remove(index);
            let store = expect_context::<crate::dashboards::SharedDashboards>().0;
            store.update(board).await?;
        }
        leptos_axum::redirect(&return_to(&dashboard));
        Ok(())
    })
    .await
}

/// How a panel moves on the grid: a place earlier or later, a column wider or narrower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrange {
    Earlier,
    Later,
    Wider,
    Narrower,
}

#[server(output = crate::json::Json)]
pub async fn arrange_panel(
    dashboard: String,
    version: i64,
    index: usize,
    change: Arrange,
) -> Result<(), AppError> {
    use crate::{dashboards::MAX_WIDTH, error::answer};

    answer(async move {
        require_edit()?;
        crate::dashboards::check_name(&dashboard).map_err(AppError::Invalid)?;
        let mut board = board_at(&dashboard, version).await?;
        let last = board.panels.len().saturating_sub(1);
        let panel = board
            .panels
            .get_mut(index)
            .ok_or_else(|| AppError::NotFound("panel".into()))?;
        let width = panel.width();
        match change {
            Arrange::Earlier => board.panels.swap(index, index.saturating_sub(1)),
            Arrange::Later => board.panels.swap(index, (index + 1).min(last)),
            Arrange::Wider => panel.width = Some((width + 1).min(MAX_WIDTH)),
            Arrange::Narrower => panel.width = Some(width.saturating_sub(1).max(1)),
        }
        let store = expect_context::<crate::dashboards::SharedDashboards>().0;
        store.update(board).await?;
        leptos_axum::redirect(&return_to(&dashboard));
        Ok(())
    })
    .await
}

/// Replaces dashboard `name` at `version` with the one in `json` (an export, edited or from
/// elsewhere); the name in the JSON is ignored, so an export can be imported under another name.
#[server(output = crate::json::Json)]
pub async fn import_dashboard(name: String, version: i64, json: String) -> Result<(), AppError> {
    use crate::error::answer;

    answer(async move {
        require_edit()?;
        let mut value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| AppError::Invalid(format!("not JSON: {e}")))?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("name".into(), name.clone().into());
            fields.insert("version".into(), version.into());
        }
        let dashboard =
            Dashboard::from_json(value.to_string().as_bytes()).map_err(AppError::Invalid)?;
        board_at(&name, version).await?;
        let store = expect_context::<crate::dashboards::SharedDashboards>().0;
        store.update(dashboard).await?;
        leptos_axum::redirect(&return_to(&name));
        Ok(())
    })
    .await
}

type PanelSignal = RwSignal<Vec<SeriesData>>;

/// The edits a dashboard page makes: the page reads its data again after each edit the server
/// took. A refused save or import leaves its form as typed, with the reason beside it.
#[derive(Clone, Copy)]
pub(super) struct Edits {
    /// Counts the edits that change what the page shows.
    taken: RwSignal<u32>,
}

impl Edits {
    pub(super) fn new() -> Self {
        Self {
            taken: RwSignal::new(0),
        }
    }

    /// Posts after whose every answer the page reads its data again: taken or refused, the page
    /// it was made on may have been behind the dashboard (a conflict).
    fn any_answer<F: ServerFn<Output = ()> + 'static>(self) -> Posted<F> {
        let posted = Posted::new();
        Effect::new(move || {
            if posted.version().get() > 0 {
                self.taken.update(|n| *n += 1);
            }
        });
        posted
    }

    /// Posts after whose answer the page reads its data again if the server took it.
    fn taken_answer<F: ServerFn<Output = ()> + 'static>(self) -> Posted<F> {
        let posted = Posted::new();
        Effect::new(move || {
            if posted.value().with(|v| matches!(v, Some(Ok(())))) {
                self.taken.update(|n| *n += 1);
            }
        });
        posted
    }
}

#[component]
pub fn Board() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let range = move || {
        query
            .read()
            .get("range")
            .unwrap_or_else(|| DEFAULT_RANGE.to_owned())
    };
    let at = move || query.read().get("at").filter(|at| !at.is_empty());
    // Every other parameter may choose a variable; the dashboard's own say which do. (Extended,
    // not collected: collecting a map sorts its entries first, and the sort is 5 KB of wasm.)
    let vars = move || {
        let mut vars = BTreeMap::new();
        query.with(|q| {
            vars.extend(
                q.latest_values()
                    .filter(|(key, _)| !matches!(key.as_ref(), "range" | "at" | "from" | "to"))
                    .map(|(key, value)| (key.to_string(), value.to_owned())),
            )
        });
        vars
    };
    let edits = Edits::new();
    let span = move || (query.read().get("from"), query.read().get("to"));
    let data = crate::json::data(
        move || (name(), range(), at(), vars(), span(), edits.taken.get()),
        |(name, range, at, vars, (from, to), _)| load_board(name, range, at, vars, from, to),
    );
    loaded(data, move |page: BoardPage| match page.board {
        Some(data) => {
            view! { <BoardBody data range=range() edits may_edit=page.may_edit/> }.into_any()
        }
        None => view! { <Missing name=name() may_edit=page.may_edit edits/> }.into_any(),
    })
}

#[component]
fn Missing(name: String, may_edit: bool, edits: Edits) -> impl IntoView {
    view! {
        <section class="missing">
            <h1>"No dashboard named " <code>{name.clone()}</code></h1>
            {may_edit.then(|| create(Creating { name, edits }))}
        </section>
    }
}

/// What a page shows of `live`: everything pushed, or while `paused` what there was when it
/// paused (pushes go on arriving in `live`, and show on resume).
fn held<T: Clone + PartialEq + Send + Sync + 'static>(
    live: RwSignal<T>,
    paused: RwSignal<bool>,
) -> Signal<T> {
    Memo::new(move |before: Option<&T>| match before {
        Some(before) if paused.get() => before.clone(),
        _ => live.get(),
    })
    .into()
}

#[component]
pub(super) fn BoardBody(
    data: BoardData,
    range: String,
    edits: Edits,
    may_edit: bool,
) -> impl IntoView {
    Crosshair::provide();
    let name = data.dashboard.name.clone();
    let version = data.dashboard.version;
    let mut resolved = data.dashboard.clone();
    resolved.resolve(&data.variables);
    // One signal per panel, fed by one subscription per source room; each panel as stored
    // (its form keeps `$source`) and with its source as chosen.
    let mut rules = data.rules.into_iter();
    let panels: Vec<(Panel, String, PanelSignal, Vec<RuleLine>)> = data
        .dashboard
        .panels
        .into_iter()
        .zip(resolved.panels)
        .zip(data.panels)
        .map(|((panel, shown), series)| {
            let rules = rules.next().unwrap_or_default();
            (panel, shown.source, RwSignal::new(series), rules)
        })
        .collect();
    let window_ms = data.window_ms;
    let markers = RwSignal::new(data.markers);
    let replay = data.at_ms.is_some();
    let paused = RwSignal::new(false);
    let add_marker = move |marker: Marker| {
        markers.update(|all| {
            // The same event can come twice: pushed and read, or kept by the page's alert feed
            // from before this dashboard opened.
            if all
                .iter()
                .any(|m| m.room == marker.room && m.seq == marker.seq)
            {
                return;
            }
            all.push(marker);
            let extra = all.len().saturating_sub(MARKERS_KEPT);
            all.drain(..extra);
        })
    };
    for head in data.heads {
        let source = crate::metrics::room_source(&head.room).map(str::to_owned);
        // Per series name: each panel showing a series of that name, and where among the
        // panel's series it is.
        let mut targets: HashMap<String, Vec<(Series, PanelSignal, usize)>> = HashMap::new();
        for (panel, _, signal, _) in panels
            .iter()
            .filter(|(_, shown, ..)| Some(shown) == source.as_ref())
        {
            for (i, text) in panel.series.iter().enumerate() {
                if let Ok(series) = text.parse::<Series>() {
                    let name = series.name.clone();
                    targets.entry(name).or_default().push((series, *signal, i));
                }
            }
        }
        follow_events(head, move |event, _| {
            if let Some(marker) = Marker::of(event, &[]) {
                return add_marker(marker);
            }
            for point in crate::metrics::event_points(&event.data, event.ts) {
                let shown = targets.get(&point.series).into_iter().flatten();
                for (_, signal, i) in shown.filter(|(series, ..)| series.is(&point)) {
                    signal.update(|series| {
                        series[*i].push(point.ts.timestamp_millis(), point.value, window_ms)
                    });
                }
            }
        });
    }
    if !replay {
        // Alerts come through the page's one follower of room `alerts`.
        let sources = data.sources.clone();
        let recent = super::AlertFeed::expect().recent;
        let seen = StoredValue::new(0i64);
        Effect::new(move |_| {
            recent.with(|events| {
                for event in events.iter().filter(|e| e.seq > seen.get_value()) {
                    seen.set_value(event.seq);
                    if let Some(marker) = Marker::of(event, &sources) {
                        add_marker(marker);
                    }
                }
            })
        });
    }
    let signals: Vec<PanelSignal> = panels.iter().map(|(_, _, signal, _)| *signal).collect();
    let now_ms = data.now_ms;
    let delete = Posted::<DeleteDashboard>::new();
    let import = edits.taken_answer::<ImportDashboard>();
    // In a replay, other ranges and variables stay at the replayed moment, even one the
    // address gave relative to now.
    let at = StoredValue::new(
        data.at_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    let mut chosen = BTreeMap::new();
    chosen.extend(
        data.variables
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.chosen.clone()?))),
    );
    let player = data.at_ms.map(|at_ms| {
        let replay = ReplayOf {
            name: name.clone(),
            range: range.clone(),
            vars: chosen,
            at_ms,
            window_ms,
            panels: signals,
            markers,
        };
        view! { <Replay replay/> }
    });
    // Links and pickers keep the rest of the address: the range keeps the variables, a variable
    // keeps the range (and a replay's moment, or a zoom). A range ends a zoom.
    let query = use_query_map();
    let with = move |key: &str, value: &str| {
        let mut q = query.get_untracked();
        if let Some(at) = at.get_value() {
            q.replace("at", at);
        }
        if key == "range" {
            q.remove("from");
            q.remove("to");
        }
        q.replace(key.to_owned(), value.to_owned());
        q.to_query_string()
    };
    let navigate = leptos_router::hooks::use_navigate();
    if !replay {
        zoom_from_charts(query, window_ms, navigate.clone());
    }
    let zoomed = data.zoomed.map(|(from, to)| {
        let time = |t: i64| {
            chrono::DateTime::from_timestamp_millis(t)
                .map(|t| crate::format::second(&t))
                .unwrap_or_default()
        };
        // Markup as text (`markup`), here and in the ranges and pickers below.
        let html = format!(
            r#"{} – {} UTC <a href="{}">Back to live</a>"#,
            time(from),
            time(to),
            Text(&with("range", &range))
        );
        view! { <p class="zoomed" data-testid="zoomed" inner_html=html></p> }
    });
    let pickers = data
        .variables
        .into_iter()
        .map(|choice| {
            let navigate = navigate.clone();
            let key = choice.name.clone();
            let mut html = String::new();
            query.with_untracked(|q| {
                for (k, v) in q.latest_values().filter(|(k, _)| *k != key.as_str()) {
                    let _ = write!(
                        html,
                        r#"<input type="hidden" name="{}" value="{}">"#,
                        Text(k),
                        Text(v)
                    );
                }
            });
            let name = Text(&choice.name);
            let _ = write!(html, r#"<label>${name} <select name="{name}">"#);
            for v in &choice.values {
                let selected = if Some(v) == choice.chosen.as_ref() {
                    " selected"
                } else {
                    ""
                };
                let _ = write!(
                    html,
                    r#"<option value="{}"{selected}>{}</option>"#,
                    Text(v),
                    Text(v)
                );
            }
            html.push_str(
                r#"</select></label><noscript><button type="submit">Show</button></noscript>"#,
            );
            // The select's change comes up to its form.
            view! {
                <form method="get" class="variable" inner_html=html on:change=move |ev| {
                    navigate(&with(&key, &event_target_value(&ev)), Default::default())
                }></form>
            }
        })
        .collect_view();
    let mut ranges = String::new();
    for (r, _) in RANGES {
        // A plain link: the router's <A> marks every link to this path current.
        let current = if *r == range {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(
            ranges,
            r#"<a href="{}"{current}>{r}</a>"#,
            Text(&with("range", r))
        );
    }
    let shown_markers = held(markers, paused);
    let adding = edits.taken_answer::<SavePanel>();

    view! {
        <header class="board-head">
            <h1>{name.clone()}</h1>
            <nav class="ranges" aria-label="time range" inner_html=ranges></nav>
            {pickers}
            {zoomed}
            {(!replay && data.zoomed.is_none()).then(|| view! {
                <button type="button" class="pause" aria-pressed=move || paused.get().to_string()
                    on:click=move |_| paused.update(|p| *p = !*p)>
                    {move || if paused.get() { "Resume live" } else { "Pause live" }}
                </button>
            })}
            <a class="export" href=format!("/api/dashboards/{name}") download=format!("{name}.json")>"Export JSON"</a>
        </header>
        <div class="panels">
            {panels
                .into_iter()
                .enumerate()
                .map(|(index, (panel, source, series, rules))| {
                    let series = held(series, paused);
                    view! { <PanelView dashboard=name.clone() version index panel source series rules markers=shown_markers window_ms now_ms edits may_edit/> }
                })
                .collect_view()}
        </div>
        {player}
        {may_edit.then(|| board_edit(BoardEdits { name: name.clone(), version, adding, import, delete }))}
    }
}

#[component]
fn PanelView(
    dashboard: String,
    version: i64,
    index: usize,
    /// As stored, for its edit form.
    panel: Panel,
    /// Its source as shown: a variable's chosen value.
    source: String,
    series: Signal<Vec<SeriesData>>,
    rules: Vec<RuleLine>,
    markers: Signal<Vec<Marker>>,
    window_ms: i64,
    now_ms: i64,
    edits: Edits,
    may_edit: bool,
) -> impl IntoView {
    let (unit, thresholds) = (panel.unit, panel.thresholds);
    let body = match panel.kind {
        PanelKind::Line => {
            view! { <LineChart series markers window_ms now_ms unit thresholds rules/> }.into_any()
        }
        PanelKind::Stat => view! { <Stat series unit thresholds/> }.into_any(),
        PanelKind::Gauge => view! { <Gauge series unit thresholds/> }.into_any(),
        kind @ (PanelKind::Table | PanelKind::Logs) => {
            let rare = RarePanel {
                series,
                markers,
                source: source.clone(),
                unit,
                thresholds,
            };
            if kind == PanelKind::Table {
                table(rare)
            } else {
                logs(rare)
            }
            .into_any()
        }
    };
    let width = panel.width();
    let edits = PanelEdits {
        dashboard,
        version,
        index,
        title: panel.title.clone(),
        form: PanelForm::from(&panel),
        save: edits.taken_answer::<SavePanel>(),
        arrange: edits.any_answer::<ArrangePanel>(),
        remove: edits.any_answer::<DeletePanel>(),
    };
    view! {
        <article
            class=format!("panel panel-{}", panel.kind.as_str())
            data-width=width
            data-testid="panel"
        >
            <header class="panel-head">
                <h2>{panel.title}</h2>
                <span class="source">{source}</span>
                {may_edit.then(|| panel_delete(edits.clone()))}
            </header>
            {body}
            {may_edit.then(|| panel_edit(edits))}
        </article>
    }
}

/// What a panel's edit forms post with, and where their answers go.
#[derive(Clone)]
struct PanelEdits {
    dashboard: String,
    version: i64,
    index: usize,
    title: String,
    /// The panel as stored, for its form.
    form: PanelForm,
    save: Posted<SavePanel>,
    arrange: Posted<ArrangePanel>,
    remove: Posted<DeletePanel>,
}

/// What the dashboard's own edit forms post with, and where their answers go.
#[derive(Clone)]
struct BoardEdits {
    name: String,
    version: i64,
    adding: Posted<SavePanel>,
    import: Posted<ImportDashboard>,
    delete: Posted<DeleteDashboard>,
}

/// A table or logs panel's data.
#[derive(Clone)]
struct RarePanel {
    series: Signal<Vec<SeriesData>>,
    markers: Signal<Vec<Marker>>,
    source: String,
    unit: Unit,
    thresholds: Option<Thresholds>,
}

// Only those who may edit see the editor, and few dashboards have tables or logs: their code
// comes with the pages that show them (docs/benchmarks.md, "The page's weight").
deferred! {
    dashboard_editor: fn panel_delete(edits: PanelEdits) => panel_delete_form;
    dashboard_editor: fn panel_edit(edits: PanelEdits) => panel_edit_form;
    dashboard_editor: fn board_edit(edits: BoardEdits) => board_edit_form;
    dashboard_editor: fn create(creating: Creating) => create_form;
    rare_panels: fn table(panel: RarePanel) => table_view;
    rare_panels: fn logs(panel: RarePanel) => logs_view;
}

/// A missing dashboard, to be created where the page stands: the server's redirect is to the
/// address the page is already at, so the page reads its data again once the server took it.
#[derive(Clone)]
struct Creating {
    name: String,
    edits: Edits,
}

fn create_form(Creating { name, edits }: Creating) -> AnyView {
    let create = edits.taken_answer::<CreateDashboard>();
    view! {
        <PostForm posted=create>
            <input type="hidden" name="name" value=name/>
            <button type="submit">"Create it"</button>
        </PostForm>
    }
    .into_any()
}

fn table_view(
    RarePanel {
        series,
        unit,
        thresholds,
        ..
    }: RarePanel,
) -> AnyView {
    view! { <ValueTable series unit thresholds/> }.into_any()
}

fn logs_view(
    RarePanel {
        markers, source, ..
    }: RarePanel,
) -> AnyView {
    view! { <Logs markers source/> }.into_any()
}

fn panel_delete_form(edits: PanelEdits) -> AnyView {
    view! {
        <PostForm posted=edits.remove attr:class="panel-delete">
            <input type="hidden" name="dashboard" value=edits.dashboard/>
            <input type="hidden" name="version" value=edits.version/>
            <input type="hidden" name="index" value=edits.index/>
            <button type="submit" aria-label=format!("Delete panel {}", edits.title)>"×"</button>
        </PostForm>
    }
    .into_any()
}

fn panel_edit_form(edits: PanelEdits) -> AnyView {
    let PanelEdits {
        dashboard,
        version,
        index,
        title,
        form,
        save,
        arrange,
        ..
    } = edits;
    // Buttons, so the keyboard arranges the grid as well as a pointer.
    let arrangements = [
        ("earlier", "↑", "Move earlier"),
        ("later", "↓", "Move later"),
        ("narrower", "⇥⇤", "Narrower"),
        ("wider", "⇤⇥", "Wider"),
    ]
    .map(|(change, sign, label)| {
        let (dashboard, title) = (dashboard.clone(), title.clone());
        view! {
            <PostForm posted=arrange>
                <input type="hidden" name="dashboard" value=dashboard/>
                <input type="hidden" name="version" value=version/>
                <input type="hidden" name="index" value=index/>
                <input type="hidden" name="change" value=change/>
                <button type="submit" aria-label=format!("{label}: {title}") title=label>{sign}</button>
            </PostForm>
        }
    })
    .collect_view();
    view! {
        <details class="panel-edit" open=move || save.refusal().is_some()>
            <summary aria-label=format!("Edit panel {title}")>"Edit"</summary>
            <div class="arrange" role="group" aria-label="Place on the grid">{arrangements}</div>
            <PanelEditor dashboard version index=Some(index) panel=form save/>
        </details>
    }
    .into_any()
}

fn board_edit_form(edits: BoardEdits) -> AnyView {
    let BoardEdits {
        name,
        version,
        adding,
        import,
        delete,
    } = edits;
    let (import_to, delete_from) = (name.clone(), name.clone());
    // Kept open while the last panel added was refused, so its reason stays in sight.
    view! {
        <details class="edit" open=move || adding.refusal().is_some()>
            <summary>"Edit dashboard"</summary>
            <PanelEditor dashboard=name version index=None panel=PanelForm::default() save=adding/>
            <PostForm posted=import attr:class="import">
                <h2>"Import JSON"</h2>
                <input type="hidden" name="name" value=import_to/>
                <input type="hidden" name="version" value=version/>
                <label>
                    "Dashboard JSON (replaces this dashboard's variables and panels)"
                    <textarea name="json" required rows="6" spellcheck="false"></textarea>
                </label>
                <button type="submit">"Import"</button>
                <p class="error" role="alert">
                    {move || import.refusal()}
                </p>
            </PostForm>
            <PostForm posted=delete attr:class="danger">
                <input type="hidden" name="name" value=delete_from/>
                <button type="submit">"Delete this dashboard"</button>
            </PostForm>
        </details>
    }
    .into_any()
}

/// Takes the charts' zooms to the address: a span dragged across becomes `from`/`to`, still; a
/// zoom out that reaches the present goes back to live at the shortest range that holds it.
fn zoom_from_charts(
    query: Memo<leptos_router::params::ParamsMap>,
    window_ms: i64,
    navigate: impl Fn(&str, leptos_router::NavigateOptions) + Clone + 'static,
) {
    let zoom = super::chart::Zoom::provide();
    #[cfg(feature = "hydrate")]
    Effect::new(move || {
        let Some((from, to)) = zoom.get() else {
            return;
        };
        let mut q = query.get_untracked();
        for key in ["range", "at", "from", "to"] {
            q.remove(key);
        }
        let span = to - from;
        if to >= js_sys::Date::now() as i64 && span > window_ms {
            let range = RANGES.iter().find(|(_, secs)| secs * 1000 >= span);
            q.replace(
                "range",
                range.unwrap_or(&RANGES[RANGES.len() - 1]).0.to_owned(),
            );
        } else {
            let time = |t: i64| {
                chrono::DateTime::from_timestamp_millis(t)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default()
            };
            q.replace("from", time(from));
            q.replace("to", time(to));
        }
        navigate(&q.to_query_string(), Default::default());
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (zoom, query, window_ms, navigate);
}

/// The form that adds a panel (no `index`) or changes the one at `index`, filled with `panel`.
#[component]
fn PanelEditor(
    dashboard: String,
    version: i64,
    index: Option<usize>,
    panel: PanelForm,
    /// Where its saves' answers go: a refused save shows beside the form as typed.
    save: Posted<SavePanel>,
) -> impl IntoView {
    let options = |all: &[&'static str], chosen: &str| {
        all.iter()
            .map(|v| view! { <option value=*v selected=*v == chosen>{*v}</option> })
            .collect_view()
    };
    let kinds = options(&PanelKind::ALL.map(PanelKind::as_str), &panel.kind);
    let units = options(&Unit::ALL.map(Unit::as_str), &panel.unit);
    view! {
        <PostForm posted=save attr:class="panel-form">
            <h2>{if index.is_some() { "Change this panel" } else { "Add a panel" }}</h2>
            <input type="hidden" name="dashboard" value=dashboard/>
            <input type="hidden" name="version" value=version/>
            {index.map(|i| view! { <input type="hidden" name="index" value=i/> })}
            <label>"Title" <input name="panel[title]" required maxlength="80" value=panel.title/></label>
            <label>"Type " <select name="panel[kind]">{kinds}</select></label>
            <label>"Source" <input name="panel[source]" required placeholder="host:web-1" value=panel.source/></label>
            <label>
                "Series (comma-separated)"
                <input name="panel[series]" placeholder="cpu.total (none for logs)" value=panel.series/>
            </label>
            <label>"Unit " <select name="panel[unit]">{units}</select></label>
            <label>"Warn at" <input name="panel[warn]" inputmode="decimal" value=panel.warn/></label>
            <label>"Critical at" <input name="panel[critical]" inputmode="decimal" value=panel.critical/></label>
            <button type="submit">{if index.is_some() { "Save panel" } else { "Add panel" }}</button>
            <p class="error" role="alert">{move || save.refusal()}</p>
        </PostForm>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panel_form_filled_from_a_panel_gives_that_panel_back() {
        for panel in Dashboard::host("host:vm").panels {
            assert_eq!(PanelForm::from(&panel).panel(), Ok(panel));
        }
    }

    #[test]
    fn a_panel_form_names_what_is_wrong() {
        let form = PanelForm::from(&Dashboard::host("host:vm").panels[0]);
        let with = |change: fn(&mut PanelForm)| {
            let mut form = form.clone();
            change(&mut form);
            form.panel().unwrap_err()
        };
        assert_eq!(with(|f| f.warn = "lots".into()), "warn must be a number");
        assert_eq!(with(|f| f.critical.clear()), "critical must be a number");
        assert_eq!(with(|f| f.kind = "pie".into()), "unknown panel type");
        assert_eq!(with(|f| f.unit = "furlongs".into()), "unknown unit");
        assert_eq!(with(|f| f.series = " ".into()), "a panel shows 1–8 series");
        let mut bare = form.clone();
        (bare.warn, bare.critical) = (String::new(), String::new());
        assert_eq!(bare.panel().unwrap().thresholds, None);
    }
}
