//! Administration from the command line (`server user create`, `server token create`,
//! `server backup`), run against the configured database, or the private cluster when there is
//! none.

use std::io::{BufRead, Write};

use crate::{
    Config,
    auth::{self, Passwords},
    config::{Command, TokenCommand, UserCommand},
    error::RunError,
    open_store,
};

/// Carries out `command`, reading a password from `input`; what it makes for the caller (a
/// token) goes to `output`, news of what it did to standard error.
pub async fn run(
    config: &Config,
    command: &Command,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), RunError> {
    let (store, embedded) = open_store(config).await?;
    let url = match (&config.database_url, &embedded) {
        (Some(url), _) => url.clone(),
        (None, Some(pg)) => pg.url(),
        (None, None) => unreachable!("without a database URL the private cluster runs"),
    };
    let refused = |e: crate::Error| RunError::Refused(e.to_string());
    let done = match command {
        Command::User(UserCommand::Create {
            name,
            role,
            password_stdin: _,
            rooms,
        }) => {
            let mut password = String::new();
            input.read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            auth::create_user(
                &store,
                &Passwords::default(),
                name,
                password,
                *role,
                rooms,
                false,
            )
            .await
            .map_err(refused)
            .map(|_| eprintln!("created {role} {name}"))
        }
        Command::User(UserCommand::Disable { name }) => match store.account(name).await {
            Ok(Some(account)) => store
                .disable_user(account.id)
                .await
                .map_err(refused)
                .map(|()| eprintln!("disabled {name}")),
            Ok(None) => Err(RunError::Refused(format!("no user named {name}"))),
            Err(e) => Err(refused(e)),
        },
        Command::Token(TokenCommand::Create {
            user,
            scopes,
            expires,
            name,
        }) => match auth::create_token(&store, user, name, scopes, *expires).await {
            Ok(token) => writeln!(output, "{token}").map_err(RunError::from),
            Err(e) => Err(refused(e)),
        },
        Command::Backup { file } => {
            let file = path(file)?;
            pg_tool(
                "pg_dump",
                &["--format=custom", "--file", file, "--dbname", &url],
            )
            .map(|()| eprintln!("backed up to {file}"))
        }
        // Atomically: a restore that fails leaves the database as it was.
        Command::Restore { file } => pg_tool(
            "pg_restore",
            &[
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--dbname",
                &url,
                path(file)?,
            ],
        )
        .map(|()| eprintln!("restored from {}", file.display())),
    };
    if let Some(pg) = embedded.filter(|pg| pg.started_here()) {
        pg.stop().await?;
    }
    done
}

fn path(file: &std::path::Path) -> Result<&str, RunError> {
    file.to_str()
        .ok_or_else(|| RunError::Refused(format!("{} is not UTF-8", file.display())))
}

/// Runs one of Postgres' client programs, of the installed version the private cluster uses.
fn pg_tool(tool: &str, args: &[&str]) -> Result<(), RunError> {
    let program = crate::embedded_postgres::tool(tool)?;
    let output = std::process::Command::new(&program).args(args).output()?;
    if output.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&output.stderr);
        Err(RunError::Refused(format!("{tool} failed: {}", why.trim())))
    }
}
