//! Alerts in the browser: the header badge, drawer and toasts on every page, kept current by room
//! `alerts`; the `/alerts` page with rules, silences, channels and what happened.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[cfg(feature = "hydrate")]
use super::follow_events;
use super::{form::Fields, loaded};
use crate::{
    alerts::{
        self, Delivery, Instance, Key, Severity, Silence, State, StoredChannel, StoredRule,
        format_value,
    },
    error::AppError,
    protocol::{Event, RoomSnapshot},
};

/// How long a toast of a warning or info alert stays; critical ones stay until handled.
#[cfg(feature = "hydrate")]
const TOAST_MS: u64 = 10_000;

/// Alert events kept for pages that mark them.
#[cfg(feature = "hydrate")]
const RECENT_KEPT: usize = 100;

/// The open instances, for those who may read alerts.
// Made by the server and read by the browser: a build with neither (`cargo test -p app`) uses it
// only through the server function's signature.
#[cfg_attr(not(any(feature = "ssr", feature = "hydrate")), allow(dead_code))]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertsNow {
    pub open: Vec<Instance>,
    pub may_handle: bool,
}

/// What the header shows of alerts as the page is rendered. The browser follows them from `head`
/// with code it loads once the page is up, and reads the instances themselves then.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertSummary {
    /// Room `alerts` as of just before the instances were read: pushes after it bring them on.
    pub head: RoomSnapshot,
    pub firing: Firing,
    pub may_handle: bool,
}

/// How many instances are in trouble, and the worst of their severities.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Firing {
    pub count: usize,
    pub worst: Option<Severity>,
}

impl Firing {
    #[cfg_attr(not(any(feature = "ssr", feature = "hydrate")), allow(dead_code))]
    fn of(open: &[Instance]) -> Self {
        let trouble = || open.iter().filter(|i| i.state.is_trouble());
        Self {
            count: trouble().count(),
            worst: trouble().map(|i| i.severity).max(),
        }
    }
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn current_alerts() -> Result<Option<AlertsNow>, AppError> {
    crate::error::answer(async move { open_instances(&crate::auth::identity()?).await }).await
}

/// The open instances, if `identity` may read alerts.
#[cfg(feature = "ssr")]
async fn open_instances(identity: &crate::auth::Identity) -> Result<Option<AlertsNow>, AppError> {
    if !identity.may_read(alerts::ROOM) {
        return Ok(None);
    }
    let book = expect_context::<alerts::SharedAlertBook>().0;
    let open = book
        .instances()
        .await?
        .into_iter()
        .filter(Instance::is_open)
        .collect();
    Ok(Some(AlertsNow {
        open,
        may_handle: identity.may_handle_alerts(),
    }))
}

/// What the header shows `identity` of alerts, if it may read them.
#[cfg(feature = "ssr")]
pub(super) async fn summarise(
    identity: &crate::auth::Identity,
) -> Result<Option<AlertSummary>, AppError> {
    if !identity.may_read(alerts::ROOM) {
        return Ok(None);
    }
    let history = expect_context::<crate::history::SharedHistory>().0;
    let room = crate::protocol::RoomName::parse(alerts::ROOM)
        .map_err(|e| AppError::Invalid(e.to_string()))?;
    let head = history.snapshot(room, 0).await?;
    Ok(open_instances(identity).await?.map(|now| AlertSummary {
        head,
        firing: Firing::of(&now.open),
        may_handle: now.may_handle,
    }))
}

/// Open instances, toasts and the right to handle them, shared by the header and any page.
#[derive(Clone, Copy)]
pub struct AlertFeed {
    pub open: RwSignal<Vec<Instance>>,
    /// What the header's badge shows: as rendered, then as `open` stands.
    pub firing: RwSignal<Firing>,
    pub toasts: RwSignal<Vec<Toast>>,
    pub may_handle: RwSignal<bool>,
    /// Whether `open` is filled and followed (in the browser, once the feed's code has loaded).
    pub live: RwSignal<bool>,
    /// The newest events of room `alerts` pushed since the page was rendered, oldest first, for
    /// pages that mark them (dashboards).
    pub recent: RwSignal<Vec<Event>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Toast {
    pub id: u64,
    pub key: Key,
    pub text: String,
    pub severity: Severity,
}

impl AlertFeed {
    pub fn provide() {
        provide_context(Self {
            open: RwSignal::new(Vec::new()),
            firing: RwSignal::new(Firing::default()),
            toasts: RwSignal::new(Vec::new()),
            may_handle: RwSignal::new(false),
            live: RwSignal::new(false),
            recent: RwSignal::new(Vec::new()),
        });
    }

    pub fn expect() -> Self {
        expect_context()
    }

