//! The Watchroom server: pages, API and live fan-out over one axum router.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod collector;
pub mod config;
pub mod embedded_postgres;
pub mod error;
pub mod escape;
pub mod fanout;
pub mod health;
pub mod hub;
pub mod ingest;
pub mod jobs;
mod layers;
mod listener;
pub mod pages;
pub mod prometheus;
pub mod rate;
pub mod retention;
mod serve;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod ws;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, LazyLock},
    time::Duration,
};

use app::{
    App, accounts::SharedAccounts, alerts::SharedAlertBook, dashboards::SharedDashboards,
    history::SharedHistory, shell,
};
use axum::{Router, extract::FromRef, routing::get, serve::ListenerExt};
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use sqlx::postgres::PgConnectOptions;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::services::ServeDir;

use alerts::{Alerts, Feed, notify::Senders};
use auth::Auth;
use bus::Bus;
pub use config::Config;
use embedded_postgres::EmbeddedPostgres;
pub use error::{Error, Result, RunError};
use hub::Hub;
use ingest::Ingest;
use jobs::Leadership;
use pages::Pages;
use store::{Store, Timeouts};
use telemetry::Telemetry;

/// How often rooms whose membership changed are told their watcher count.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// How often, with other nodes, each room here is compared with its head in the store: the
/// longest a lost message's event waits when no later event reveals the gap.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What every handler shares: one allocation, so handing it to a request or keeping it for a
/// socket's life costs a pointer, not a copy of every handle.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts handlers extract by themselves.
impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for Telemetry {
    fn from_ref(state: &AppState) -> Self {
        state.telemetry.clone()
    }
}

pub struct Shared {
    pub leptos: LeptosOptions,
    pub store: Store,
    pub hub: Hub,
    pub ingest: Ingest,
    pub config: Arc<Config>,
    /// Cancelled when the server begins to shut down; sockets close with 1012.
    pub shutdown: CancellationToken,
    /// Open WebSocket connections, so shutdown can wait for them to drain.
    pub connections: TaskTracker,
    pub auth: Auth,
    pub alerts: Alerts,
    /// Where people reach this server: links in notifications point here.
    pub public_url: Arc<str>,
    /// How notifications are sent (one HTTP client and its connection pool for all).
    pub senders: Senders,
    pub telemetry: Telemetry,
}

/// A started server. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub store: Store,
    pub auth: Auth,
    shutdown: CancellationToken,
    connections: TaskTracker,
    /// Work that finishes what it began before the server stops (notifications in flight).
    background: TaskTracker,
    grace: Duration,
    task: JoinHandle<std::io::Result<()>>,
    embedded: Option<EmbeddedPostgres>,
}

/// Connects to the configured Postgres, or starts (or adopts) the private cluster, and brings
/// the schema up to date. The private cluster, if any, comes along to be stopped.
pub async fn open_store(config: &Config) -> Result<(Store, Option<EmbeddedPostgres>), RunError> {
    let (url, embedded) = match &config.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let pg = EmbeddedPostgres::start(&config.data_dir).await?;
            (pg.url(), Some(pg))
        }
    };
    let retention = storage::retention(config);
    let connected = async {
        let timeouts = Timeouts {
            query: config.query_timeout,
            lock: config.lock_timeout,
            commit: config.commit_timeout,
        };
        let store = Store::connect(url.parse::<PgConnectOptions>()?, timeouts).await?;
        let limits = store::SeriesLimits {
            per_source: config.max_series_per_source,
            total: config.max_series,
        };
        Ok::<_, RunError>(store.keeping(retention).limiting(limits))
    };
    match connected.await {
        Ok(store) => Ok((store, embedded)),
        Err(e) => {
            if let Some(pg) = embedded.filter(EmbeddedPostgres::started_here) {
                let _ = pg.stop().await;
            }
            Err(e)
        }
    }
}

