//! `/d/{name}`: a saved dashboard, its panels drawn from history and moved on by pushes, and the
//! forms that edit it.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use super::{
    chart::{Gauge, LineChart, SeriesData, Stat},
    follow, loaded,
};
use crate::{
    dashboards::{Dashboard, Panel, PanelKind, Unit},
    protocol::RoomName,
};

/// The time ranges a dashboard offers, as they appear in `?range=`.
pub const RANGES: [(&str, i64); 5] = [
    ("5m", 5 * 60),
    ("15m", 15 * 60),
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 24 * 3600),
];
const DEFAULT_RANGE: &str = "15m";

/// A request its sender can fix: answered 400, not as a failure of the server.
#[cfg(feature = "ssr")]
fn refused(message: impl std::fmt::Display) -> ServerFnError {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::BAD_REQUEST);
    }
    ServerFnError::new(message)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoardData {
    pub dashboard: Dashboard,
    pub window_ms: i64,
    pub now_ms: i64,
    /// Each source room the panels show, with its head when the page was drawn.
    pub heads: Vec<(RoomName, i64)>,
    /// Per panel, per series: the range's buckets as (time, average).
    pub panels: Vec<Vec<SeriesData>>,
}

#[server]
pub async fn load_board(name: String, range: String) -> Result<Option<BoardData>, ServerFnError> {
    use crate::{dashboards::SharedDashboards, history::SharedHistory, metrics::source_room};
    use futures::future::try_join_all;

    /// Buckets per line: about one per horizontal pixel of a panel.
    const BUCKETS: u32 = 600;

    let secs = RANGES
        .iter()
        .find(|(name, _)| *name == range)
        .map(|(_, secs)| *secs)
        .ok_or_else(|| refused(format!("unknown range {range:?}")))?;
    let history = expect_context::<SharedHistory>().0;
    let store = expect_context::<SharedDashboards>().0;
    let Some(dashboard) = store.get(name).await.map_err(ServerFnError::new)? else {
        return Ok(None);
    };
    let to = chrono::Utc::now();
    let from = to - chrono::Duration::seconds(secs);
    let panels = try_join_all(dashboard.panels.iter().map(|panel| {
        try_join_all(panel.series.iter().map(|name| {
            let buckets = history.range(panel.source.clone(), name.clone(), from, to, BUCKETS);
            async move {
                let buckets = buckets.await.map_err(ServerFnError::new)?;
                Ok::<_, ServerFnError>(SeriesData::from_buckets(name.clone(), &buckets))
            }
        }))
    }))
    .await?;
    let mut rooms: Vec<RoomName> = dashboard
        .panels
        .iter()
        .filter_map(|p| source_room(&p.source).ok())
        .collect();
    rooms.sort();
    rooms.dedup();
    let heads =
        try_join_all(rooms.into_iter().map(|room| {
            let snapshot = history.snapshot(room.clone(), 0);
            async move {
                Ok::<_, ServerFnError>((room, snapshot.await.map_err(ServerFnError::new)?.head))
            }
        }))
        .await?;
    Ok(Some(BoardData {
        dashboard,
        window_ms: secs * 1000,
        now_ms: to.timestamp_millis(),
        heads,
        panels,
    }))
}

#[server]
pub async fn create_dashboard(name: String) -> Result<(), ServerFnError> {
    use crate::dashboards::{SharedDashboards, check_name};

    check_name(&name).map_err(refused)?;
    let store = expect_context::<SharedDashboards>().0;
    if store
        .get(name.clone())
        .await
        .map_err(ServerFnError::new)?
        .is_none()
    {
        let dashboard = Dashboard {
            name: name.clone(),
            panels: Vec::new(),
        };
        store.save(dashboard).await.map_err(ServerFnError::new)?;
    }
    leptos_axum::redirect(&format!("/d/{name}"));
    Ok(())
}

#[server]
pub async fn delete_dashboard(name: String) -> Result<(), ServerFnError> {
    let store = expect_context::<crate::dashboards::SharedDashboards>().0;
    store.delete(name).await.map_err(ServerFnError::new)?;
    leptos_axum::redirect("/");
    Ok(())
}

/// The add-panel form's fields, as typed: `series` is comma-separated, empty thresholds mean none.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PanelForm {
    pub title: String,
    pub kind: String,
    pub source: String,
    pub series: String,
    pub unit: String,
    pub warn: String,
    pub critical: String,
}

