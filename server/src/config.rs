use std::{net::SocketAddr, path::PathBuf, time::Duration};

use app::auth::{Pattern, Role, Scope};
use clap::{Parser, Subcommand};

/// Watchroom: a live monitoring dashboard.
///
/// Every value is checked when it is read: a start with a value the server cannot run with
/// (a zero heartbeat, a negative rate) fails at once, naming the flag.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "WATCHROOM_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Redis shared by several nodes on one database (`redis://host:6379`): each node's events
    /// reach the others' sockets through it. Needs `DATABASE_URL`.
    #[arg(long, env = "WATCHROOM_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Postgres to use. When unset, a private cluster is run under `data_dir`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where the private Postgres cluster lives when no `database_url` is given; a relative
    /// path is taken from the directory the server starts in.
    #[arg(long, env = "WATCHROOM_DATA_DIR", default_value = ".watchroom", value_parser = absolute_path)]
    pub data_dir: PathBuf,

    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,sqlx=warn")]
    pub log: String,

    /// Time between heartbeats on each socket (`15s`, `500ms`; a bare number is seconds); a
    /// peer silent for two is dropped.
    #[arg(long, env = "WATCHROOM_HEARTBEAT", default_value = "15s", value_parser = positive_duration)]
    pub heartbeat: Duration,

    /// Longest a write to a socket may wait for the peer to take it; a peer that stops reading
    /// (a zero TCP window) is dropped after it, rather than pinning its task.
    #[arg(long, env = "WATCHROOM_WRITE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub write_timeout: Duration,

    /// Connections (HTTP and WebSocket) open at once; one more is closed as it arrives. Keep the
    /// process's file descriptor limit above it.
    #[arg(long, env = "WATCHROOM_MAX_CONNECTIONS", default_value_t = 20_000, value_parser = at_least_one)]
    pub max_connections: usize,

    /// Connections open at once from one address (an office behind one NAT counts as one).
    /// Behind a reverse proxy every connection comes from the proxy: raise it to
    /// `max_connections` there, and cap per address in the proxy.
    #[arg(long, env = "WATCHROOM_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1_000, value_parser = at_least_one)]
    pub max_connections_per_address: usize,

    /// Bytes of events and samples waiting for the writer (about: parsed and as text); past
    /// it, publishers and ingest requests wait for the writer to catch up.
    #[arg(long, env = "WATCHROOM_INGEST_QUEUE_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = at_least_one)]
    pub ingest_queue_bytes: usize,

    /// Longest an HTTP request may take to be answered (its body read, its handler run); past it
    /// the answer is 408. A response already streaming (an export) is not cut.
    #[arg(long, env = "WATCHROOM_REQUEST_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub request_timeout: Duration,

    /// Longest a client may take to send a request's headers, counted from the end of its last
    /// request on a kept-alive connection; past it the connection is closed (a peer trickling
    /// its headers a byte at a time holds nothing for long). So it is also how long an idle
    /// kept-alive connection stays open.
    #[arg(long, env = "WATCHROOM_HEADER_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub header_timeout: Duration,

    /// Longest one database read for a page or the API may run (`statement_timeout`); past it
    /// the request is refused as unavailable rather than holding a connection others wait for.
    #[arg(long, env = "WATCHROOM_QUERY_TIMEOUT", default_value = "15s", value_parser = positive_duration)]
    pub query_timeout: Duration,

    /// Longest the writer waits for a room's row lock (`lock_timeout`) that another database
    /// session holds; past it that room's publishes are refused and the other rooms go on.
    #[arg(long, env = "WATCHROOM_LOCK_TIMEOUT", default_value = "2s", value_parser = positive_duration)]
    pub lock_timeout: Duration,

    /// Longest the writer waits on the database for one batch of events (also each of its
    /// statements' `statement_timeout`). A database that falls silent mid-batch (a network path
    /// gone dead, which TCP may not notice for hours) is given up on after it: the writer asks
    /// the database, once it answers again, whether the batch committed, acknowledges or refuses
    /// it accordingly, and ends the silent session so the rooms it locked are free.
    #[arg(long, env = "WATCHROOM_COMMIT_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub commit_timeout: Duration,

    /// Largest WebSocket frame a client may send, in bytes; larger closes the socket with 1009.
    #[arg(long, env = "WATCHROOM_MAX_FRAME_BYTES", default_value_t = 64 * 1024, value_parser = at_least_one)]
    pub max_frame_bytes: usize,

    /// Rooms one connection may watch at once.
    #[arg(long, env = "WATCHROOM_MAX_ROOMS_PER_CONNECTION", default_value_t = 64, value_parser = at_least_one)]
    pub max_rooms_per_connection: usize,

    /// Rooms with watchers on this server at once: each holds a buffer of recent events.
    #[arg(long, env = "WATCHROOM_MAX_ROOMS", default_value_t = 100_000, value_parser = at_least_one)]
    pub max_rooms: usize,

    /// Subscribes per second one connection may make (each reads the room's head and may replay
    /// its log), after a burst of twice the rooms it may watch: a page subscribing all its rooms
    /// at once, and again on a reload.
    #[arg(long, env = "WATCHROOM_SUBSCRIBE_RATE", default_value_t = 10.0, value_parser = positive_number)]
    pub subscribe_rate: f64,

    /// Sustained publishes per second one connection may make.
    #[arg(long, env = "WATCHROOM_PUBLISH_RATE", default_value_t = 200.0, value_parser = positive_number)]
    pub publish_rate: f64,

    /// Publishes one connection may make in a burst above the sustained rate (at least 1).
    #[arg(long, env = "WATCHROOM_PUBLISH_BURST", default_value_t = 400.0, value_parser = burst)]
    pub publish_burst: f64,

    /// How long a shutdown waits for sockets to drain before exiting anyway (`10s`; `0` exits
    /// at once).
    #[arg(long, env = "WATCHROOM_SHUTDOWN_GRACE", default_value = "10s", value_parser = app::duration::parse)]
    pub shutdown_grace: Duration,

    /// Distinct series (name and labels) one metrics source may have; samples that would add
    /// more are refused, so a label carrying e.g. a request id cannot grow storage without bound.
    #[arg(
        long,
        env = "WATCHROOM_MAX_SERIES_PER_SOURCE",
        default_value_t = 10_000,
        value_parser = at_least_one
    )]
    pub max_series_per_source: usize,

    /// Distinct series the store may hold in all, whatever their sources: many sources each
    /// within their limit must not grow it (and each node's cache of series) without bound.
    #[arg(long, env = "WATCHROOM_MAX_SERIES", default_value_t = 1_000_000, value_parser = at_least_one)]
    pub max_series: usize,

    /// Collect this host's metrics (and the server's own) every second as source `host:<name>`.
    #[arg(long, env = "WATCHROOM_HOST_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub host_metrics: bool,

    /// Directory holding the built site (`pkg/` with the wasm, js and css).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// The address operators reach the dashboard at (`https://watch.example.com`). Browser
    /// origins and Host headers are checked against it, and session cookies are `Secure` when it
    /// is https. Without it, the listen address (and `localhost` on loopback) is the public one.
    #[arg(long, env = "WATCHROOM_PUBLIC_URL", value_parser = origin)]
    pub public_url: Option<String>,

    /// The SMTP relay email channels send through: `smtp://host:25` (plain),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host:465`.
    #[arg(long, env = "WATCHROOM_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The sender of alert emails.
    #[arg(long, env = "WATCHROOM_SMTP_FROM", default_value = "Watchroom <watchroom@localhost>", value_parser = mailbox)]
    pub smtp_from: String,

    /// Let visitors who are not logged in watch, read-only (`viewer`; off by default): for wall
    /// screens.
    #[arg(long, env = "WATCHROOM_ANONYMOUS", value_parser = anonymous_role)]
    pub anonymous: Option<Role>,

    /// The rooms anonymous visitors may watch, as comma-separated patterns.
    #[arg(
        long,
        env = "WATCHROOM_ANONYMOUS_ROOMS",
        default_value = "*",
        value_delimiter = ',',
        value_parser = |text: &str| Pattern::parse(text.trim())
    )]
    pub anonymous_rooms: Vec<Pattern>,

    /// A session unused this long ends.
    #[arg(long, env = "WATCHROOM_SESSION_IDLE", default_value = "7d", value_parser = positive_duration)]
    pub session_idle: Duration,

    /// A session ends this long after its login, used or not.
    #[arg(long, env = "WATCHROOM_SESSION_MAX", default_value = "30d", value_parser = positive_duration)]
    pub session_max: Duration,

    /// Sockets one user or token may hold open at once.
    #[arg(long, env = "WATCHROOM_MAX_SOCKETS_PER_IDENTITY", default_value_t = 100, value_parser = at_least_one)]
    pub max_sockets_per_identity: usize,

    /// How long notices are kept before retention removes them.
    #[arg(long, env = "WATCHROOM_RETAIN_NOTICES", default_value = "400d", value_parser = positive_duration)]
    pub retain_notices: Duration,

    /// How long alert events (transitions, acknowledgements, silences) are kept.
    #[arg(long, env = "WATCHROOM_RETAIN_ALERTS", default_value = "400d", value_parser = positive_duration)]
    pub retain_alerts: Duration,

    /// How long metric events are kept; their samples live on in the metrics store.
    #[arg(long, env = "WATCHROOM_RETAIN_METRIC_EVENTS", default_value = "2d", value_parser = positive_duration)]
    pub retain_metric_events: Duration,

    /// How often retention looks for events past their time.
    #[arg(long, env = "WATCHROOM_RETENTION_EVERY", default_value = "1m", value_parser = positive_duration)]
    pub retention_every: Duration,

    /// How long raw samples are kept: as rows for a few hours, then packed into blocks.
    #[arg(long, env = "WATCHROOM_RETENTION_RAW", default_value = "15d", value_parser = positive_duration)]
    pub retention_raw: Duration,

    /// How long the one-minute rollups (min, max, sum, count per series) are kept.
    #[arg(long, env = "WATCHROOM_RETENTION_1M", default_value = "90d", value_parser = positive_duration)]
    pub retention_minutes: Duration,

    /// How long the one-hour rollups are kept: the longest range a chart can show.
    #[arg(long, env = "WATCHROOM_RETENTION_1H", default_value = "730d", value_parser = positive_duration)]
    pub retention_hours: Duration,

    /// Raw samples older than this are packed into one block per series and hour.
    #[arg(long, env = "WATCHROOM_COMPACT_AFTER", default_value = "3h", value_parser = positive_duration)]
    pub compact_after: Duration,

    /// How often samples are rolled up, and partitions made, packed and dropped.
    #[arg(long, env = "WATCHROOM_ROLLUP_EVERY", default_value = "10s", value_parser = positive_duration)]
    pub rollup_every: Duration,

    /// Most events one export (CSV or NDJSON) holds; an export that reaches it ends saying so.
    #[arg(long, env = "WATCHROOM_EXPORT_LIMIT", default_value_t = 1_000_000, value_parser = at_least_one)]
    pub export_limit: usize,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Administration from the command line, against the configured database; without one, the
