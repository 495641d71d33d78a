//! Identity before anything else: every request but the probes (`/healthz`, `/readyz`), the
//! sign-in pages and static assets passes [`gate`], which finds who sent it (an API token, a
//! session cookie, or anonymous access where enabled), checks its Host and, for
//! cookie-authenticated changes, its origin, and hands the [`Identity`] on to handlers, sockets
//! and server functions.

mod forms;
mod live;
mod password;
mod secret;
mod throttle;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use app::auth::{Identity, Pattern, Role};
use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, Method, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

pub use live::{Credential, Hold, LiveCredentials};
pub use password::Passwords;
pub use secret::{TOKEN_PREFIX, digest, new_secret, new_token};
use throttle::Throttle;

use crate::rate::Allowances;

use crate::{
    AppState, Config,
    error::{Error, Result},
    escape::url_encoded,
    store::{Account, Store},
};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "watchroom_session";
/// How often open sockets' credentials are checked: a revoked one is closed within two of these.
const REVOCATION_CHECK: Duration = Duration::from_secs(2);

/// A handle on the server's authentication state, cheap to clone: every socket keeps one.
#[derive(Clone)]
pub struct Auth(Arc<AuthState>);

impl std::ops::Deref for Auth {
    type Target = AuthState;
    fn deref(&self) -> &AuthState {
        &self.0
    }
}

pub struct AuthState {
    store: Store,
    passwords: Passwords,
    /// Failed logins per account name, and per address.
    accounts: Throttle,
    addresses: Throttle,
    pub live: LiveCredentials,
    /// Publishes (over sockets and HTTP) and ingest requests, per session or token: more
    /// sockets do not buy more.
    publishes: Allowances<Credential>,
    publish_limit: (f64, f64),
    /// Sockets refused for want of an identity, per address.
    upgrades: Throttle,
    /// Origins a browser may send (pages, sockets, changes) from.
    origins: Vec<String>,
    /// Host headers this server answers to.
    hosts: Vec<String>,
    /// The site's stylesheet `<link>` (by its hashed name when the site has them), so the
    /// sign-in pages look like the rest.
    stylesheet: String,
    /// Cookies only over https.
    secure: bool,
    anonymous: Option<Identity>,
    idle: Duration,
    max_age: Duration,
    /// Required by `/setup` when the server listens beyond loopback.
    setup_token: Option<Arc<str>>,
    /// Once true, stays true: users are never all deleted while serving.
    has_users: AtomicBool,
}