    /// Shows `summary` now and, once the page has hydrated, follows room `alerts` from its head.
    fn start(self, summary: AlertSummary) {
        self.firing.set(summary.firing);
        self.may_handle.set(summary.may_handle);
        #[cfg(feature = "hydrate")]
        {
            let owner = Owner::current();
            Effect::new(move |_| {
                let (from, owner) = (summary.head.clone(), owner.clone());
                // The module may not come (the server restarting): asked for again, as the
                // socket asks for the server again.
                leptos::task::spawn_local(async move {
                    super::until_some(async || {
                        follow_alerts(self, from.clone(), owner.clone()).await.ok()
                    })
                    .await
                });
            });
        }
    }

    /// Whether the feed is live, as a view may show it: false until the view itself has
    /// hydrated (as the server rendered it), then the feed's. A page whose code loads lazily
    /// hydrates after the feed went live; reading `live` directly would hydrate the other branch
    /// over the server's markup.
    fn live_once_hydrated(self) -> Signal<bool> {
        let shown = RwSignal::new(false);
        Effect::new(move |_| shown.set(self.live.get()));
        shown.into()
    }
}

/// What only the browser's feed does: take the news, and read the instances afresh.
#[cfg(feature = "hydrate")]
impl AlertFeed {
    fn take(self, news: alerts::News) {
        if let alerts::News::Transition(t) = &news {
            let told = t.state.is_trouble() && !t.silenced;
            self.toasts
                .update(|toasts| toasts.retain(|toast| toast.key != t.key));
            if told {
                let id = self
                    .toasts
                    .with_untracked(|t| t.iter().map(|t| t.id).max().unwrap_or(0))
                    + 1;
                let text = format!(
                    "{} {}: {}",
                    t.state.as_str().to_uppercase(),
                    t.name,
                    t.summary
                );
                desktop_notification(&text);
                self.toasts.update(|toasts| {
                    toasts.push(Toast {
                        id,
                        key: t.key.clone(),
                        text,
                        severity: t.severity,
                    })
                });
                if t.severity != Severity::Critical {
                    self.expire(id);
                }
            }
        }
        if let alerts::News::Ack(ack) = &news {
            self.toasts
                .update(|toasts| toasts.retain(|toast| toast.key != ack.key));
        }
        self.open.update(|open| alerts::apply(open, &news));
        self.firing
            .set(self.open.with_untracked(|open| Firing::of(open)));
    }

    fn expire(self, id: u64) {
        set_timeout(
            move || self.toasts.update(|toasts| toasts.retain(|t| t.id != id)),
            std::time::Duration::from_millis(TOAST_MS),
        );
    }

    /// Reads the open instances afresh: when the feed starts, and when pushes alone can no
    /// longer tell them. `None` if it could not.
    async fn refresh(self) -> Option<()> {
        let Ok(Some(now)) = current_alerts().await else {
            return None;
        };
        self.firing.set(Firing::of(&now.open));
        self.open.set(now.open);
        self.may_handle.set(now.may_handle);
        Some(())
    }
}

/// Follows room `alerts` from `from`, where the page was rendered, on the instances read afresh
/// (until they can be: the list the page shows is only ever whole): events since `from` are
/// applied again, each setting what it sets, and toast as news. In a module of its own, which the
/// browser loads once the page has hydrated (drawn and live without it); `fallible`: a module
/// that does not come is an error to try again on, where Leptos' `#[lazy]` would panic.
#[cfg(feature = "hydrate")]
#[leptos::wasm_split::wasm_split(alert_feed, wasm_split_path = ::leptos::wasm_split, fallible)]
fn follow_alerts(
    feed: AlertFeed,
    from: RoomSnapshot,
    owner: Option<Owner>,
) -> Result<(), leptos::wasm_split::SplitLoaderError> {
    leptos::task::spawn_local(async move {
        super::until_some(async || feed.refresh().await).await;
        let follow = move || {
            follow_events(from, move |event, missed| {
                feed.recent.update(|recent| {
                    recent.push(event.clone());
                    let extra = recent.len().saturating_sub(RECENT_KEPT);
                    recent.drain(..extra);
                });
                if let Ok(event) = serde_json::from_value::<alerts::AlertEvent>(event.data.clone())
                {
                    feed.take(event.news);
                }
                if missed {
                    leptos::task::spawn_local(async move {
                        feed.refresh().await;
                    });
                }
            });
            feed.live.set(true);
        };
        match owner {
            Some(owner) => owner.with(follow),
            None => follow(),
        }
    });
    Ok(())
}

/// Tells the operator through the desktop when the tab is hidden and they allowed it.
#[cfg(feature = "hydrate")]
fn desktop_notification(text: &str) {
    use web_sys::{Notification, NotificationPermission};
    let hidden = web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.hidden());
    if hidden && Notification::permission() == NotificationPermission::Granted {
        let _ = Notification::new(text);
    }
}

/// Calls the JSON API as the signed-in user; the error is the server's message.
#[cfg(feature = "hydrate")]
async fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    use gloo_net::http::Request;
    let request = match method {
        "POST" => Request::post(url),
        "PUT" => Request::put(url),
        "DELETE" => Request::delete(url),
        _ => Request::get(url),
    };
    let sent = match body {
        Some(body) => request.json(&body).map_err(|e| e.to_string())?.send().await,
        None => request.send().await,
    };
    let response = sent.map_err(|e| e.to_string())?;
    let text = response.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match response.ok() {
        true => Ok(value),
        false => Err(value["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {}", response.status()))),
    }
}

