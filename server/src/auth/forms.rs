//! The sign-in pages: plain server-rendered forms that work without the page's script, posting
//! to handlers that answer with a session cookie and a redirect.

use std::net::SocketAddr;

use app::auth::{Pattern, Role};
use axum::{
    Form,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{Auth, SESSION_COOKIE, cookie, create_user, digest, new_secret};
use crate::{error::Error, escape::html_escaped};

/// One message for every failed login: it tells nobody which names exist.
const LOGIN_FAILED: &str = "Wrong name or password.";

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a path on this site only, never another site. Browsers drop
/// tabs and newlines from addresses (`/\t/evil` becomes `//evil`), so anything but visible
/// ASCII is refused with the rest.
fn local_target(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.chars().all(|c| c.is_ascii_graphic() && c != '\\') =>
        {
            path
        }
        _ => "/",
    }
}

pub async fn login_page(State(auth): State<Auth>, Query(next): Query<Next>) -> Response {
    if let Ok(false) = auth.has_users().await {
        return Redirect::to("/setup").into_response();
    }
    login_form(&auth, StatusCode::OK, next.next.as_deref(), None)
}

fn login_form(
    auth: &Auth,
    status: StatusCode,
    next: Option<&str>,
    error: Option<&str>,
) -> Response {
    let next = html_escaped(local_target(next));
    let body = format!(
        r#"<h1>Sign in</h1>{}
<form method="post" action="/login" class="auth-form">
  <label>Name <input name="name" autocomplete="username" required autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <input type="hidden" name="next" value="{next}">
  <button type="submit">Sign in</button>
</form>"#,
        error_paragraph(error)
    );
    (status, page(auth, "Sign in", &body)).into_response()
}

