//! A private Postgres cluster run from the installed server binaries, for a start without
//! `DATABASE_URL`. It listens on a Unix socket inside its own directory only, so it never competes
//! for a TCP port, and it survives a crash of ours: the next start adopts it.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    error::RunError,
    escape::{shell_quoted, url_encoded},
};

type Result<T, E = RunError> = std::result::Result<T, E>;

const SUPERUSER: &str = "watchroom";
/// Postgres refuses to run as root; as root we run it as this system user.
const SERVICE_USER: &str = "postgres";
/// The socket is `<dir>/.s.PGSQL.<port>`; alone in its directory, any fixed port will do.
const PORT: u16 = 5432;

#[derive(Clone)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    as_service_user: bool,
    /// Whether this process started the cluster (rather than adopting a running one).
    started: bool,
}

impl EmbeddedPostgres {
    /// Initialises the cluster under `dir` if needed and starts it (or adopts a running one).
    pub async fn start(dir: &Path) -> Result<Self> {
        let dir = std::path::absolute(dir)?;
        let pg = Self {
            bin_dir: find_bin_dir()?,
            data: dir.join("pg"),
            socket_dir: dir.join("run"),
            as_service_user: std::fs::metadata("/proc/self")?.uid() == 0,
            started: false,
        };
        let starting = pg.clone();
        let started = tokio::task::spawn_blocking(move || starting.start_blocking())
            .await
            .map_err(|e| RunError::EmbeddedPostgres(e.to_string()))??;
        Ok(Self { started, ..pg })
    }

    /// Whether this process started the cluster; an adopted one is another's to stop.
    pub fn started_here(&self) -> bool {
        self.started
    }

    /// The cluster's address, as a `DATABASE_URL` would give it.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{PORT}/postgres?host={}",
            url_encoded(&self.socket_dir.to_string_lossy())
        )
    }

    /// Stops the cluster, waiting for it to shut down cleanly.
    pub async fn stop(self) -> Result<()> {
        tokio::task::spawn_blocking(move || {
            self.run(
                "pg_ctl",
                &["-D", path_str(&self.data)?, "-m", "fast", "-w", "stop"],
            )
        })
        .await
        .map_err(|e| RunError::EmbeddedPostgres(e.to_string()))?
    }

    /// Returns whether it started the cluster (false: adopted a running one).
    fn start_blocking(&self) -> Result<bool> {
        for dir in [&self.data, &self.socket_dir] {
            std::fs::create_dir_all(dir)?;
        }
        // Only the cluster's owner reaches its socket: no other local account can connect.
        std::fs::set_permissions(&self.socket_dir, std::fs::Permissions::from_mode(0o700))?;
        if self.as_service_user {
            let owner = format!("{SERVICE_USER}:");
            let chown = [
                "-R",
                &owner,
                path_str(&self.data)?,
                path_str(&self.socket_dir)?,
            ];
            check(Command::new("chown").args(chown), "chown")?;
            // Every parent must be searchable by that user too (a home directory often is not).
            let reachable = Command::new("runuser")
                .args([
                    "-u",
                    SERVICE_USER,
                    "--",
                    "test",
                    "-w",
                    path_str(&self.data)?,
                ])
                .status()?;
            if !reachable.success() {
                return Err(RunError::EmbeddedPostgres(format!(
                    "the {SERVICE_USER} user cannot reach {}; set WATCHROOM_DATA_DIR to a directory it can",
                    self.data.display()
                )));
            }
        }
        let data = path_str(&self.data)?;
        if !self.data.join("PG_VERSION").exists() {
            tracing::info!(dir = %self.data.display(), "initialising private postgres cluster");
            self.run(
                "initdb",
                &["-D", data, "-A", "trust", "-U", SUPERUSER, "-E", "UTF8"],
            )?;
        }
        if self.run("pg_ctl", &["-D", data, "status"]).is_ok() {
            tracing::info!(dir = %self.data.display(), "adopting running private postgres cluster");
            return Ok(false);
        }
        // pg_ctl hands these to a shell.
        let options = format!(
            "-k {} -h '' -p {PORT} -c unix_socket_permissions=0700",
            shell_quoted(path_str(&self.socket_dir)?)
        );
        let log = self.data.join("server.log");
        tracing::info!(dir = %self.data.display(), "starting private postgres cluster");
        // pg_ctl discards a postmaster.pid left by a crash when its process is gone.
        self.run(
            "pg_ctl",
            &[
                "-D",
                data,
                "-o",
                &options,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(true)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let program = self.bin_dir.join(tool);
        let mut command = if self.as_service_user {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVICE_USER, "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        check(command.args(args), tool)
    }
}

fn check(command: &mut Command, tool: &str) -> Result<()> {
    let output = command
        .current_dir("/")
        .output()
        .map_err(|e| RunError::EmbeddedPostgres(format!("could not run {tool}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(RunError::EmbeddedPostgres(format!(
            "{tool} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| RunError::EmbeddedPostgres(format!("path is not UTF-8: {}", path.display())))
}

/// The newest installed server's binaries: Debian keeps them out of PATH, under
/// /usr/lib/postgresql/<major>/bin; elsewhere `pg_ctl` on PATH is the server's own.
/// The path of Postgres' program `name` (`pg_dump`), from the installed server binaries.
pub fn tool(name: &str) -> Result<PathBuf> {
    Ok(find_bin_dir()?.join(name))
}

fn find_bin_dir() -> Result<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .ok_or_else(|| {
            RunError::EmbeddedPostgres(
                "no PostgreSQL server binaries (initdb, pg_ctl) found; install them or set DATABASE_URL".into(),
            )
        })
}
