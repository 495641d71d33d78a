//! `/history`: the events of every room the user may read, newest first, filtered by what the
//! URL says (so a link shares the view, and the back button goes back); `/history/{room}/{seq}`:
//! one event whole, among its neighbours.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde::{Deserialize, Serialize};

use super::{loaded, reactive};
use crate::{
    error::AppError,
    history::{EventDetail, EventPage, Filter, Moment, Oldest, Page, Query, Zone},
    protocol::{Event, EventKind, Notice},
};

/// How often the live view asks for what was stored since its newest event.
#[cfg(feature = "hydrate")]
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Most events the live view holds.
#[cfg(feature = "hydrate")]
const LIVE_KEPT: usize = 1000;

/// The relative ranges offered besides a picked time.
const RANGES: [(&str, &str); 6] = [
    ("now-15m", "Last 15 minutes"),
    ("now-1h", "Last hour"),
    ("now-6h", "Last 6 hours"),
    ("now-24h", "Last 24 hours"),
    ("now-7d", "Last 7 days"),
    ("now-30d", "Last 30 days"),
];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryData {
    pub query: Query,
    pub page: EventPage,
    pub oldest: Oldest,
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn load_history(query: Query) -> Result<HistoryData, AppError> {
    crate::error::answer(async move {
        let identity = crate::auth::identity()?;
        let history = expect_context::<crate::history::SharedHistory>().0;
        let page = history.events(query.clone(), identity.clone()).await?;
        let oldest = history.oldest(identity).await?;
        Ok(HistoryData {
            query,
            page,
            oldest,
        })
    })
    .await
}

/// An event whole, and the dashboards that show what it is about.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventView {
    pub detail: EventDetail,
    pub dashboards: Vec<String>,
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn load_event(room: String, seq: i64) -> Result<EventView, AppError> {
    crate::error::answer(async move {
        let room = crate::protocol::RoomName::parse(room)?;
        // A room one may not read does not exist for one: the same answer as a missing event.
        let missing = || AppError::NotFound(format!("event {seq} of {room}"));
        if !crate::auth::identity()?.may_read(room.as_str()) {
            return Err(missing());
        }
        let history = expect_context::<crate::history::SharedHistory>().0;
        let detail = history
            .event(room.clone(), seq)
            .await?
            .ok_or_else(missing)?;
        // A sample's or an alert's source is on the dashboards showing it; a notice of room
        // `notices` marks them all.
        let event = &detail.event;
        let source = crate::metrics::room_source(&event.room)
            .map(str::to_owned)
            .or_else(|| {
                (event.kind == EventKind::Alert)
                    .then(|| event.data.get("source")?.as_str().map(str::to_owned))
                    .flatten()
            });
        let everywhere = event.room.as_str() == crate::history::NOTICES_ROOM;
        let store = expect_context::<crate::dashboards::SharedDashboards>().0;
        let mut dashboards = Vec::new();
        if source.is_some() || everywhere {
            for name in store.list().await? {
                let shows = store.get(name.clone()).await?.is_some_and(|d| {
                    everywhere || d.panels.iter().any(|p| Some(&p.source) == source.as_ref())
                });
                if shows {
                    dashboards.push(name);
                }
            }
        }
        Ok(EventView { detail, dashboards })
    })
    .await
}

#[component]
pub fn HistoryPage() -> impl IntoView {
    let params = use_query_map();
    let query = move || {
        params.with(|map| Query::from_params(map.into_iter().map(|(k, v)| (k.as_ref(), v))))
    };
    let data = crate::json::data(query, |query| async move {
        load_history(query.map_err(|bad| AppError::Invalid(bad.to_string()))?).await
    });
    view! {
        <section class="panel history" aria-labelledby="history-title">
            <header class="panel-head">
                <h1 id="history-title">"History"</h1>
                <a href="/history">"Clear filters"</a>
            </header>
            {loaded(data, |data| view! { <HistoryBody data/> })}
        </section>
    }
}

#[component]
fn HistoryBody(data: HistoryData) -> impl IntoView {
    let HistoryData {
        query,
        page,
        oldest,
    } = data;
    let zone = query.zone;
    let first = query.page == Page::First;
    let events = RwSignal::new(page.events);
    let live = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    follow_live(&query, events, live);
    let link = |page: Page| {
        let query = Query {
            page,
            ..query.clone()
        };
        format!("/history?{}", query.to_query_string())
    };
    let newer = page.prev.map(|cursor| link(Page::Newer(cursor)));
    let older = page.next.map(|cursor| link(Page::Older(cursor)));
    let export = |format: &str| {
        let filter_only = Query {
            page: Page::First,
            ..query.clone()
        };
        format!(
            "/api/events/export?{}&format={format}",
            filter_only.to_query_string()
        )
    };
    let kept = oldest.map_or_else(
        || "No notices or alerts stored yet.".to_owned(),
        |t| format!("Notices and alerts since {} ({zone}).", zone.show(t)),
    );
    view! {
        <Filters query=query.clone()/>
        <div class="history-tools">
            <span class="muted" data-testid="oldest">{kept}</span>
            <a href=export("csv") download>"Export CSV"</a>
            <a href=export("ndjson") download>"Export NDJSON"</a>
            {first.then(|| view! {
                <label class="live-toggle">
                    <input type="checkbox" data-testid="live" prop:checked=live on:change=move |ev| live.set(event_target_checked(&ev))/>
                    " Live"
                </label>
            })}
        </div>
        <table class="history-table" data-testid="history">
            <thead>
                <tr><th>{format!("Time ({zone})")}</th><th>"Room"</th><th>"Kind"</th><th>"What"</th></tr>
            </thead>
            <tbody>
                <For
                    each=move || events.get()
                    key=|event| (event.room.clone(), event.seq)
                    children=move |event| view! { <Line event zone/> }
                />
            </tbody>
        </table>
        <Show when=move || events.with(Vec::is_empty)>
            <p class="empty">"No events match."</p>
        </Show>
        <nav class="pager" aria-label="Pages">
            {newer.map(|href| view! { <a href=href rel="prev">"← Newer"</a> })}
            {older.map(|href| view! { <a href=href rel="next">"Older →"</a> })}
        </nav>
    }
    .into_any()
}

/// While `live` is on, asks every few seconds for the events stored after the newest shown and
/// puts them on top. Pages by `(ts, room, seq)` bring none twice, and leave none out while one
/// writer commits (each commit's `ts` is later than the one before); the list keeps the newest
/// [`LIVE_KEPT`].
#[cfg(feature = "hydrate")]
fn follow_live(query: &Query, events: RwSignal<Vec<Event>>, live: RwSignal<bool>) {
    use crate::history::{Cursor, MAX_PAGE};

    let query = query.clone();
    let busy = StoredValue::new(false);
    let poll = move || {
        if !live.get_untracked() || busy.get_value() {
            return;
        }
        busy.set_value(true);
        let page = match events.with_untracked(|e| e.first().map(Cursor::of)) {
            Some(top) => Page::Newer(top),
            None => Page::First,
        };
        let ask = Query {
            page,
            limit: MAX_PAGE,
            ..query.clone()
        };
        leptos::task::spawn_local(async move {
            if let Ok(data) = load_history(ask).await {
                events.update(|shown| {
                    let mut fresh = data.page.events;
                    fresh.append(shown);
                    fresh.truncate(LIVE_KEPT);
                    *shown = fresh;
                });
            }
            busy.set_value(false);
        });
    };
    if let Ok(handle) = set_interval_with_handle(poll, LIVE_EVERY) {
        on_cleanup(move || handle.clear());
    }
}

/// The filter form: a plain GET form, so the filter is the address.
#[component]
fn Filters(query: Query) -> impl IntoView {
    let Query { filter, zone, .. } = query;
    let Filter {
        room,
        kinds,
        source: _,
        severity,
        state,
        from,
        to,
        text,
    } = filter;
    let kind = kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let relative = match from {
        Some(moment @ Moment::Ago(_)) => moment.to_string(),
        _ => String::new(),
    };
    let picked = |moment: Option<Moment>| match moment {
        Some(Moment::At(t)) => zone.picker(t),
        _ => String::new(),
    };
    let option = |value: &str, label: &str, current: &str| {
        view! { <option value=value.to_owned() selected=value == current>{label.to_owned()}</option> }
    };
    let severity = severity.map_or("", |s| s.as_str());
    let state = state.map_or("", |s| s.as_str());
    // The browser's own offset joins the choices once the page runs in one.
    let local = RwSignal::new(None::<Zone>);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let minutes = -(js_sys::Date::new_0().get_timezone_offset() as i32);
        local.set(Some(Zone { minutes }).filter(|z| *z != Zone::default()));
    });
    let zones = reactive(move || {
        let mut zones = vec![Zone::default()];
        for z in [Some(zone), local.get()].into_iter().flatten() {
            if !zones.contains(&z) {
                zones.push(z);
            }
        }
        zones
            .into_iter()
            .map(|z| {
                let label = match (z == Zone::default(), Some(z) == local.get()) {
                    (true, _) => "UTC".to_owned(),
                    (false, true) => format!("This browser (UTC{z})"),
                    (false, false) => format!("UTC{z}"),
                };
                view! { <option value=z.to_string() selected=z == zone>{label}</option> }
            })
            .collect_view()
    });
    view! {
        <form class="history-filters" method="get" action="/history" role="search">
            <label>"Room " <input name="room" value=room.map(|r| r.to_string()) placeholder="host:* or a room"/></label>
            <label>"Kind "
                <select name="kind">
                    {option("", "Notices and alerts", &kind)}
                    {option("notice", "Notices", &kind)}
                    {option("alert", "Alerts", &kind)}
                    {option("metric", "Metric events", &kind)}
                    {option("notice,alert,metric", "Everything", &kind)}
                </select>
            </label>
            <label>"Severity "
                <select name="severity">
                    {option("", "Any", severity)}
                    {option("info", "Info", severity)}
                    {option("warning", "Warning", severity)}
                    {option("critical", "Critical", severity)}
                </select>
            </label>
            <label>"State "
                <select name="state">
                    {option("", "Any", state)}
                    {option("firing", "Firing", state)}
                    {option("resolved", "Resolved", state)}
                    {option("pending", "Pending", state)}
                    {option("nodata", "No data", state)}
                </select>
            </label>
            <label>"Search " <input type="search" name="q" value=text placeholder="deploy, disk full"/></label>
            <label>"Range "
                <select name="from">
                    {option("", "Any time", &relative)}
                    {RANGES.iter().map(|(value, label)| option(value, label, &relative)).collect_view()}
                </select>
            </label>
            // A picked time, when given, wins over the range (it comes after it in the address).
            <label>"or from " <input type="datetime-local" name="from" value=picked(from)/></label>
            <label>"to " <input type="datetime-local" name="to" value=picked(to)/></label>
            <label>"Time zone " <select name="tz">{zones}</select></label>
            <button type="submit">"Apply"</button>
        </form>
    }
    .into_any()
}

