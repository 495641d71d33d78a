//! `/settings`: the signed-in user's sessions (end any of them) and API tokens (make one, shown
//! once; revoke any).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    form::{PostForm, Posted},
    loaded, reactive,
};
use crate::{
    accounts::{SessionInfo, TokenInfo},
    error::AppError,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SettingsData {
    pub name: String,
    pub sessions: Vec<SessionInfo>,
    pub tokens: Vec<TokenInfo>,
}

/// The signed-in user, for the account calls: only their own sessions and tokens are theirs.
#[cfg(feature = "ssr")]
fn account_holder() -> Result<String, AppError> {
    let identity = crate::auth::identity()?;
    match (identity.may_manage_own_account(), identity.name) {
        (true, Some(name)) => Ok(name),
        _ => Err(AppError::Forbidden(
            "sign in to manage your sessions and tokens".into(),
        )),
    }
}

#[cfg(feature = "ssr")]
fn accounts() -> std::sync::Arc<dyn crate::accounts::AccountStore> {
    expect_context::<crate::accounts::SharedAccounts>().0
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn load_settings() -> Result<SettingsData, AppError> {
    crate::error::answer(async move {
        let name = account_holder()?;
        Ok(SettingsData {
            sessions: accounts().sessions(name.clone()).await?,
            tokens: accounts().tokens(name.clone()).await?,
            name,
        })
    })
    .await
}

#[server(output = crate::json::Json)]
pub async fn end_session(id: String) -> Result<(), AppError> {
    crate::error::answer(async move { accounts().end_session(account_holder()?, id).await }).await
}

/// Makes a token from the form's fields: `scopes` separated by spaces or commas, `expires` a
/// duration such as `30d` or empty for none. Answers with the token, shown this once.
#[server(output = crate::json::Json)]
pub async fn create_token(
    name: String,
    scopes: String,
    expires: String,
) -> Result<String, AppError> {
    crate::error::answer(async move {
        let holder = account_holder()?;
        let name = name.trim().to_owned();
        let scopes = scopes
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(crate::auth::Scope::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(AppError::Invalid)?;
        let expires = Some(expires.trim().to_owned()).filter(|e| !e.is_empty());
        accounts().create_token(holder, name, scopes, expires).await
    })
    .await
}

#[server(output = crate::json::Json)]
pub async fn revoke_token(id: i32) -> Result<(), AppError> {
    crate::error::answer(async move { accounts().revoke_token(account_holder()?, id).await }).await
}

fn when(time: chrono::DateTime<chrono::Utc>) -> String {
    format!("{} UTC", crate::format::minute(&time))
}

#[component]
pub fn Settings() -> impl IntoView {
    let end = Posted::<EndSession>::new();
    let create = Posted::<CreateToken>::new();
    let revoke = Posted::<RevokeToken>::new();
    let data = crate::json::data(
        move || {
            (
                end.version().get(),
                create.version().get(),
                revoke.version().get(),
            )
        },
        |_| load_settings(),
    );
    let body = move |data: SettingsData| view! { <SettingsBody data end create revoke/> };
    loaded(data, body)
}

#[component]
fn SettingsBody(
    data: SettingsData,
    end: Posted<EndSession>,
    create: Posted<CreateToken>,
    revoke: Posted<RevokeToken>,
) -> impl IntoView {
    let made = reactive(move || {
        match create.value().get() {
        Some(Ok(token)) => Some(view! {
            <p class="new-token" role="status">
                "Your new token, shown only this once: " <code data-testid="new-token">{token}</code>
            </p>
        }
        .into_any()),
        Some(Err(e)) => Some(view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any()),
        None => None,
    }
    });
    view! {
        <h1>"Settings for " {data.name}</h1>
        <section class="panel" aria-labelledby="sessions-title">
            <h2 id="sessions-title">"Signed-in browsers"</h2>
            <ul class="sessions" data-testid="sessions">
                {data
                    .sessions
                    .into_iter()
                    .map(|session| {
                        let label = format!("End session from {}", session.address);
                        view! {
                            <li>
                                <span>{session.agent} " · " {session.address}</span>
                                <span class="muted">
                                    "since " {when(session.created)} ", last seen " {when(session.seen)}
                                </span>
                                <PostForm posted=end>
                                    <input type="hidden" name="id" value=session.id/>
                                    <button type="submit" aria-label=label>"End"</button>
                                </PostForm>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </section>
        <section class="panel" aria-labelledby="tokens-title">
            <h2 id="tokens-title">"API tokens"</h2>
            <ul class="tokens" data-testid="tokens">
                {data
                    .tokens
                    .into_iter()
                    .map(|token| {
                        let scopes = token
                            .scopes
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" ");
                        let state = match (token.revoked, token.expires) {
                            (Some(at), _) => format!("revoked {}", when(at)),
                            (None, Some(at)) => format!("expires {}", when(at)),
                            (None, None) => "does not expire".into(),
                        };
                        let used = token.used.map_or("never used".into(), |at| format!("used {}", when(at)));
                        let label = format!("Revoke token {}", token.name);
                        let live = token.revoked.is_none();
                        view! {
                            <li>
                                <strong>{token.name}</strong>
                                <code>{scopes}</code>
                                <span class="muted">{state} ", " {used}</span>
                                {live.then(|| view! {
                                    <PostForm posted=revoke>
                                        <input type="hidden" name="id" value=token.id/>
                                        <button type="submit" aria-label=label>"Revoke"</button>
                                    </PostForm>
                                })}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            {made}
            <PostForm posted=create attr:class="token-form">
                <label>"Name " <input name="name" required placeholder="deploy job"/></label>
                <label>
                    "Scopes "
                    <input name="scopes" required placeholder="publish:deploys ingest:web-*"/>
                </label>
                <label>"Expires after " <input name="expires" placeholder="90d (empty: never)"/></label>
                <button type="submit">"Create token"</button>
            </PostForm>
        </section>
    }
}