impl Auth {
    /// Settles the public origins for a server listening on `addr`; sockets are told to close
    /// when `shutdown` is cancelled.
    pub fn new(
        config: &Config,
        addr: SocketAddr,
        store: Store,
        stylesheet: String,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let port = addr.port();
        let loopback = [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        let origins: Vec<String> = match &config.public_url {
            Some(url) => vec![url.clone()],
            None if addr.ip().is_loopback() => loopback
                .iter()
                .map(|host| format!("http://{host}"))
                .collect(),
            None => vec![format!("http://{addr}")],
        };
        let mut hosts: Vec<String> = origins
            .iter()
            .filter_map(|origin| origin.split_once("://").map(|(_, host)| host.to_owned()))
            .collect();
        hosts.extend(loopback);
        // Anyone who can reach the port before the first admin exists could claim it: on
        // loopback that is only this machine, but not so beyond it or behind a proxy.
        let reachable = !addr.ip().is_loopback() || config.public_url.is_some();
        let setup_token = reachable.then(|| Arc::from(new_secret()));
        Self(Arc::new(AuthState {
            store,
            passwords: Passwords::default(),
            accounts: Throttle::new(5, Duration::from_secs(15 * 60)),
            addresses: Throttle::new(30, Duration::from_secs(15 * 60)),
            live: LiveCredentials::new(shutdown),
            publishes: Allowances::new(config.publish_rate, config.publish_burst),
            publish_limit: (config.publish_rate, config.publish_burst),
            upgrades: Throttle::new(60, Duration::from_secs(60)),
            secure: config
                .public_url
                .as_ref()
                .is_some_and(|url| url.starts_with("https://")),
            origins,
            hosts,
            stylesheet,
            anonymous: config.anonymous.map(|role| Identity {
                name: None,
                role,
                rooms: config.anonymous_rooms.clone(),
                scopes: None,
            }),
            idle: config.session_idle,
            max_age: config.session_max,
            setup_token,
            has_users: AtomicBool::new(false),
        }))
    }

    /// Starts closing sockets whose session or token stopped being valid; tells the log how to
    /// reach `/setup` when nobody can log in yet.
    pub async fn start(&self, until: tokio_util::sync::CancellationToken) {
        self.live
            .spawn_watch(self.store.clone(), self.idle, REVOCATION_CHECK, until);
        if let (Some(token), Ok(false)) = (&self.setup_token, self.store.has_users().await) {
            tracing::warn!(
                "no users yet: open /setup and give this one-time setup token to create the \
                 first admin: {token}"
            );
        }
    }

    /// The one-time token `/setup` asks for, when the server listens beyond loopback.
    pub fn setup_token(&self) -> Option<&str> {
        self.setup_token.as_deref()
    }

    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// Takes one publish (or ingest request) from `credential`'s allowance.
    pub fn take_publish(&self, credential: &Credential) -> Result<()> {
        if self.publishes.take(credential) {
            Ok(())
        } else {
            let (rate, burst) = self.publish_limit;
            Err(Error::Limited(format!(
                "more than {rate} publishes per second (bursts of {burst}) from this session or \
                 token; slow down"
            )))
        }
    }

    /// Whether a browser's `Origin` is one of ours (a request without one is not a browser's
    /// cross-site request).
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .is_none_or(|origin| self.origins.iter().any(|ours| origin == ours.as_str()))
    }

    async fn has_users(&self) -> Result<bool> {
        if self.has_users.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let any = self.store.has_users().await?;
        self.has_users.store(any, Ordering::Relaxed);
        Ok(any)
    }

    /// Who sent `request`, if anyone: a bearer token, else (for sockets, which cannot set
    /// headers) a `?token=`, else the session cookie, else anonymous access where enabled.
    async fn identify(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        peer: IpAddr,
    ) -> Result<Option<(Identity, Credential)>> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let in_query = query.and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        });
        if let Some(token) = bearer.or(in_query) {
            let Some(grant) = self.store.token_grant(&digest(token)).await? else {
                return Ok(None);
            };
            let identity = identity(grant.account, Some(grant.scopes));
            return Ok(Some((identity, Credential::Token(grant.id))));
        }
        if let Some(session) = cookie(headers, SESSION_COOKIE) {
            let hash = digest(session);
            if let Some(account) = self
                .store
                .session_account(&hash, self.idle.as_secs_f64())
                .await?
            {
                return Ok(Some((identity(account, None), Credential::Session(hash))));
            }
        }
        Ok(self
            .anonymous
            .clone()
            .map(|identity| (identity, Credential::Anonymous(peer))))
    }

    /// The `Set-Cookie` value starting a session with `id`.
    fn session_cookie(&self, id: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}{secure}",
            self.max_age.as_secs()
        )
    }

    fn cleared_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{secure}")
    }
}

fn identity(account: Account, scopes: Option<Vec<app::auth::Scope>>) -> Identity {
    Identity {
        name: Some(account.name),
        role: account.role,
        rooms: account.rooms,
        scopes,
    }
}

/// The value of cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Largest sign-in or setup form: a name, a password and a little more.
const MAX_FORM_BYTES: usize = 8 * 1024;
/// Most scopes one token may carry.
const MAX_SCOPES: usize = 16;

/// The sign-in pages: open to everyone, they make the sessions the rest needs.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(forms::login_page).post(forms::login))
        .route("/setup", get(forms::setup_page).post(forms::setup))
        .route("/logout", post(forms::logout))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
}

/// Paths anyone may fetch: static assets and the sign-in pages.
fn is_open(path: &str) -> bool {
    matches!(path, "/favicon.svg" | "/login" | "/setup" | "/logout") || path.starts_with("/pkg/")
}

/// Pages are what a browser navigates to; the API, sockets and the metrics scrape answer
/// without sending anyone to sign in.
fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/") || path == "/ws" || path == "/metrics")
}