/// server serves.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Writes the whole database (events, samples, accounts, dashboards, alerts) to `file`, in
    /// pg_dump's custom format; the server may go on running.
    Backup { file: PathBuf },
    /// Replaces the whole database with a backup's contents; stop the server first.
    Restore { file: PathBuf },
}

#[derive(Clone, Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a user; the password is read from standard input.
    Create {
        name: String,
        #[arg(long, value_parser = |text: &str| Role::parse(text))]
        role: Role,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The rooms the user may see, as comma-separated patterns.
        #[arg(long, default_value = "*", value_delimiter = ',', value_parser = |text: &str| Pattern::parse(text.trim()))]
        rooms: Vec<Pattern>,
    },
    /// Disables a user: no sign-in, and their sessions, tokens and open sockets stop working.
    Disable { name: String },
}

#[derive(Clone, Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates an API token and prints it, once, on standard output.
    Create {
        /// Whose token it is: it may never do more than this user.
        #[arg(long)]
        user: String,
        /// `read:<rooms>`, `publish:<rooms>`, `ingest:<sources>`, `metrics` or `admin`; repeat
        /// for more.
        #[arg(long = "scope", required = true, value_parser = |text: &str| Scope::parse(text))]
        scopes: Vec<Scope>,
        /// How long the token lasts (`90s`, `30d`); forever without.
        #[arg(long, value_parser = positive_duration)]
        expires: Option<Duration>,
        /// What the token is for, as lists of tokens show it.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

fn mailbox(text: &str) -> Result<String, String> {
    match text.parse::<lettre::message::Mailbox>() {
        Ok(_) => Ok(text.to_owned()),
        Err(e) => Err(format!("{text:?} is not an email address: {e}")),
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match app::duration::parse(text)? {
        Duration::ZERO => Err("must be longer than zero".into()),
        positive => Ok(positive),
    }
}

fn positive_number(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{text:?} is not a number greater than zero")),
    }
}

fn burst(text: &str) -> Result<f64, String> {
    match positive_number(text)? {
        n if n >= 1.0 => Ok(n),
        _ => Err("must be at least 1, or no publish could ever pass".into()),
    }
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}

/// An http(s) URL reduced to its origin, `scheme://host[:port]`, as browsers send it.
fn origin(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?} is not a URL such as https://watch.example.com"))?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@'])
    {
        return Err(format!(
            "{text:?} must be an http or https URL with a host and nothing after it"
        ));
    }
    Ok(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

fn anonymous_role(text: &str) -> Result<Role, String> {
    match Role::parse(text)? {
        Role::Viewer => Ok(Role::Viewer),
        other => Err(format!(
            "anonymous visitors may only watch: viewer, not {other}"
        )),
    }
}

/// Resolved once, at start: the cluster's tools run from elsewhere, and a log naming the full
/// path shows at once which cluster a start is using.
fn absolute_path(text: &str) -> Result<PathBuf, String> {
    std::path::absolute(text).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        Config::try_parse_from([&["server"], args].concat()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_start_a_server() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.heartbeat, Duration::from_secs(15));
        assert_eq!(config.write_timeout, Duration::from_secs(10));
        assert_eq!(config.subscribe_rate, 10.0);
        assert_eq!(config.max_connections, 20_000);
        assert_eq!(config.max_connections_per_address, 1_000);
        assert_eq!(config.ingest_queue_bytes, 256 << 20);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.max_rooms, 100_000);
        assert_eq!(config.query_timeout, Duration::from_secs(15));
        assert_eq!(config.header_timeout, Duration::from_secs(30));
        assert_eq!(config.lock_timeout, Duration::from_secs(2));
        assert_eq!(config.commit_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert!(config.data_dir.is_absolute());
        assert!(config.data_dir.ends_with(".watchroom"));
    }

    #[test]
    fn each_value_a_server_cannot_run_with_is_refused_naming_its_flag() {
        for (flag, value) in [
            ("--heartbeat", "0"),
            ("--heartbeat", "-5s"),
            ("--heartbeat", "soon"),
            ("--shutdown-grace", "-1"),
            ("--publish-rate", "0"),
            ("--publish-rate", "-3"),
            ("--publish-rate", "NaN"),
            ("--publish-burst", "0.5"),
            ("--max-frame-bytes", "0"),
            ("--max-rooms-per-connection", "0"),
            ("--max-series-per-source", "-1"),
            ("--public-url", "watch.example.com"),
            ("--public-url", "https://watch.example.com/path"),
            ("--anonymous", "editor"),
            ("--anonymous-rooms", "a b"),
            ("--session-idle", "0"),
            ("--max-sockets-per-identity", "0"),
        ] {
            // `--flag=value`: a value may begin with '-'.
            let error = parse(&[&format!("{flag}={value}")]).expect_err(&format!("{flag} {value}"));
            assert!(error.contains(flag), "{flag} {value}: {error}");
        }
        assert_eq!(
            parse(&["--shutdown-grace", "0"]).unwrap().shutdown_grace,
            Duration::ZERO
        );
    }

    #[test]
    fn a_relative_data_dir_is_made_absolute_from_the_start_directory() {
        let config = parse(&["--data-dir", "state/pg"]).unwrap();
        let expect = std::env::current_dir().unwrap().join("state/pg");
        assert_eq!(config.data_dir, expect);
    }
}
