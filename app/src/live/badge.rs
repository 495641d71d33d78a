use leptos::prelude::*;

use super::{ConnState, LiveClient};
use crate::pages::reactive;

/// Shows operators whether what they see is live, and when the next try is if it is not.
#[component]
pub fn ConnectionBadge() -> impl IntoView {
    let state = LiveClient::expect().state;
    let label = move || state.get().label();
    let detail = reactive(move || match state.get() {
        ConnState::Reconnecting { retry_at } => {
            let at = js_time(retry_at);
            Some(format!("next try {at}"))
        }
        _ => None,
    });
    view! {
        <span class="connection">
            <span class=move || format!("badge badge-{}", label()) role="status" data-testid="connection">
                {reactive(label)}
            </span>
            <span class="connection-detail">{detail}</span>
        </span>
    }
}

/// Local wall-clock time of `epoch_ms`, as HH:MM:SS.
fn js_time(epoch_ms: f64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&epoch_ms.into());
        format!(
            "{:02}:{:02}:{:02}",
            date.get_hours(),
            date.get_minutes(),
            date.get_seconds()
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        // The server never renders this state: a page starts out connecting.
        let _ = epoch_ms;
        String::new()
    }
}