/// Runs an API call from an event handler and hands its outcome to `done`.
fn act(
    method: &'static str,
    url: String,
    body: Option<Value>,
    done: impl FnOnce(Result<Value, String>) + 'static,
) {
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(async move { done(call(method, &url, body).await) });
    #[cfg(not(feature = "hydrate"))]
    let _ = (method, url, body, done);
}

/// Acknowledges the instance `key` names; from a toast or the list of open instances. In a
/// module of its own, loaded when first used (`fallible`, as `follow_alerts`).
#[cfg(feature = "hydrate")]
#[leptos::wasm_split::wasm_split(acknowledging, wasm_split_path = ::leptos::wasm_split, fallible)]
fn acknowledge(key: Key) -> Result<(), leptos::wasm_split::SplitLoaderError> {
    let body = json!({"rule": key.rule, "source": key.source, "labels": key.labels});
    act("POST", "/api/alerts/ack".into(), Some(body), |outcome| {
        if let Err(e) = outcome {
            leptos::logging::warn!("acknowledging failed: {e}");
        }
    });
    Ok(())
}

/// Acknowledges from an event handler.
fn acknowledge_now(key: &Key) {
    #[cfg(feature = "hydrate")]
    {
        let key = key.clone();
        leptos::task::spawn_local(async move {
            if acknowledge(key).await.is_err() {
                leptos::logging::warn!("acknowledging failed: its code did not load");
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = key;
}

/// The header's alert badge, its drawer and the toasts: on every page, for those who may read
/// alerts.
#[component]
pub fn AlertCenter() -> impl IntoView {
    let header = super::Header::expect().0;
    let feed = AlertFeed::expect();
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match header.await.map(|header| header.alerts) {
                    Ok(Ok(Some(summary))) => {
                        feed.start(summary);
                        view! { <AlertBadge/> <Toasts/> }.into_any()
                    }
                    // Said, not left out: an operator must not read a missing badge as calm.
                    Ok(Err(e)) => view! {
                        <span class="alert-badge unknown" data-testid="alert-badge" title=e.to_string()>
                            "Alerts unavailable"
                        </span>
                    }
                    .into_any(),
                    _ => ().into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AlertBadge() -> impl IntoView {
    let feed = AlertFeed::expect();
    let open = RwSignal::new(false);
    let class = move || match feed.firing.get().worst {
        Some(severity) => format!("alert-badge {}", severity.as_str()),
        None => "alert-badge calm".into(),
    };
    view! {
        <div class="alert-center">
            <button
                class=class
                type="button"
                data-testid="alert-badge"
                aria-expanded=move || open.get().to_string()
                on:click=move |_| open.update(|o| *o = !*o)
            >
                {move || match feed.firing.get().count {
                    0 => "No alerts".to_owned(),
                    1 => "1 firing".to_owned(),
                    n => format!("{n} firing"),
                }}
            </button>
            <Show when=move || open.get()>
                <div class="alert-drawer" role="dialog" aria-label="open alerts">
                    {drawer()}
                </div>
            </Show>
        </div>
    }
}

/// The drawer's content: only ever shown in the browser, when asked for.
fn drawer() -> AnyView {
    #[cfg(feature = "hydrate")]
    return Suspend::new(async {
        alert_drawer().await.unwrap_or_else(|_| {
            view! { <p class="error" role="alert">"The list did not load: close and open it again."</p> }
                .into_any()
        })
    })
    .into_any();
    #[cfg(not(feature = "hydrate"))]
    ().into_any()
}

/// In a module of its own, loaded when the drawer first opens (`fallible`, as `follow_alerts`).
#[cfg(feature = "hydrate")]
#[leptos::wasm_split::wasm_split(alert_drawer, wasm_split_path = ::leptos::wasm_split, fallible)]
fn alert_drawer() -> Result<AnyView, leptos::wasm_split::SplitLoaderError> {
    Ok(view! {
        <InstanceList/>
        <p class="drawer-foot">
            <a href="/alerts">"All alerts"</a>
            <DesktopNotifications/>
        </p>
    }
    .into_any())
}

/// The open instances, most urgent first, with their acknowledgements.
#[component]
fn InstanceList() -> impl IntoView {
    let feed = AlertFeed::expect();
    let live = feed.live_once_hydrated();
    view! {
        <Show when=move || live.get() fallback=|| view! { <p class="empty">"Loading alerts…"</p> }>
        <Show
            when=move || feed.open.with(|o| !o.is_empty())
            fallback=|| view! { <p class="empty">"Nothing is firing."</p> }
        >
            <ul class="instances">
                <For
                    each=move || feed.open.get()
                    key=|i| (i.key.clone(), i.since, i.ack.is_some())
                    let:instance
                >
                    <InstanceRow instance/>
                </For>
            </ul>
        </Show>
        </Show>
    }
}

#[component]
fn InstanceRow(instance: Instance) -> impl IntoView {
    let feed = AlertFeed::expect();
    let key = instance.key.clone();
    let labels = instance
        .key
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    view! {
        <li class=format!("instance {} {}", instance.state.as_str(), instance.severity.as_str()) data-testid="instance">
            <span class="state">{instance.state.as_str()}</span>
            <span class="name">{instance.name.clone()}</span>
            <span class="source">{instance.key.source.clone()} " " {labels}</span>
            <span class="value">{instance.value.map(format_value).unwrap_or_else(|| "no data".into())}</span>
            <span class="summary">{instance.summary.clone()}</span>
            {match instance.ack.clone() {
                Some(ack) => view! { <span class="acked">"acknowledged by " {ack.by}</span> }.into_any(),
                None => view! {
                    <Show when=move || feed.may_handle.get()>
                        <button type="button" class="ack" on:click={
                            let key = key.clone();
                            move |_| acknowledge_now(&key)
                        }>"Acknowledge"</button>
                    </Show>
                }
                .into_any(),
            }}
            {instance.silenced.then(|| view! { <span class="silenced">"silenced"</span> })}
        </li>
    }
}

/// Asks for the browser's permission to notify, only when the operator presses it.
#[component]
fn DesktopNotifications() -> impl IntoView {
    let asked = RwSignal::new(false);
    let ask = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let _ = web_sys::Notification::request_permission();
        }
        asked.set(true);
    };
    view! {
        <button type="button" on:click=ask disabled=move || asked.get()>
            {move || if asked.get() { "Desktop notifications asked for" } else { "Desktop notifications" }}
        </button>
    }
}

/// Where toasts appear. Only the feed's pushes make them, so their code is in the feed's module,
/// and the region is filled once the feed runs; it is on the page from the first, as a live
/// region must be for what comes into it to be read out.
#[component]
fn Toasts() -> impl IntoView {
    let feed = AlertFeed::expect();
    view! {
        <div class="toasts" aria-live="assertive">
            {move || feed.live.get().then(toast_list)}
        </div>
    }
}

fn toast_list() -> AnyView {
    #[cfg(feature = "hydrate")]
    return Suspend::new(async { toasts().await.unwrap_or_else(|_| ().into_any()) }).into_any();
    #[cfg(not(feature = "hydrate"))]
    ().into_any()
}

/// In the feed's module, loaded already when the feed is live (`fallible`, as `follow_alerts`).
#[cfg(feature = "hydrate")]
#[leptos::wasm_split::wasm_split(alert_feed, wasm_split_path = ::leptos::wasm_split, fallible)]
fn toasts() -> Result<AnyView, leptos::wasm_split::SplitLoaderError> {
    let feed = AlertFeed::expect();
    Ok(view! {
        <For each=move || feed.toasts.get() key=|t| t.id let:toast>
            <div class=format!("toast {}", toast.severity.as_str()) role="alert" data-testid="toast">
                <span>{toast.text.clone()}</span>
                <Show when=move || feed.may_handle.get()>
                    <button type="button" on:click={
                        let key = toast.key.clone();
                        move |_| acknowledge_now(&key)
                    }>"Acknowledge"</button>
                </Show>
                {(toast.severity != Severity::Critical).then(|| {
                    let id = toast.id;
                    view! {
                        <button type="button" aria-label="dismiss" on:click=move |_| {
                            feed.toasts.update(|t| t.retain(|t| t.id != id))
                        }>"×"</button>
                    }
                })}
            </div>
        </For>
    }
    .into_any())
}

/// Firing alerts across the top of a wall screen.
#[component]
pub fn AlertBanner() -> impl IntoView {
    let feed = AlertFeed::expect();
    let live = feed.live_once_hydrated();
    let firing = move || {
        feed.open.with(|list| {
            list.iter()
                .filter(|i| i.state.is_trouble())
                .map(|i| (i.severity, format!("{}: {}", i.name, i.summary)))
                .collect::<Vec<_>>()
        })
    };
    view! {
        <Show when=move || live.get() && !firing().is_empty()>
            <div class="alert-banner" role="alert" data-testid="alert-banner">
                {move || firing()
                    .into_iter()
                    .map(|(severity, text)| view! { <span class=severity.as_str()>{text}</span> })
                    .collect_view()}
            </div>
        </Show>
    }
}

/// What `/alerts` shows besides the open instances.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertsPageData {
    pub rules: Vec<StoredRule>,
    pub silences: Vec<Silence>,
    /// Editors only: channels hold receivers' addresses.
    pub channels: Option<Vec<StoredChannel>>,
    /// The newest events of room `alerts`, newest first.
    pub history: Vec<Event>,
    pub may_edit: bool,
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn alerts_overview() -> Result<AlertsPageData, AppError> {
    /// Transitions and handling the page lists.
    const HISTORY_SHOWN: i64 = 100;
    crate::error::answer(async move {
        let identity = crate::auth::identity()?;
        if !identity.may_read(alerts::ROOM) {
            return Err(AppError::Forbidden("you may not read alerts".into()));
        }
        let history = expect_context::<crate::history::SharedHistory>().0;
        let book = expect_context::<alerts::SharedAlertBook>().0;
        let room = crate::protocol::RoomName::parse(alerts::ROOM)
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        let mut recent = history.snapshot(room, HISTORY_SHOWN).await?.events;
        recent.reverse();
        let may_edit = identity.may_handle_alerts();
        Ok(AlertsPageData {
            rules: book.rules().await?,
            silences: book.silences().await?,
            channels: match may_edit {
                true => Some(book.channels().await?),
                false => None,
            },
            history: recent,
            may_edit,
        })
    })
    .await
}

#[component]
pub fn AlertsPage() -> impl IntoView {
    let changed = RwSignal::new(0u32);
    let data = crate::json::data(move || changed.get(), |_| alerts_overview());
    view! {
        <h1>"Alerts"</h1>
        <section class="panel">
            <h2>"Firing and pending"</h2>
            <InstanceList/>
        </section>
        {loaded(data, move |page: AlertsPageData| view! { <Overview page changed/> })}
    }
}

/// How a rule's instances stand: `2 firing, 1 pending`, or `ok`.
fn rule_state(feed: AlertFeed, rule: i64) -> String {
    feed.open.with(|open| {
        let count = |state: State| {
            open.iter()
                .filter(|i| i.key.rule == rule && i.state == state)
                .count()
        };
        let parts: Vec<String> = [State::Firing, State::NoData, State::Pending]
            .into_iter()
            .filter_map(|state| match count(state) {
                0 => None,
                n => Some(format!("{n} {state}")),
            })
            .collect();
        match parts.is_empty() {
            true => "ok".into(),
            false => parts.join(", "),
        }
    })
}

#[component]
fn Overview(page: AlertsPageData, changed: RwSignal<u32>) -> impl IntoView {
    let feed = AlertFeed::expect();
    let live = feed.live_once_hydrated();
    let may_edit = page.may_edit;
    let refresh = move || changed.update(|n| *n += 1);
    let problem = RwSignal::new(None::<String>);
    let outcome = move |result: Result<Value, String>| match result {
        Ok(_) => {
            problem.set(None);
            refresh();
        }
        Err(e) => problem.set(Some(e)),
    };
    view! {
        {move || problem.get().map(|p| view! { <p class="error" role="alert">{p}</p> })}
        <section class="panel">
            <h2>"Rules"</h2>
            <table class="rules">
                <thead><tr><th>"Name"</th><th>"Condition"</th><th>"Severity"</th><th>"Now"</th><th></th></tr></thead>
                <tbody>
                    {page.rules.into_iter().map(|stored| {
                        let editing = stored.clone();
                        let StoredRule { id, rule } = stored;
                        let condition = format!(
                            "{}({}) over {} {} {} on {}{}",
                            serde_json::to_value(rule.reducer).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                            rule.series,
                            rule.window,
                            rule.op.as_str(),
                            format_value(rule.threshold),
                            rule.source,
                            if rule.pending_for.is_zero() { String::new() } else { format!(" for {}", rule.pending_for) },
                        );
                        let toggled = {
                            let mut rule = rule.clone();
                            rule.paused = !rule.paused;
                            serde_json::to_value(&rule).ok()
                        };
                        view! {
                            <tr data-testid="rule">
                                <td>{rule.name.clone()} {rule.paused.then_some(" (paused)")}</td>
                                <td><code>{condition}</code></td>
                                <td>{rule.severity.as_str()}</td>
                                // Live, so only once the feed follows the room (never on the server).
                                <td class="rule-state">{move || live.get().then(|| rule_state(feed, id))}</td>
                                <td>{may_edit.then(|| view! {
                                    <button type="button" on:click={
                                        let toggled = toggled.clone();
                                        move |_| act("PUT", format!("/api/alerts/rules/{id}"), toggled.clone(), outcome)
                                    }>{if rule.paused { "Resume" } else { "Pause" }}</button>
                                    <button type="button" class="danger" on:click=move |_| {
                                        act("DELETE", format!("/api/alerts/rules/{id}"), None, outcome)
                                    }>"Delete"</button>
                                    <details class="edit">
                                        <summary>"Edit"</summary>
                                        <RuleForm existing=Some(editing) outcome/>
                                    </details>
                                })}</td>
                            </tr>
                        }
                        .into_any()
                    }).collect_view()}
                </tbody>
            </table>
            {may_edit.then(|| view! {
                <details class="edit" data-testid="new-rule">
                    <summary>"New rule"</summary>
                    <RuleForm existing=None outcome/>
                </details>
            })}
        </section>
        <section class="panel">
            <h2>"Silences"</h2>
            <ul class="silences">
                {page.silences.into_iter().map(|s| {
                    let id = s.id;
                    let what = serde_json::to_string(&s.matchers).unwrap_or_default();
                    view! {
                        <li>
                            <code>{what}</code> " until " {format!("{} UTC", crate::format::minute(&s.ends))}
                            " by " {s.author} " — " {s.comment}
                            {may_edit.then(|| view! {
                                <button type="button" on:click=move |_| {
                                    act("DELETE", format!("/api/alerts/silences/{id}"), None, outcome)
                                }>"End"</button>
                            })}
                        </li>
                    }
                }).collect_view()}
            </ul>
            {may_edit.then(|| view! { <SilenceForm outcome/> })}
        </section>
        {page.channels.map(|channels| view! {
            <section class="panel">
                <h2>"Notification channels"</h2>
                <ul class="channels">
                    {channels.into_iter().map(|c| view! { <ChannelRow channel=c outcome/> }).collect_view()}
                </ul>
                <ChannelForm outcome/>
            </section>
        })}
        <section class="panel">
            <h2>"What happened"</h2>
            <ul class="feed">
                {page.history.into_iter().map(|event| view! {
                    <li class="event kind-alert">
                        <time>{format!("{} UTC", crate::format::second(&event.ts))}</time>
                        <span class="summary">{event.data["text"].as_str().unwrap_or_default().to_owned()}</span>
                    </li>
                }).collect_view()}
            </ul>
        </section>
    }
    .into_any()
}

/// Sends a submitted form as JSON, made by `body` from its fields, with `method` to `url`.
fn submit_json(
    event: leptos::ev::SubmitEvent,
    method: &'static str,
    url: String,
    body: impl Fn(&Fields) -> Value,
    outcome: impl FnOnce(Result<Value, String>) + 'static,
) {
    event.prevent_default();
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let form = event
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok());
        if let Some(form) = form {
            act(method, url, Some(body(&Fields::of(&form))), outcome);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (method, url, body, outcome);
}

fn field(fields: &Fields, name: &str) -> Value {
    match fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(v) => Value::String(v.to_owned()),
        None => Value::Null,
    }
}

/// A rule as the editor writes it: what `base` (the rule edited, or nothing) has, with the form's
/// fields over it; an empty field falls back to the default.
fn rule_json(base: &Value, f: &Fields) -> Value {
    let mut rule = base.clone();
    let object = rule.as_object_mut().expect("rules are objects");
    object.remove("id");
    for name in [
        "name", "source", "series", "reducer", "window", "op", "for", "severity", "summary",
    ] {
        match field(f, name) {
            Value::Null => object.remove(name),
            text => object.insert(name.into(), text),
        };
    }
    // A threshold that is no number is sent as written, for the server to refuse by name.
    match f.get("threshold").map(|t| t.trim()) {
        Some(t) if t.parse::<f64>().is_ok() => {
            object.insert("threshold".into(), json!(t.parse::<f64>().unwrap()))
        }
        Some("") | None => object.remove("threshold"),
        Some(t) => object.insert("threshold".into(), json!(t)),
    };
    rule
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn backtest_rule(rule: String) -> Result<alerts::Backtest, AppError> {
    crate::error::answer(async move {
        let identity = crate::auth::identity()?;
        if !identity.may_read(alerts::ROOM) {
            return Err(AppError::Forbidden("you may not read alerts".into()));
        }
        let value: Value =
            serde_json::from_str(&rule).map_err(|e| AppError::Invalid(e.to_string()))?;
        let rule = alerts::Rule::read(&value).map_err(|e| AppError::Invalid(e.to_string()))?;
        expect_context::<alerts::SharedAlertBook>()
            .0
            .backtest(rule, identity)
            .await
    })
    .await
}

/// Makes a rule, or changes `existing`; shows where it would have fired over the last day before
/// it is saved.
#[component]
fn RuleForm(
    existing: Option<StoredRule>,
    outcome: impl Fn(Result<Value, String>) + Copy + 'static,
) -> impl IntoView {
    let base = existing
        .as_ref()
        .and_then(|r| serde_json::to_value(&r.rule).ok())
        .unwrap_or_else(|| json!({}));
    let (method, url, save) = match &existing {
        Some(r) => ("PUT", format!("/api/alerts/rules/{}", r.id), "Save rule"),
        None => ("POST", "/api/alerts/rules".to_owned(), "Create rule"),
    };
    let text = |name: &str, default: &str| {
        base.get(name)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    };
    let (reducer, op, severity) = (
        text("reducer", "last"),
        text("op", ">"),
        text("severity", "warning"),
    );
    let choices = |options: &[&'static str], chosen: String| {
        options
            .iter()
            .map(|o| view! { <option selected=*o == chosen>{*o}</option> })
            .collect_view()
    };
    let form = NodeRef::<leptos::html::Form>::new();
    let preview = RwSignal::new(None::<Result<alerts::Backtest, String>>);
    let show_preview = {
        let base = base.clone();
        move |_| {
            #[cfg(feature = "hydrate")]
            if let Some(form) = form.get() {
                let rule = rule_json(&base, &Fields::of(&form)).to_string();
                leptos::task::spawn_local(async move {
                    let tested = backtest_rule(rule).await.map_err(|e| e.to_string());
                    preview.set(Some(tested));
                });
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = (&base, form, preview);
        }
    };
    let submit = {
        let base = base.clone();
        move |e| submit_json(e, method, url.clone(), |f| rule_json(&base, f), outcome)
    };
    view! {
        <form node_ref=form class="rule-form" on:submit=submit>
            <label>"Name" <input name="name" required value=text("name", "")/></label>
            <label>"Sources" <input name="source" placeholder="host:*" required value=text("source", "")/></label>
            <label>"Series" <input name="series" placeholder="cpu.total" required value=text("series", "")/></label>
            <label>"Reducer" <select name="reducer">{choices(&["last", "avg", "min", "max", "rate"], reducer)}</select></label>
            <label>"Window" <input name="window" value=text("window", "1m")/></label>
            <label>"Operator" <select name="op">{choices(&[">", ">=", "<", "<="], op)}</select></label>
            <label>"Threshold" <input name="threshold" inputmode="decimal" required value=text("threshold", "")/></label>
            <label>"For" <input name="for" value=text("for", "0s")/></label>
            <label>"Severity" <select name="severity">{choices(&["warning", "critical", "info"], severity)}</select></label>
            <label>"Summary" <input name="summary" placeholder="{{source}} cpu {{value}}%" value=text("summary", "")/></label>
            <button type="button" on:click=show_preview>"Preview the last 24 h"</button>
            <button type="submit">{save}</button>
        </form>
        {move || preview.get().map(|tested| match tested {
            Ok(backtest) => view! { <BacktestView backtest/> }.into_any(),
            Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
        })}
    }
    .into_any()
}

/// Each source's last day under the threshold line, the spans the rule would have fired shaded.
#[component]
fn BacktestView(backtest: alerts::Backtest) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 100.0;
    let span = (backtest.to - backtest.from).as_seconds_f64().max(1.0);
    let x = move |t: chrono::DateTime<chrono::Utc>| (t - backtest.from).as_seconds_f64() / span * W;
    if backtest.sources.is_empty() {
        return view! { <p class="empty" data-testid="backtest">"No matching source has this series in the last 24 h."</p> }.into_any();
    }
    let threshold = backtest.threshold;
    view! {
        <div class="backtest" data-testid="backtest">
            {backtest.sources.into_iter().map(|s| {
                let values = s.points.iter().map(|(_, v)| *v).chain([threshold]);
                let (low, high) = values.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
                let y = move |v: f64| H - (v - low) / (high - low).max(f64::EPSILON) * H;
                let line: String = s.points.iter().enumerate().map(|(i, (t, v))| {
                    format!("{}{:.1} {:.1}", if i == 0 { "M" } else { " L" }, x(*t), y(*v))
                }).collect();
                let fired = s.firing.len();
                view! {
                    <figure>
                        <figcaption>
                            <code>{s.source.clone()}</code>
                            {match fired {
                                0 => " would not have fired".to_owned(),
                                1 => " would have fired once".to_owned(),
                                n => format!(" would have fired {n} times"),
                            }}
                        </figcaption>
                        <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img">
                            {s.firing.iter().map(|(from, to)| view! {
                                <rect class="fired" x=x(*from) y="0" width=(x(*to) - x(*from)).max(1.0) height=H/>
                            }).collect_view()}
                            <path class="line line-0" d=line/>
                            <line class="threshold critical" x1="0" x2=W y1=y(threshold) y2=y(threshold)/>
                        </svg>
                    </figure>
                }
            }).collect_view()}
        </div>
    }
    .into_any()
}

#[component]
fn SilenceForm(outcome: impl Fn(Result<Value, String>) + Copy + 'static) -> impl IntoView {
    let body = |f: &Fields| {
        let mut matchers = json!({"rule": field(f, "rule"), "source": field(f, "source")});
        matchers
            .as_object_mut()
            .unwrap()
            .retain(|_, v| !v.is_null());
        json!({"matchers": matchers, "duration": field(f, "duration"), "comment": f.text("comment")})
    };
    view! {
        <details class="edit">
            <summary>"New silence"</summary>
            <form class="rule-form" on:submit=move |e| submit_json(e, "POST", "/api/alerts/silences".into(), body, outcome)>
                <label>"Rule name" <input name="rule" placeholder="cpu*"/></label>
                <label>"Sources" <input name="source" placeholder="host:web-1"/></label>
                <label>"For" <input name="duration" value="1h" required/></label>
                <label>"Comment" <input name="comment"/></label>
                <button type="submit">"Silence"</button>
            </form>
        </details>
    }
    .into_any()
}

#[component]
fn ChannelRow(
    channel: StoredChannel,
    outcome: impl Fn(Result<Value, String>) + Copy + 'static,
) -> impl IntoView {
    let id = channel.id;
    let tested = RwSignal::new(None::<String>);
    let test = move |_| {
        act(
            "POST",
            format!("/api/alerts/channels/{id}/test"),
            None,
            move |result| {
                tested.set(Some(match result {
                    Ok(answer) if answer["sent"] == true => "sent".into(),
                    Ok(answer) => {
                        format!("failed: {}", answer["error"].as_str().unwrap_or_default())
                    }
                    Err(e) => format!("failed: {e}"),
                }))
            },
        )
    };
    let log = RwSignal::new(None::<Result<Vec<Delivery>, String>>);
    let show_log = move |_| {
        act(
            "GET",
            format!("/api/alerts/channels/{id}/deliveries"),
            None,
            move |result| {
                log.set(Some(result.and_then(|v| {
                    serde_json::from_value(v).map_err(|e| e.to_string())
                })))
            },
        )
    };
    view! {
        <li data-testid="channel">
            <strong>{channel.channel.name.clone()}</strong> " "
            <code>{serde_json::to_value(&channel.channel.target).ok().and_then(|t| t["kind"].as_str().map(str::to_owned))}</code> " "
            <button type="button" on:click=test>"Send test"</button>
            <button type="button" on:click=show_log>"Deliveries"</button>
            <button type="button" class="danger" on:click=move |_| act("DELETE", format!("/api/alerts/channels/{id}"), None, outcome)>"Delete"</button>
            <span class="tested" role="status">{move || tested.get()}</span>
            {move || log.get().map(|log| match log {
                Ok(log) if log.is_empty() => view! { <p class="empty">"Nothing sent yet."</p> }.into_any(),
                Ok(log) => view! {
                    <table class="rules deliveries">
                        <thead><tr><th>"Queued"</th><th>"Status"</th><th>"Attempts"</th><th>"Alert"</th><th>"Last error"</th></tr></thead>
                        <tbody>
                            {log.into_iter().map(|d| view! {
                                <tr>
                                    <td>{crate::format::second(&d.created)}</td>
                                    <td>{d.status}</td>
                                    <td>{d.attempts}</td>
                                    <td>{d.summary}</td>
                                    <td>{d.last_error.unwrap_or_default()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
                Err(e) => view! { <p class="error">{e}</p> }.into_any(),
            })}
        </li>
    }
    .into_any()
}

#[component]
fn ChannelForm(outcome: impl Fn(Result<Value, String>) + Copy + 'static) -> impl IntoView {
    let body = |f: &Fields| {
        let kind = field(f, "kind");
        match kind.as_str() {
            Some("email") => {
                let to: Vec<&str> = f
                    .get("to")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .collect();
                json!({"name": field(f, "name"), "kind": kind, "to": to})
            }
            _ => json!({"name": field(f, "name"), "kind": kind, "url": field(f, "url")}),
        }
    };

    view! {
        <details class="edit">
            <summary>"New channel"</summary>
            <form class="rule-form" on:submit=move |e| submit_json(e, "POST", "/api/alerts/channels".into(), body, outcome)>
                <label>"Name" <input name="name" required/></label>
                <label>"Kind" <select name="kind">
                    <option value="webhook">"Alertmanager webhook"</option>
                    <option value="slack">"Slack"</option>
                    <option value="email">"Email"</option>
                </select></label>
                <label>"Address (webhooks)" <input name="url" type="url"/></label>
                <label>"To (email, comma-separated)" <input name="to"/></label>
                <button type="submit">"Add channel"</button>
            </form>
        </details>
    }
    .into_any()
}