/// The middleware every request passes; see the module's documentation.
pub async fn gate(
    State(auth): State<Auth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    // Probes answer whoever asks, by whatever name: they use addresses, not names.
    if crate::health::is_probe(&path) {
        return next.run(request).await;
    }
    let host_known = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| {
            auth.hosts
                .iter()
                .any(|ours| host.eq_ignore_ascii_case(ours))
        });
    if !host_known {
        // A page on another site that made its own name resolve here (DNS rebinding) must not
        // reach the API as if it were this site.
        return Error::Forbidden("this server does not answer to that Host".into()).into_response();
    }
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if is_open(&path) {
        // Signing in, setting up and signing out from another site's page is refused too: a
        // page elsewhere must not sign the browser in as someone else, nor claim the setup.
        if changes && cross_site(&auth, request.headers()) {
            return Error::Forbidden("a sign-in from another site is refused".into())
                .into_response();
        }
        return next.run(request).await;
    }
    match auth.has_users().await {
        Ok(true) => {}
        Ok(false) if is_page(&path) => return Redirect::to("/setup").into_response(),
        Ok(false) => return Error::Unauthenticated.into_response(),
        Err(e) => return e.into_response(),
    }
    let upgrade = path == "/ws";
    let address = peer.ip().to_string();
    if upgrade && auth.upgrades.is_blocked(&address) {
        return Error::Limited("too many sockets refused from this address; wait a minute".into())
            .into_response();
    }
    let query = upgrade.then(|| request.uri().query()).flatten();
    let found = match auth.identify(request.headers(), query, peer.ip()).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let Some((identity, credential)) = found else {
        if upgrade {
            auth.upgrades.fail(&address);
        }
        return if is_page(&path) && request.method() == Method::GET {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            Redirect::to(&format!("/login?next={}", url_encoded(&target))).into_response()
        } else {
            Error::Unauthenticated.into_response()
        };
    };
    if changes
        && matches!(credential, Credential::Session(_))
        && cross_site(&auth, request.headers())
    {
        return Error::Forbidden("a change from another site is refused".into()).into_response();
    }
    request.extensions_mut().insert(identity);
    request.extensions_mut().insert(credential);
    next.run(request).await
}

/// Whether a browser says the request comes from another site: by `Sec-Fetch-Site` where it
/// sends one, else by `Origin`.
fn cross_site(auth: &Auth, headers: &HeaderMap) -> bool {
    match headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
    {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => !auth.origin_allowed(headers),
    }
}

/// A user created from the command line or the setup page: checked, hashed, stored.
pub async fn create_user(
    store: &Store,
    passwords: &Passwords,
    name: &str,
    password: String,
    role: Role,
    rooms: &[Pattern],
    only_if_first: bool,
) -> Result<Option<i32>> {
    check_user_name(name)?;
    if password.chars().count() < 8 {
        return Err(Error::bad_request("a password has at least 8 characters"));
    }
    let hash = passwords.hash(password).await?;
    store
        .create_user(name, &hash, role, rooms, only_if_first)
        .await
}

pub(crate) fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "a user name is 1–64 letters, digits, '.', '_', '-' or '@'",
        ))
    }
}

/// Creates an API token for `user` and returns it: the only time it is ever seen.
pub async fn create_token(
    store: &Store,
    user: &str,
    name: &str,
    scopes: &[app::auth::Scope],
    expires: Option<Duration>,
) -> Result<String> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(Error::bad_request("a token's name is 1–64 characters"));
    }
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(Error::bad_request(format!(
            "a token has 1–{MAX_SCOPES} scopes"
        )));
    }
    let account = store
        .account(user)
        .await?
        .ok_or_else(|| Error::bad_request(format!("no user named {user}")))?;
    let expires_at = expires
        .map(|d| chrono::Duration::from_std(d).map(|d| chrono::Utc::now() + d))
        .transpose()
        .map_err(|_| Error::bad_request("the expiry is too far away"))?;
    let token = new_token();
    store
        .create_token(&digest(&token), account.id, name, scopes, expires_at)
        .await?;
    Ok(token)
}
