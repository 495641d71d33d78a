//! `/rooms/{room}`: one room's latest events, live.

use leptos::prelude::*;

use super::{loaded, reactive};
use leptos_router::hooks::use_params_map;

use crate::error::AppError;
use crate::live::{LiveClient, RoomView};
use crate::protocol::{Event, EventKind, RoomSnapshot};

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn load_room(room: String) -> Result<RoomSnapshot, AppError> {
    use crate::{error::answer, history::SharedHistory, live::EVENTS_SHOWN, protocol::RoomName};

    answer(async move {
        let room = RoomName::parse(room)?;
        if !crate::auth::identity()?.may_read(room.as_str()) {
            return Err(AppError::Forbidden(format!("you may not watch {room}")));
        }
        let history = expect_context::<SharedHistory>().0;
        history.snapshot(room, EVENTS_SHOWN as i64).await
    })
    .await
}

#[component]
pub fn RoomPage() -> impl IntoView {
    let params = use_params_map();
    let room = move || params.read().get("room").unwrap_or_default();
    let snapshot = crate::json::data(room, load_room);

    loaded(snapshot, |snapshot| view! { <RoomFeed snapshot/> })
}

#[component]
fn RoomFeed(snapshot: RoomSnapshot) -> impl IntoView {
    let room = snapshot.room.to_string();
    let RoomView {
        events, watchers, ..
    } = LiveClient::expect().join(snapshot);
    let watching = reactive(move || watchers.get().map(|n| format!("{n} watching")));
    view! {
        <section class="panel" aria-labelledby="feed-title">
            <header class="panel-head">
                <h1 id="feed-title">"Latest events in " <code>{room}</code></h1>
                <span class="watchers" data-testid="watchers">{watching}</span>
            </header>
            <ol class="feed" data-testid="feed">
                <For
                    each=move || events.get().into_iter().rev()
                    key=|event| event.seq
                    children=|event| view! { <EventRow event/> }
                />
            </ol>
            <Show when=move || events.with(Vec::is_empty)>
                <p class="empty">"No events yet. They appear here as they arrive."</p>
            </Show>
        </section>
    }
}

#[component]
fn EventRow(event: Event) -> impl IntoView {
    let kind = event.kind.as_str();
    let summary = summarise(&event);
    view! {
        <li class=format!("event kind-{kind}") data-seq=event.seq>
            <span class="seq">"#" {event.seq}</span>
            <time datetime=event.ts.to_rfc3339()>{crate::format::clock(&event.ts)}</time>
            <span class="kind">{kind}</span>
            <span class="summary">{summary}</span>
        </li>
    }
}

fn summarise(event: &Event) -> String {
    let field = |name: &str| {
        event
            .data
            .get(name)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    match event.kind {
        EventKind::Metric => {
            let points = crate::metrics::event_points(&event.data, event.ts);
            match points.as_slice() {
                [one] => format!("{} = {}", one.series, one.value),
                many => format!("{} samples", many.len()),
            }
        }
        EventKind::Notice | EventKind::Alert => field("text").unwrap_or_default(),
    }
}
