use leptos::prelude::*;

use super::LiveClient;

/// Shows operators whether what they see is live.
#[component]
pub fn ConnectionBadge() -> impl IntoView {
    let state = LiveClient::expect().state;
    let label = move || state.get().label();
    view! {
        <span class=move || format!("badge badge-{}", label()) role="status" data-testid="connection">
            {label}
        </span>
    }
}