#[derive(Deserialize)]
pub struct Login {
    name: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(auth): State<Auth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Response {
    let address = peer.ip().to_string();
    // No account has a name past the rules: it is a failed attempt, and keys no throttle entry.
    if super::check_user_name(&login.name).is_err() {
        auth.addresses.fail(&address);
        return login_form(
            &auth,
            StatusCode::UNAUTHORIZED,
            login.next.as_deref(),
            Some(LOGIN_FAILED),
        );
    }
    let account_key = format!("account:{}", login.name);
    // The account's attempt is counted before the password is checked: guesses sent all at
    // once get no more tries than guesses sent one by one.
    if auth.addresses.is_blocked(&address) || !auth.accounts.reserve(&account_key) {
        let message = "Too many failed attempts; wait a few minutes and try again.";
        return login_form(
            &auth,
            StatusCode::TOO_MANY_REQUESTS,
            login.next.as_deref(),
            Some(message),
        );
    }
    let found = match auth.store.login_account(&login.name).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let (account, hash) = match found {
        Some((account, hash)) => (Some(account), Some(hash)),
        None => (None, None),
    };
    let verified = match auth.passwords.verify(login.password, hash).await {
        Ok(verified) => verified,
        Err(e) => return e.into_response(),
    };
    let Some(account) = account.filter(|_| verified) else {
        auth.addresses.fail(&address);
        return login_form(
            &auth,
            StatusCode::UNAUTHORIZED,
            login.next.as_deref(),
            Some(LOGIN_FAILED),
        );
    };
    auth.accounts.forget(&account_key);
    match start_session(&auth, account.id, &address, &headers).await {
        Ok(cookie) => signed_in(cookie, local_target(login.next.as_deref())),
        Err(e) => e.into_response(),
    }
}

/// Stores a new session for `user` and returns the cookie that carries it.
async fn start_session(
    auth: &Auth,
    user: i32,
    address: &str,
    headers: &HeaderMap,
) -> Result<String, Error> {
    let id = new_secret();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    let agent: String = agent.chars().take(200).collect();
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(auth.max_age).unwrap_or(chrono::Duration::days(30));
    auth.store
        .create_session(&digest(&id), user, expires_at, address, &agent)
        .await?;
    Ok(auth.session_cookie(&id))
}

fn signed_in(cookie: String, target: &str) -> Response {
    ([(header::SET_COOKIE, cookie)], Redirect::to(target)).into_response()
}

pub async fn logout(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = auth.store.delete_session(&digest(session)).await
    {
        return e.into_response();
    }
    (
        [(header::SET_COOKIE, auth.cleared_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

pub async fn setup_page(State(auth): State<Auth>) -> Response {
    match auth.has_users().await {
        Ok(true) => Redirect::to("/login").into_response(),
        Ok(false) => setup_form(&auth, StatusCode::OK, None),
        Err(e) => e.into_response(),
    }
}

fn setup_form(auth: &Auth, status: StatusCode, error: Option<&str>) -> Response {
    let token = match auth.setup_token {
        Some(_) => {
            r#"<label>Setup token (in the server's log) <input name="setup_token" autocomplete="off" required></label>"#
        }
        None => "",
    };
    let body = format!(
        r#"<h1>Create the first admin</h1>
<p>Nobody can sign in yet. The account made here may add everyone else.</p>{}
<form method="post" action="/setup" class="auth-form">
  <label>Name <input name="name" autocomplete="username" required autofocus></label>
  <label>Password (at least 8 characters) <input name="password" type="password" autocomplete="new-password" minlength="8" required></label>
  {token}
  <button type="submit">Create and sign in</button>
</form>"#,
        error_paragraph(error)
    );
    (status, page(auth, "Set up", &body)).into_response()
}

#[derive(Deserialize)]
pub struct Setup {
    name: String,
    password: String,
    setup_token: Option<String>,
}

pub async fn setup(
    State(auth): State<Auth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(setup): Form<Setup>,
) -> Response {
    let address = peer.ip().to_string();
    if auth.addresses.is_blocked(&address) {
        return setup_form(
            &auth,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many attempts."),
        );
    }
    if let Some(expected) = &auth.setup_token
        && setup.setup_token.as_deref().map(str::trim) != Some(&**expected)
    {
        auth.addresses.fail(&address);
        return setup_form(
            &auth,
            StatusCode::FORBIDDEN,
            Some("That is not the setup token the server printed at start."),
        );
    }
    let created = create_user(
        &auth.store,
        &auth.passwords,
        setup.name.trim(),
        setup.password,
        Role::Admin,
        &[Pattern::any()],
        true,
    )
    .await;
    match created {
        Ok(Some(id)) => match start_session(&auth, id, &address, &headers).await {
            Ok(cookie) => signed_in(cookie, "/"),
            Err(e) => e.into_response(),
        },
        // Someone else set up first: this form no longer applies.
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) if !e.is_servers() => {
            setup_form(&auth, StatusCode::BAD_REQUEST, Some(&e.public_message()))
        }
        Err(e) => e.into_response(),
    }
}

fn error_paragraph(error: Option<&str>) -> String {
    error.map_or_else(String::new, |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, html_escaped(e))
    })
}

/// A whole page around `body`, in the dashboard's style.
fn page(auth: &Auth, title: &str, body: &str) -> Html<String> {
    let stylesheet = &auth.stylesheet;
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en" data-theme="dark">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>{title} · Watchroom</title>
<link rel="icon" type="image/svg+xml" href="/favicon.svg">
{stylesheet}
</head>
<body>
<header class="topbar"><a class="brand" href="/">Watchroom</a></header>
<main><section class="panel auth">
{body}
</section></main>
</body>
</html>"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_paths_of_this_site_are_followed() {
        assert_eq!(local_target(Some("/d/host?range=1h")), "/d/host?range=1h");
        for elsewhere in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "d/host",
        ] {
            assert_eq!(local_target(Some(elsewhere)), "/", "{elsewhere}");
        }
        assert_eq!(local_target(None), "/");
    }
}
