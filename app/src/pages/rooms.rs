//! `/rooms`: the rooms one may read (filtered by name), each with how many events it has had and
//! when the newest came, leading to the room live and to its history.

use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_query_map};
use serde::{Deserialize, Serialize};

use super::loaded;
use crate::{error::AppError, format, history::RoomSummary};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoomList {
    /// The first rooms (by name) whose name contains the filter.
    pub rooms: Vec<RoomSummary>,
    /// How many rooms the filter matched.
    pub matched: usize,
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn list_rooms(filter: String) -> Result<RoomList, AppError> {
    use crate::{error::answer, history::SharedHistory};

    /// Rooms listed at once: every source has one, and a filter finds the others.
    const ROOMS_SHOWN: usize = 200;

    answer(async move {
        let identity = crate::auth::identity()?;
        let history = expect_context::<SharedHistory>().0;
        let (matched, rooms) = history
            .rooms(filter.trim().to_owned(), ROOMS_SHOWN, identity)
            .await?;
        Ok(RoomList { rooms, matched })
    })
    .await
}

#[component]
pub fn RoomsPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || query.read().get("q").unwrap_or_default();
    let list = crate::json::data(filter, list_rooms);
    loaded(
        list,
        move |list| view! { <RoomsBody list filter=filter()/> },
    )
}

#[component]
fn RoomsBody(list: RoomList, filter: String) -> impl IntoView {
    let shown = list.rooms.len();
    let note = match (list.matched, filter.is_empty()) {
        (0, true) => Some(view! { <p class="empty">"No room you may read has had an event yet: a room begins with its first."</p> }.into_any()),
        (0, false) => Some(view! { <p class="empty">"No room name contains " <code>{filter.clone()}</code> "."</p> }.into_any()),
        (m, _) if m > shown => Some(view! {
            <p class="empty" data-testid="rooms-shown">{format!("Showing {shown} of {m} rooms; filter to find the others.")}</p>
        }.into_any()),
        _ => None,
    };
    view! {
        <section aria-labelledby="rooms-title">
            <header class="sources-head">
                <h1 id="rooms-title">"Rooms"</h1>
                // A plain GET form: the filter is part of the address, with or without script.
                <form method="get" action="/rooms" role="search">
                    <label>
                        "Filter rooms "
                        <input type="search" name="q" value=filter placeholder="host:"/>
                    </label>
                    <button type="submit">"Filter"</button>
                </form>
            </header>
            {note}
            <table class="history-table" data-testid="rooms">
                <thead>
                    <tr><th scope="col">"Room"</th><th scope="col">"Events"</th><th scope="col">"Newest (UTC)"</th><th scope="col">"Past"</th></tr>
                </thead>
                <tbody>
                    {list.rooms.into_iter().map(|summary| {
                        let room = summary.room.to_string();
                        let (live, past) = (format!("/rooms/{room}"), format!("/history?room={room}"));
                        view! {
                            <tr>
                                <td><A href=live><code>{room}</code></A></td>
                                <td>{summary.head}</td>
                                <td>{summary.newest.map(|t| view! {
                                    <time datetime=t.to_rfc3339()>{format::second(&t)}</time>
                                })}</td>
                                <td><A href=past>"History"</A></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