#[server]
pub async fn add_panel(dashboard: String, panel: PanelForm) -> Result<(), ServerFnError> {
    use crate::dashboards::{MAX_PANELS, SharedDashboards, Thresholds};

    let number = |field: &str, text: &str| {
        text.trim()
            .parse::<f64>()
            .map_err(|_| refused(format!("{field} must be a number")))
    };
    let thresholds = match (panel.warn.trim(), panel.critical.trim()) {
        ("", "") => None,
        (w, c) => Some(Thresholds {
            warn: number("warn", w)?,
            critical: number("critical", c)?,
        }),
    };
    let panel = Panel {
        title: panel.title.trim().to_owned(),
        kind: PanelKind::parse(&panel.kind).ok_or_else(|| refused("unknown panel type"))?,
        source: panel.source.trim().to_owned(),
        series: panel
            .series
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        unit: Unit::parse(&panel.unit).ok_or_else(|| refused("unknown unit"))?,
        thresholds,
    };
    panel.check().map_err(refused)?;
    let store = expect_context::<SharedDashboards>().0;
    let mut board = store
        .get(dashboard.clone())
        .await
        .map_err(ServerFnError::new)?
        .ok_or_else(|| refused("no such dashboard"))?;
    if board.panels.len() >= MAX_PANELS {
        return Err(refused(format!(
            "a dashboard holds at most {MAX_PANELS} panels"
        )));
    }
    board.panels.push(panel);
    store.save(board).await.map_err(ServerFnError::new)?;
    leptos_axum::redirect(&format!("/d/{dashboard}"));
    Ok(())
}

#[server]
pub async fn delete_panel(dashboard: String, index: usize) -> Result<(), ServerFnError> {
    let store = expect_context::<crate::dashboards::SharedDashboards>().0;
    let mut board = store
        .get(dashboard.clone())
        .await
        .map_err(ServerFnError::new)?
        .ok_or_else(|| refused("no such dashboard"))?;
    if index < board.panels.len() {
        board.panels.remove(index);
        store.save(board).await.map_err(ServerFnError::new)?;
    }
    leptos_axum::redirect(&format!("/d/{dashboard}"));
    Ok(())
}

type PanelSignal = RwSignal<Vec<SeriesData>>;

/// The edits a dashboard page makes; the page reloads its data after each.
#[derive(Clone, Copy)]
struct Edits {
    add: ServerAction<AddPanel>,
    remove: ServerAction<DeletePanel>,
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
    let edits = Edits {
        add: ServerAction::new(),
        remove: ServerAction::new(),
    };
    let data = Resource::new(
        move || {
            (
                name(),
                range(),
                edits.add.version().get(),
                edits.remove.version().get(),
            )
        },
        |(name, range, ..)| load_board(name, range),
    );
    loaded(data, move |data| match data {
        Some(data) => view! { <BoardBody data range=range() edits/> }.into_any(),
        None => view! { <Missing name=name()/> }.into_any(),
    })
}