/// Connects to (or starts) Postgres, migrates it, binds the listener and serves in the background.
pub async fn start(config: &Config) -> Result<Running, RunError> {
    let telemetry = Telemetry::default();
    let (bus, links) = match (&config.redis_url, &config.database_url) {
        (None, _) => (Bus::Local, None),
        (Some(url), Some(_)) => {
            let (bus, links) = Bus::redis(url, telemetry.clone())?;
            (bus, Some(links))
        }
        (Some(_), None) => {
            return Err(RunError::Refused(
                "--redis-url joins nodes that share one database: set DATABASE_URL too (the \
                 private Postgres serves a single node)"
                    .into(),
            ));
        }
    };
    let (store, embedded) = open_store(config).await?;
    let shutdown = CancellationToken::new();
    let hub = Hub::new(store.clone(), bus.clone(), telemetry.clone());
    // Alone, a node does the cluster's jobs; with others, the one holding the lease does.
    let leader = match bus.is_remote() {
        true => Leadership::contend(store.clone(), shutdown.clone()),
        false => Leadership::alone(),
    };
    let (feed, committed) = Feed::new();
    let ingest = Ingest::spawn(
        store.clone(),
        hub.clone(),
        feed.clone(),
        config.ingest_queue_bytes,
        telemetry.clone(),
    );
    let ready = async {
        storage::prepare(&store).await?;
        store.seed_dashboards(&collector::host_source()).await?;
        let job = (leader.clone(), bus);
        let alerts =
            Alerts::start(&store, ingest.clone(), committed, job, shutdown.clone()).await?;
        let senders = Senders::new(config)?;
        let listener = TcpListener::bind(config.listen).await?;
        Ok::<_, RunError>((listener, alerts, senders))
    };
    let (listener, alerts, senders) = match ready.await {
        Ok(ready) => ready,
        Err(e) => {
            // The contender for the lease stops, letting it go.
            shutdown.cancel();
            if let Some(pg) = embedded {
                let _ = pg.stop().await;
            }
            return Err(e);
        }
    };

    let mut leptos = get_configuration(None)
        .map_err(|e| RunError::Leptos(e.to_string()))?
        .leptos_options;
    leptos.site_addr = config.listen;
    leptos.site_root = config.site_root.to_string_lossy().into();
    // A release build by cargo-leptos names the site's files by their hashes and leaves the
    // hashes beside the binary; a plain `cargo build` serves them unhashed.
    leptos.hash_files = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(leptos.hash_file.as_ref())))
        .is_some_and(|hashes| hashes.exists());

    if let Some(links) = links {
        let receivers = bus::Receivers {
            hub: hub.clone(),
            alerts: alerts.clone(),
            feed,
            store: store.clone(),
            leader: leader.clone(),
        };
        links.spawn(receivers, shutdown.clone());
        hub.spawn_sweep(SWEEP_EVERY, shutdown.clone());
    }
    let addr = listener.local_addr()?;
    let stylesheet = leptos_meta::HashedStylesheet(leptos_meta::HashedStylesheetProps {
        options: leptos.clone(),
        id: None,
        root: None,
    })
    .to_html();
    let auth = Auth::new(config, addr, store.clone(), stylesheet, shutdown.clone());
    auth.start(shutdown.clone()).await;
    hub.spawn_presence(PRESENCE_EVERY, shutdown.clone());
    let public_url: Arc<str> = match &config.public_url {
        Some(url) => url.trim_end_matches('/').into(),
        None => format!("http://{addr}").into(),
    };
    let background = TaskTracker::new();
    alerts::notify::spawn(
        store.clone(),
        alerts.clone(),
        senders.clone(),
        public_url.clone(),
        leader.clone(),
        &background,
        shutdown.clone(),
    );
    retention::spawn(
        store.clone(),
        retention::Policy::of(config),
        leader.clone(),
        &background,
        shutdown.clone(),
    );
    storage::spawn(
        store.clone(),
        config.rollup_every,
        leader,
        &background,
        shutdown.clone(),
    );
    let state = AppState(Arc::new(Shared {
        leptos,
        store: store.clone(),
        ingest,
        hub,
        alerts,
        public_url,
        senders,
        config: Arc::new(config.clone()),
        shutdown: shutdown.clone(),
        connections: TaskTracker::new(),
        auth,
        telemetry,
    }));
    if config.host_metrics {
        let own = collector::Own {
            hub: state.hub.clone(),
            ingest: state.ingest.clone(),
            connections: state.connections.clone(),
        };
        collector::spawn(own, shutdown.clone());
    }
    // What the caller keeps of the server it started.
    let (hub, connections, auth) = (
        state.hub.clone(),
        state.connections.clone(),
        state.auth.clone(),
    );
    let stopping = shutdown.clone();
    // Pushes are small frames that must leave at once: Nagle's algorithm would hold them back
    // waiting for the peer's delayed ACK, adding tens of milliseconds.
    let (max, per_address) = (config.max_connections, config.max_connections_per_address);
    let listener = listener::Capped::new(listener, max, per_address).tap_io(|connection| {
        if let Err(e) = connection.tcp().set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let pages = Pages::new(store.clone(), state.alerts.clone());
    let header_timeout = config.header_timeout;
    let task = tokio::spawn(serve::serve(
        listener,
        router(state, pages),
        header_timeout,
        stopping,
    ));
    tracing::info!(%addr, "watchroom listening");
    Ok(Running {
        addr,
        hub,
        store,
        auth,
        shutdown,
        connections,
        background,
        grace: config.shutdown_grace,
        task,
        embedded,
    })
}

/// The pages' routes, listed once per process: listing runs the app with resource loading
/// suppressed through a process-wide flag, and a page rendering meanwhile (another server in the
/// same process, as in the tests) would wait forever for its data (leptos issue 4773).
static ROUTES: LazyLock<Vec<AxumRouteListing>> = LazyLock::new(|| generate_route_list(App));

fn router(state: AppState, pages: Pages) -> Router {
    let history = SharedHistory(Arc::new(pages.clone()));
    let dashboards = SharedDashboards(Arc::new(pages.clone()));
    let book = SharedAlertBook(Arc::new(pages.clone()));
    let accounts = SharedAccounts(Arc::new(pages));
    let leptos = state.leptos.clone();
    // The wasm, script and stylesheet as `cargo leptos build --precompress` left them beside
    // themselves (`.br`, `.gz`, compressed once at the highest level). Compressed per request,
    // at a level fast enough for that, the first module went out a quarter larger.
    let assets = Path::new(leptos.site_root.as_ref()).join(leptos.site_pkg_dir.as_ref());
    let assets = ServeDir::new(assets)
        .precompressed_br()
        .precompressed_gzip();
    let routes = Router::new()
        .merge(api::router())
        .merge(auth::router())
        .merge(health::router())
        .merge(telemetry::router())
        .route("/ws", get(ws::upgrade))
        .nest_service(&format!("/{}", leptos.site_pkg_dir), assets)
        .leptos_routes_with_context(
            &state,
            ROUTES.clone(),
            move || {
                provide_context(history.clone());
                provide_context(dashboards.clone());
                provide_context(accounts.clone());
                provide_context(book.clone());
            },
            move || shell(leptos.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::gate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.telemetry.clone(),
            telemetry::count_refusals,
        ));
    let limit = state.config.request_timeout;
    let hashed = state.leptos.hash_files;
    layers::around(routes, limit, hashed).with_state(state)
}

impl Running {
    /// Stops accepting, closes sockets with 1012, waits for requests in flight and sockets to
    /// drain (at most the grace period), then stops the private Postgres if this server started it.
    pub async fn stop(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        self.connections.close();
        self.background.close();
        let drained = async {
            let served = self.task.await;
            self.connections.wait().await;
            self.background.wait().await;
            served
        };
        let served = match tokio::time::timeout(self.grace, drained).await {
            Ok(Ok(served)) => served.map_err(RunError::from),
            Ok(Err(task)) => Err(RunError::from(task)),
            Err(_) => {
                tracing::warn!(
                    "connections still open after the shutdown grace period; exiting anyway"
                );
                Ok(())
            }
        };
        // Whatever became of the server, the private cluster is stopped.
        if let Some(pg) = self.embedded {
            pg.stop().await?;
        }
        served
    }
}