/// One event in the list: when, where, what; it links to the event whole.
#[component]
fn Line(event: Event, zone: Zone) -> impl IntoView {
    let href = format!("/history/{}/{}", event.room, event.seq);
    let room_href = format!("/history?room={}", event.room);
    let (mark, what) = describe(&event);
    view! {
        <tr class=format!("kind-{}", event.kind.as_str()) data-seq=event.seq data-room=event.room.to_string()>
            <td><time datetime=event.ts.to_rfc3339()>{zone.show(event.ts)}</time></td>
            <td><a href=room_href><code>{event.room.to_string()}</code></a></td>
            <td>{event.kind.as_str()} {mark.map(|m| view! { " " <span class=format!("mark mark-{m}")>{m.clone()}</span> })}</td>
            <td><a href=href>{what}</a></td>
        </tr>
    }
}

/// An event in one line, with its level or severity when it has one.
fn describe(event: &Event) -> (Option<String>, String) {
    let field = |name: &str| {
        event
            .data
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    match event.kind {
        EventKind::Notice => {
            let notice = Notice::of(event).unwrap_or_default();
            let mut line = match notice.title {
                Some(title) => format!("{title}: {}", notice.text),
                None => notice.text,
            };
            if !notice.tags.is_empty() {
                line.push_str(&format!(" [{}]", notice.tags.join(", ")));
            }
            (notice.level.map(|l| l.as_str().to_owned()), line)
        }
        EventKind::Alert => (field("severity"), field("text").unwrap_or_default()),
        EventKind::Metric => {
            let points = crate::metrics::event_points(&event.data, event.ts);
            let mut names: Vec<&str> = points.iter().map(|p| p.series.as_str()).collect();
            names.dedup();
            let shown = names.iter().take(3).copied().collect::<Vec<_>>().join(", ");
            let more = if names.len() > 3 { ", …" } else { "" };
            (None, format!("{} samples ({shown}{more})", points.len()))
        }
    }
}

#[component]
pub fn HistoryEvent() -> impl IntoView {
    let params = use_params_map();
    let at = move || {
        params.with(|p| {
            (
                p.get("room").unwrap_or_default(),
                p.get("seq")
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0),
            )
        })
    };
    let detail = crate::json::data(at, |(room, seq)| load_event(room, seq));
    loaded(detail, |view| view! { <Detail view/> })
}

