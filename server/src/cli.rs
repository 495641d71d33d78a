//! Administration from the command line (`server user create`, `server token create`), run
//! against the configured database, or the private cluster when there is none.

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
    };
    if let Some(pg) = embedded.filter(|pg| pg.started_here()) {
        pg.stop().await?;
    }
    done
}
