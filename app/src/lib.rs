//! The Watchroom user interface: rendered on the server, hydrated in the browser.

#[cfg(feature = "ssr")]
pub mod history;
pub mod live;
pub mod metrics;
pub mod pages;
pub mod protocol;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    SsrMode, StaticSegment,
    components::{Route, Router, Routes},
};

/// The HTML document around the app; the server renders it for every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="dark light"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    live::LiveClient::provide();

    view! {
        <Stylesheet id="leptos" href="/pkg/watchroom.css"/>
        <Title text="Watchroom"/>
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"Watchroom"</a>
                <live::ConnectionBadge/>
            </header>
            <main>
                <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                    // Async: the first response already holds the room's recent events.
                    <Route path=StaticSegment("") view=pages::Dashboard ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}