/// The range a dashboard opened at an event shows: the event falls in its middle.
const AROUND: (&str, i64) = ("15m", 15 * 60_000);

#[component]
fn Detail(view: EventView) -> impl IntoView {
    let EventView {
        detail: EventDetail {
            event,
            before,
            after,
        },
        dashboards,
    } = view;
    let at = chrono::DateTime::from_timestamp_millis(event.ts.timestamp_millis() + AROUND.1 / 2)
        .unwrap_or(event.ts)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let replays = dashboards
        .into_iter()
        .map(|name| {
            let href = format!("/d/{name}?range={}&at={at}", AROUND.0);
            view! { <a href=href data-testid="replay-link">{format!("Dashboard {name} at that moment")}</a> }
        })
        .collect_view();
    let zone = Zone::default();
    let json = serde_json::to_string_pretty(&event.data).unwrap_or_default();
    let room = event.room.to_string();
    // The room's events of the minutes around this one, in the list.
    let around = Query {
        filter: Filter {
            room: crate::auth::Pattern::parse(&room).ok(),
            kinds: EventKind::ALL.to_vec(),
            from: Some(Moment::At(event.ts - chrono::TimeDelta::minutes(5))),
            to: Some(Moment::At(event.ts + chrono::TimeDelta::minutes(5))),
            ..Filter::default()
        },
        ..Query::default()
    };
    let neighbour = move |e: Event| {
        let href = format!("/history/{}/{}", e.room, e.seq);
        let (_, what) = describe(&e);
        view! {
            <li class="event" data-seq=e.seq>
                <span class="seq">"#" {e.seq}</span>
                <time datetime=e.ts.to_rfc3339()>{zone.show(e.ts)}</time>
                <span class="kind">{e.kind.as_str()}</span>
                <a href=href>{what}</a>
            </li>
        }
    };
    view! {
        <section class="panel event-detail" aria-labelledby="event-title">
            <header class="panel-head">
                <h1 id="event-title">
                    {event.kind.as_str()} " #" {event.seq} " in " <code>{room.clone()}</code>
                </h1>
                <time datetime=event.ts.to_rfc3339()>{format!("{} UTC", zone.show(event.ts))}</time>
            </header>
            <p class="history-tools">
                <a href=format!("/history?{}", around.to_query_string())>"The room's events around then"</a>
                <a href=format!("/rooms/{room}")>"The room live"</a>
                {replays}
            </p>
            <pre class="event-json" data-testid="event-json">{json}</pre>
            <h2>"Before and after in " <code>{room}</code></h2>
            <ol class="feed" data-testid="neighbours">
                {before.into_iter().map(neighbour).collect_view()}
                <li class="event current" aria-current="true">
                    <span class="seq">"#" {event.seq}</span>
                    <time datetime=event.ts.to_rfc3339()>{zone.show(event.ts)}</time>
                    <span class="kind">{event.kind.as_str()}</span>
                    <span>"this event"</span>
                </li>
                {after.into_iter().map(neighbour).collect_view()}
            </ol>
        </section>
    }
    .into_any()
}
