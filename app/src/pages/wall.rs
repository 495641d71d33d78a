//! `/wall?boards=a,b&every=30s`: dashboards in turn, full screen, readable from a few metres, with
//! firing alerts across the top; it reconnects by itself and needs no click.

#[cfg(feature = "hydrate")]
use std::time::Duration;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::{
    alerts::AlertBanner,
    board::{BoardBody, BoardPage, Edits, load_board},
    loaded,
};

/// The range every dashboard on the wall shows.
const RANGE: &str = "15m";

#[component]
pub fn Wall() -> impl IntoView {
    let query = use_query_map();
    let boards = move || {
        query
            .read()
            .get("boards")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let turn = RwSignal::new(0usize);
    #[cfg(feature = "hydrate")]
    {
        const DEFAULT_TURN: Duration = Duration::from_secs(30);
        // A shorter turn could not be read before the next.
        const SHORTEST_TURN: Duration = Duration::from_secs(5);
        let every = query
            .read_untracked()
            .get("every")
            .and_then(|text| crate::duration::parse(&text).ok())
            .unwrap_or(DEFAULT_TURN)
            .max(SHORTEST_TURN);
        if let Ok(handle) = set_interval_with_handle(move || turn.update(|t| *t += 1), every) {
            on_cleanup(move || handle.clear());
        }
    }
    let shown = move || {
        let boards = boards();
        (!boards.is_empty()).then(|| boards[turn.get() % boards.len()].clone())
    };
    let data = crate::json::data(shown, |name| async move {
        match name {
            Some(name) => load_board(name, RANGE.into(), None, Default::default(), None, None)
                .await
                .map(Some),
            None => Ok(None),
        }
    });
    view! {
        <div class="wall" data-testid="wall">
            <AlertBanner/>
            {loaded(data, |page: Option<BoardPage>| match page.and_then(|p| p.board) {
                Some(data) => view! {
                    <BoardBody data range=RANGE.to_owned() edits=Edits::new() may_edit=false/>
                }
                .into_any(),
                None => view! {
                    <p class="empty">"Name the dashboards to show: /wall?boards=host,web&every=30s"</p>
                }
                .into_any(),
            })}
        </div>
    }
}