#[component]
fn Missing(name: String) -> impl IntoView {
    let create = ServerAction::<CreateDashboard>::new();
    view! {
        <section class="missing">
            <h1>"No dashboard named " <code>{name.clone()}</code></h1>
            <ActionForm action=create>
                <input type="hidden" name="name" value=name/>
                <button type="submit">"Create it"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn BoardBody(data: BoardData, range: String, edits: Edits) -> impl IntoView {
    let name = data.dashboard.name.clone();
    // One signal per panel, fed by one subscription per source room.
    let panels: Vec<(Panel, PanelSignal)> = data
        .dashboard
        .panels
        .into_iter()
        .zip(data.panels)
        .map(|(panel, series)| (panel, RwSignal::new(series)))
        .collect();
    let window_ms = data.window_ms;
    for (room, head) in data.heads {
        let Some(source) = crate::metrics::room_source(&room).map(str::to_owned) else {
            continue;
        };
        // Per series name: each panel showing it, and where among the panel's series.
        let targets: HashMap<String, Vec<(PanelSignal, usize)>> = panels
            .iter()
            .filter(|(p, _)| p.source == source)
            .fold(HashMap::new(), |mut map, (panel, signal)| {
                for (i, series) in panel.series.iter().enumerate() {
                    map.entry(series.clone()).or_default().push((*signal, i));
                }
                map
            });
        follow(room, head, move |point| {
            if !point.labels.is_empty() {
                return;
            }
            for (signal, i) in targets.get(&point.series).into_iter().flatten() {
                signal.update(|series| {
                    series[*i].push(point.ts.timestamp_millis(), point.value, window_ms)
                });
            }
        });
    }
    let now_ms = data.now_ms;
    let delete = ServerAction::<DeleteDashboard>::new();
    view! {
        <header class="board-head">
            <h1>{name.clone()}</h1>
            <nav class="ranges" aria-label="time range">
                {RANGES
                    .iter()
                    .map(|(r, _)| {
                        // A plain link: the router's <A> marks every link to this path current.
                        let current = (*r == range).then_some("page");
                        view! { <a href=format!("?range={r}") aria-current=current>{*r}</a> }
                    })
                    .collect_view()}
            </nav>
        </header>
        <div class="panels">
            {panels
                .into_iter()
                .enumerate()
                .map(|(index, (panel, series))| {
                    view! { <PanelView dashboard=name.clone() index panel series window_ms now_ms remove=edits.remove/> }
                })
                .collect_view()}
        </div>
        // Kept open while the last panel added was refused, so its reason stays in sight.
        <details class="edit" open=move || edits.add.value().with(|last| matches!(last, Some(Err(_))))>
            <summary>"Edit dashboard"</summary>
            <AddPanelForm dashboard=name.clone() add=edits.add/>
            <ActionForm action=delete attr:class="danger">
                <input type="hidden" name="name" value=name.clone()/>
                <button type="submit">"Delete this dashboard"</button>
            </ActionForm>
        </details>
    }
}

#[component]
fn PanelView(
    dashboard: String,
    index: usize,
    panel: Panel,
    series: RwSignal<Vec<SeriesData>>,
    window_ms: i64,
    now_ms: i64,
    remove: ServerAction<DeletePanel>,
) -> impl IntoView {
    let (unit, thresholds) = (panel.unit, panel.thresholds);
    let body = match panel.kind {
        PanelKind::Line => {
            view! { <LineChart series window_ms now_ms unit thresholds/> }.into_any()
        }
        PanelKind::Stat => view! { <Stat series unit thresholds/> }.into_any(),
        PanelKind::Gauge => view! { <Gauge series unit thresholds/> }.into_any(),
    };
    view! {
        <article class=format!("panel panel-{}", panel.kind.as_str()) data-testid="panel">
            <header class="panel-head">
                <h2>{panel.title.clone()}</h2>
                <span class="source">{panel.source.clone()}</span>
                <ActionForm action=remove attr:class="panel-delete">
                    <input type="hidden" name="dashboard" value=dashboard/>
                    <input type="hidden" name="index" value=index/>
                    <button type="submit" aria-label=format!("Delete panel {}", panel.title)>"×"</button>
                </ActionForm>
            </header>
            {body}
        </article>
    }
}

#[component]
fn AddPanelForm(dashboard: String, add: ServerAction<AddPanel>) -> impl IntoView {
    let error = move || {
        add.value()
            .get()
            .and_then(Result::err)
            .map(|e| e.to_string())
    };
    view! {
        <ActionForm action=add attr:class="add-panel">
            <h2>"Add a panel"</h2>
            <input type="hidden" name="dashboard" value=dashboard/>
            <label>"Title" <input name="panel[title]" required maxlength="80"/></label>
            <label>
                "Type "
                <select name="panel[kind]">
                    {PanelKind::ALL.map(|k| view! { <option value=k.as_str()>{k.as_str()}</option> }).collect_view()}
                </select>
            </label>
            <label>"Source" <input name="panel[source]" required placeholder="host:web-1"/></label>
            <label>"Series (comma-separated)" <input name="panel[series]" required placeholder="cpu.total"/></label>
            <label>
                "Unit "
                <select name="panel[unit]">
                    {Unit::ALL.map(|u| view! { <option value=u.as_str()>{u.as_str()}</option> }).collect_view()}
                </select>
            </label>
            <label>"Warn at" <input name="panel[warn]" inputmode="decimal"/></label>
            <label>"Critical at" <input name="panel[critical]" inputmode="decimal"/></label>
            <button type="submit">"Add panel"</button>
            <p class="error" role="alert">{error}</p>
        </ActionForm>
    }
}
