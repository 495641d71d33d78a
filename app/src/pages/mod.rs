//! The pages, and what they share: following a room's pushes into charts.

mod account;
mod alerts;
mod axes;
mod board;
mod chart;
mod deferred;
mod form;
mod header;
mod history;
mod markup;
mod overview;
mod replay;
mod room;
mod rooms;
mod settings;
mod wall;

pub use account::AccountMenu;
pub use alerts::{AlertCenter, AlertFeed, AlertSummary, AlertsPage};
pub use board::{
    ArrangePanel, Board, BoardPage, CreateDashboard, DeletePanel, LoadBoard, SavePanel,
};
pub use header::{Header, HeaderData, ReadHeader};
pub use history::{EventView, HistoryEvent, HistoryPage, LoadEvent};
pub use overview::Overview;
pub use replay::{ReadReplay, ReplayChunk};
pub use room::RoomPage;
pub use rooms::RoomsPage;
pub use settings::Settings;
pub use wall::Wall;

use leptos::prelude::*;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    error::AppError,
    live::LiveClient,
    metrics::{Point, event_points},
    protocol::{Event, EventKind, RoomSnapshot},
};

/// A reactive part of a view, typed by the view it gives rather than by its closure.
///
/// The wasm holds the code that renders, hydrates and updates a reactive part once for each type
/// of part, and every closure is a type of its own: each `{part}` of a chart brought its own copy
/// of that code. Parts that give the same kind of view share one copy this way, as closures
/// written inline in `view!` do.
pub(crate) fn reactive<T: 'static>(
    part: impl FnMut() -> T + Send + 'static,
) -> leptos::tachys::reactive_graph::SharedReactiveFunction<T> {
    std::sync::Arc::new(std::sync::Mutex::new(part))
}

/// Joins the snapshot's room from its head on and hands every event pushed after it to
/// `on_event`, once each, in order (from seq 1 again if the room's log starts over), with whether
/// events before it were missed: a room view keeps only its newest, and more arrived at once than
/// it holds. Only the browser receives pushes; on the server this renders nothing live.
fn follow_events(from: RoomSnapshot, on_event: impl Fn(&Event, bool) + 'static) {
    let head = from.head;
    let view = LiveClient::expect().join(RoomSnapshot {
        events: Vec::new(),
        ..from
    });
    // The newest seq handed on, and in which life of the room's log.
    let seen = StoredValue::new((0, head));
    Effect::new(move |_| {
        let resets = view.resets.get();
        view.events.with(|events| {
            let (counted_in, mut last) = seen.get_value();
            if counted_in != resets {
                last = 0;
            }
            for event in events {
                if event.seq <= last {
                    continue;
                }
                on_event(event, event.seq > last + 1);
                last = event.seq;
            }
            seen.set_value((resets, last));
        });
    });
}

/// Calls `attempt` until it gives a value: again after a second, then after twice as long each
/// time, up to half a minute. For what the browser fetches from a server that may be restarting
/// (a deploy): a lazily loaded module, the alerts read afresh.
#[cfg(feature = "hydrate")]
pub(crate) async fn until_some<T>(mut attempt: impl AsyncFnMut() -> Option<T>) -> T {
    let mut pause = std::time::Duration::from_secs(1);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        gloo_timers::future::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(30));
    }
}

/// As [`follow_events`], handing on the samples of the room's `metric` events.
fn follow(from: RoomSnapshot, on_point: impl Fn(&Point) + 'static) {
    follow_events(from, move |event, _| {
        if event.kind == EventKind::Metric {
            event_points(&event.data, event.ts)
                .iter()
                .for_each(&on_point);
        }
    });
}

/// Renders `body` with a page's data once the server function behind `data` answered, or its
/// error; "Loading…" until then (only ever seen on navigation: the server waits for the data).
fn loaded<T, V>(
    data: crate::json::Data<Result<T, AppError>>,
    body: impl Fn(T) -> V + Copy + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    V: IntoView + 'static,
{
    view! {
        <Suspense fallback=|| view! { <p class="empty">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(data) => body(data).into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
