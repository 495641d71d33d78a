//! The pages, and what they share: following a room's pushes into charts.

mod board;
mod chart;
mod overview;
mod room;

pub use board::{Board, CreateDashboard, DeletePanel};
pub use overview::Overview;
pub use room::RoomPage;

use leptos::prelude::*;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    error::AppError,
    live::LiveClient,
    metrics::{Point, event_points},
    protocol::{EventKind, RoomName, RoomSnapshot},
};

/// Joins `room` from `head` on and hands every sample pushed after it to `on_point`, once each,
/// in order. Only the browser receives pushes; on the server this renders nothing live.
fn follow(room: RoomName, head: i64, on_point: impl Fn(&Point) + 'static) {
    let events = LiveClient::expect()
        .join(RoomSnapshot {
            room,
            head,
            events: Vec::new(),
        })
        .events;
    let seen = StoredValue::new(head);
    Effect::new(move |_| {
        events.with(|events| {
            for event in events.iter().filter(|e| e.seq > seen.get_value()) {
                seen.set_value(event.seq);
                if event.kind == EventKind::Metric {
                    event_points(&event.data, event.ts)
                        .iter()
                        .for_each(&on_point);
                }
            }
        });
    });
}

/// Renders `body` with a page's data once the server function behind `data` answered, or its
/// error; "Loading…" until then (only ever seen on navigation: the server waits for the data).
fn loaded<T, V>(
    data: Resource<Result<T, AppError>>,
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
