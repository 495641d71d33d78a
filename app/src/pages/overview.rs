//! `/`: the sources (filtered by name), each series with a sparkline and its current value, and
//! the dashboards.

use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_query_map};
use serde::{Deserialize, Serialize};

use super::{
    board::CreateDashboard,
    chart::{SeriesData, Sparkline},
    follow,
    form::{PostForm, Posted},
    loaded, reactive,
};
use crate::{
    dashboards::Unit,
    error::AppError,
    format,
    metrics::{Series, Storage},
    protocol::RoomSnapshot,
};

/// The window each sparkline shows: an hour, a point a minute, which the minute rollups answer
/// (a page of 768 sparklines from raw samples reads hundreds of thousands of rows).
const SPARK_WINDOW_MS: i64 = 60 * 60 * 1000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceCard {
    pub source: String,
    /// The source's room as the page was drawn (its head and epoch): pushes follow on from it.
    pub room: RoomSnapshot,
    pub series: Vec<(Series, SeriesData)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverviewData {
    /// The first sources (by name) whose name contains the filter.
    pub sources: Vec<SourceCard>,
    /// How many sources the filter matched.
    pub matched: usize,
    pub dashboards: Vec<String>,
    pub now_ms: i64,
    /// Whether the one asking may create dashboards.
    pub may_edit: bool,
    pub storage: Storage,
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn load_overview(filter: String) -> Result<OverviewData, AppError> {
    use crate::{
        dashboards::SharedDashboards, error::answer, history::SharedHistory, metrics::source_room,
    };
    use futures::future::try_join_all;

    /// Sources shown at once: each is followed live through its own room, and a connection may
    /// watch 64 rooms by default.
    const SOURCES_SHOWN: usize = 48;
    /// Series listed per source: enough to recognise it, few enough to read.
    const SERIES_SHOWN: usize = 16;
    /// Points per sparkline.
    const BUCKETS: u32 = 60;

    answer(async move {
        let identity = crate::auth::identity()?;
        let history = expect_context::<SharedHistory>().0;
        let dashboards = expect_context::<SharedDashboards>().0;
        let to = chrono::Utc::now();
        let step_ms = SPARK_WINDOW_MS / i64::from(BUCKETS);
        // From a whole bucket: the first point is as full as the others, and comes from the
        // rollups alone.
        let start_ms = to.timestamp_millis() - SPARK_WINDOW_MS;
        let from = chrono::DateTime::from_timestamp_millis(start_ms - start_ms.rem_euclid(step_ms))
            .unwrap_or(crate::history::EARLIEST);
        let (matched, sources) = history
            .sources(
                filter.trim().to_owned(),
                SOURCES_SHOWN,
                SERIES_SHOWN,
                identity.clone(),
            )
            .await?;
        let asked: Vec<(String, Series)> = sources
            .iter()
            .flat_map(|(source, series)| series.iter().map(|s| (source.clone(), s.clone())))
            .collect();
        let (mut ranges, rooms) = futures::try_join!(
            async { Ok(history.ranges(asked, from, to, step_ms).await?.into_iter()) },
            try_join_all(sources.iter().map(|(source, _)| {
                let history = history.clone();
                async move {
                    let room = source_room(source).map_err(AppError::Invalid)?;
                    history.snapshot(room, 0).await
                }
            })),
        )?;
        let cards = sources
            .into_iter()
            .zip(rooms)
            .map(|((source, series), room)| SourceCard {
                source,
                room,
                series: series
                    .into_iter()
                    .zip(ranges.by_ref())
                    .map(|(series, buckets)| {
                        let data = SeriesData::from_buckets(series.to_string(), step_ms, &buckets);
                        (series, data)
                    })
                    .collect(),
            })
            .collect();
        Ok(OverviewData {
            sources: cards,
            matched,
            dashboards: dashboards.list().await?,
            now_ms: to.timestamp_millis(),
            may_edit: identity.may_edit(),
            storage: history.storage().await?,
        })
    })
    .await
}

#[component]
pub fn Overview() -> impl IntoView {
    let query = use_query_map();
    let filter = move || query.read().get("q").unwrap_or_default();
    let data = crate::json::data(filter, load_overview);
    loaded(
        data,
        move |data| view! { <OverviewBody data filter=filter()/> },
    )
}

#[component]
fn OverviewBody(data: OverviewData, filter: String) -> impl IntoView {
    let now_ms = data.now_ms;
    let dashboards = data.dashboards;
    let sources = data.sources;
    let shown = sources.len();
    let matched = data.matched;
    let create = Posted::<CreateDashboard>::new();
    let may_edit = data.may_edit;
    // Dashboards are few: the list is all there, and a search only hides what does not match.
    let search = RwSignal::new(String::new());
    let storage = data.storage;
    view! {
        <section class="dashboards" aria-labelledby="dashboards-title">
            <header class="sources-head">
                <h1 id="dashboards-title">"Dashboards"</h1>
                <label>
                    "Search dashboards "
                    <input type="search" placeholder="host" on:input=move |ev| search.set(event_target_value(&ev))/>
                </label>
            </header>
            <ul class="dashboard-list">
                {dashboards
                    .into_iter()
                    .map(|name| {
                        let hidden = {
                            let name = name.clone();
                            move || !name.contains(search.get().trim())
                        };
                        view! { <li hidden=hidden><A href=format!("/d/{name}")>{name.clone()}</A></li> }
                    })
                    .collect_view()}
            </ul>
            {may_edit.then(|| view! {
                <PostForm posted=create attr:class="new-dashboard">
                    <label>
                        "New dashboard "
                        <input name="name" required pattern="[a-z0-9\\-]{1,40}" placeholder="ops-board"/>
                    </label>
                    <button type="submit">"Create"</button>
                </PostForm>
            })}
        </section>
        <section id="sources" aria-labelledby="sources-title">
            <header class="sources-head">
                <h1 id="sources-title">"Sources"</h1>
                // A plain GET form: the filter is part of the address, with or without script.
                <form method="get" action="/" role="search">
                    <label>
                        "Filter sources "
                        <input type="search" name="q" value=filter.clone() placeholder="web-"/>
                    </label>
                    <button type="submit">"Filter"</button>
                </form>
            </header>
            {match (matched, filter.is_empty()) {
                (0, true) => Some(view! {
                    <p class="empty">"No metrics yet. POST samples to /api/metrics to see them here."</p>
                }.into_any()),
                (0, false) => Some(view! {
                    <p class="empty">"No source name contains " <code>{filter.clone()}</code> "."</p>
                }.into_any()),
                (m, _) if m > shown => Some(view! {
                    <p class="empty" data-testid="sources-shown">
                        {format!("Showing {shown} of {m} sources; filter to find the others.")}
                    </p>
                }.into_any()),
                _ => None,
            }}
            <div class="cards">
                {sources.into_iter().map(|card| view! { <SourceView card now_ms/> }).collect_view()}
            </div>
        </section>
        <StorageView storage/>
    }
}

/// Rows, bytes and time span per tier of the metrics store, and the next retention drop.
#[component]
fn StorageView(storage: Storage) -> impl IntoView {
    let day = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| crate::format::minute(&t))
            .unwrap_or_else(|| "–".into())
    };
    let next_drop = day(storage.next_drop);
    view! {
        <details class="storage" data-testid="storage">
            <summary>"Metrics storage"</summary>
            <table>
                <thead>
                    <tr><th>"Tier"</th><th>"Rows"</th><th>"On disk"</th><th>"From"</th><th>"To"</th><th>"Kept"</th></tr>
                </thead>
                <tbody>
                    {storage.tiers.into_iter().map(|tier| view! {
                        <tr>
                            <td>{tier.tier}</td>
                            <td>{format::value(tier.rows as f64, Unit::None)}</td>
                            <td>{format::value(tier.bytes as f64, Unit::Bytes)}</td>
                            <td>{day(tier.from)}</td>
                            <td>{day(tier.to)}</td>
                            <td>{format!("{} d", tier.keep_secs / 86_400)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <p>"Rolled up to " {day(Some(storage.rolled))} "; retention next drops a partition at " {next_drop} " (UTC)."</p>
        </details>
    }
}

#[component]
fn SourceView(card: SourceCard, now_ms: i64) -> impl IntoView {
    let rows: Vec<(Series, RwSignal<SeriesData>)> = card
        .series
        .into_iter()
        .map(|(series, data)| (series, RwSignal::new(data)))
        .collect();
    let live = rows.clone();
    follow(card.room, move |point| {
        if let Some((_, data)) = live.iter().find(|(series, _)| series.is(point)) {
            data.update(|s| s.push(point.ts.timestamp_millis(), point.value, SPARK_WINDOW_MS));
        }
    });
    view! {
        <article class="card" data-source=card.source.clone()>
            <h2>{card.source.clone()}</h2>
            <table class="series-table">
                <tbody>
                    {rows
                        .into_iter()
                        .map(|(series, data)| {
                            let unit = format::guess_unit(&series.name);
                            let current = reactive(move || data.with(|s| s.last().map_or("–".into(), |v| format::value(v, unit))));
                            view! {
                                <tr>
                                    <th scope="row">{series.to_string()}</th>
                                    <td><Sparkline series=data window_ms=SPARK_WINDOW_MS now_ms/></td>
                                    <td class="current">{current}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </article>
    }
}
