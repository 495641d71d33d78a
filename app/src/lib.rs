//! The Watchroom user interface: rendered on the server, hydrated in the browser.
// Hydrating around lazily loaded routes lays out the pages' deeply nested view types in async
// blocks; the release build needs the room.
#![recursion_limit = "256"]

pub mod accounts;
pub mod alerts;
pub mod auth;
pub mod dashboards;
pub mod duration;
pub mod error;
pub mod format;
pub mod history;
pub mod json;
pub mod live;
pub mod metrics;
pub mod pages;
pub mod protocol;
pub mod rfc3339;
pub mod room;

use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::{
    Lazy, LazyRoute, SsrMode,
    components::{A, Route, Router, Routes},
    path,
};

/// The HTML document around the app; the server renders it for every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en" data-theme="dark">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="dark light"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HashedStylesheet options=options.clone() id="leptos"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The page's Content-Security-Policy: scripts only with this response's nonce (the hydration
/// scripts carry it) and what they load, the wasm, the socket and fetches to this origin, and no
/// framing. Styles may be inline: the charts set widths and colours in `style` attributes.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    live::LiveClient::provide();
    pages::Header::provide();
    pages::AlertFeed::provide();

    view! {
        <Title text="Watchroom"/>
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"Watchroom"</a>
                <nav class="sections" aria-label="sections">
                    <A href="/" exact=true>"Dashboards"</A>
                    <a href="/#sources">"Sources"</a>
                    <A href="/rooms">"Rooms"</A>
                    <A href="/alerts">"Alerts"</A>
                    <A href="/history">"History"</A>
                </nav>
                <live::ConnectionBadge/>
                <pages::AlertCenter/>
                <ThemeToggle/>
                <pages::AccountMenu/>
            </header>
            <main>
                // Async: the first response already holds the recent past, charts included.
                <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                    <Route path=path!("") view={Lazy::<OverviewRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/d/:name") view=pages::Board ssr=SsrMode::Async/>
                    <Route path=path!("/rooms") view={Lazy::<RoomsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/rooms/:room") view={Lazy::<RoomRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/alerts") view={Lazy::<AlertsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/history") view={Lazy::<HistoryRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/history/:room/:seq") view={Lazy::<EventRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/wall") view={Lazy::<WallRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/settings") view={Lazy::<SettingsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/settings/tokens") view={Lazy::<SettingsRoute>::new()} ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// Routes whose code the browser loads the first time one of them opens (`cargo leptos build
/// --split`): everything but the dashboards, which operators open most. Lazy, they would load
/// more, not less: their code, shared with the overview and the wall, would go into dozens of
/// small chunks fetched and compressed one by one (docs/benchmarks.md, "The page's weight").
///
/// Each route's view is split with `wasm_split`'s `fallible` option rather than `#[lazy_route]`,
/// whose loader panics when the module does not come, and a panic aborts the page's wasm: a
/// server restarting (a deploy) as an operator opens a page would leave that tab dead. Here the
/// module is asked for again (1 s, doubling to 30 s) and the page opens once it comes.
macro_rules! lazy_routes {
    ($($module:ident: $route:ident => $page:path),* $(,)?) => {$(
        struct $route;

        impl LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            async fn view(_this: Self) -> AnyView {
                #[cfg(feature = "hydrate")]
                return pages::until_some(async || $module::view().await.ok()).await;
                #[cfg(not(feature = "hydrate"))]
                view! { <$page/> }.into_any()
            }

            async fn preload() {
                #[cfg(feature = "hydrate")]
                pages::until_some(async || $module::preload().await.ok()).await;
            }
        }

        #[cfg(feature = "hydrate")]
        mod $module {
            use super::*;

            #[leptos::wasm_split::wasm_split(
                $module,
                wasm_split_path = ::leptos::wasm_split,
                fallible,
                preload(preload)
            )]
            pub fn view() -> Result<AnyView, leptos::wasm_split::SplitLoaderError> {
                Ok(view! { <$page/> }.into_any())
            }
        }
    )*};
}

lazy_routes! {
    overview_route: OverviewRoute => pages::Overview,
    rooms_route: RoomsRoute => pages::RoomsPage,
    room_route: RoomRoute => pages::RoomPage,
    alerts_route: AlertsRoute => pages::AlertsPage,
    history_route: HistoryRoute => pages::HistoryPage,
    event_route: EventRoute => pages::HistoryEvent,
    wall_route: WallRoute => pages::Wall,
    settings_route: SettingsRoute => pages::Settings,
}

/// Dark by default, as a room of screens wants; the choice is kept in the browser.
#[component]
fn ThemeToggle() -> impl IntoView {
    let light = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    {
        let storage = || web_sys::window().and_then(|w| w.local_storage().ok().flatten());
        let root = || {
            web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.document_element())
        };
        Effect::new(move |first: Option<()>| {
            if first.is_none() {
                let saved = storage().and_then(|s| s.get_item("theme").ok().flatten());
                light.set(saved.as_deref() == Some("light"));
            }
            let theme = if light.get() { "light" } else { "dark" };
            if let Some(root) = root() {
                let _ = root.set_attribute("data-theme", theme);
            }
            if let Some(storage) = storage() {
                let _ = storage.set_item("theme", theme);
            }
        });
    }
    view! {
        <button
            class="theme-toggle"
            type="button"
            aria-pressed=move || light.get().to_string()
            on:click=move |_| light.update(|l| *l = !*l)
        >
            {move || if light.get() { "Dark theme" } else { "Light theme" }}
        </button>
    }
}
