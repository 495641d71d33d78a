//! Accounts and permissions, each rule allowed and refused, against real sockets and Postgres.

use app::{
    auth::{Pattern, Role},
    protocol::{ClientFrame, ErrorCode, EventKind, ServerFrame},
};
use reqwest::{StatusCode, header, redirect::Policy};
use serde_json::{Value, json};
use server::config::{Command, TokenCommand, UserCommand};
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, protocol::frame::coding::CloseCode,
};

use crate::helpers::{
    Client, EmptyDatabase, events_url, http_with, start, start_bare, start_with, text_of,
    unique_room,
};

const PASSWORD: &str = "correct horse battery";

/// A client as a browser without script is: no credentials of its own, redirects shown.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn url(running: &server::Running, path: &str) -> String {
    format!("http://{}{path}", running.addr)
}

/// A user who signs in with [`PASSWORD`].
async fn user(running: &server::Running, role: Role, rooms: &[&str]) -> String {
    let name = unique_room("person").as_str().replace(':', "-");
    let rooms: Vec<Pattern> = rooms.iter().map(|p| Pattern::parse(p).unwrap()).collect();
    server::auth::create_user(
        &running.store,
        running.auth.passwords(),
        &name,
        PASSWORD.into(),
        role,
        &rooms,
        false,
    )
    .await
    .unwrap();
    name
}

/// Signs in through the form and returns the response (its cookie, its redirect).
async fn log_in(running: &server::Running, name: &str, password: &str) -> reqwest::Response {
    browser()
        .post(url(running, "/login"))
        .form(&[("name", name), ("password", password), ("next", "/d/host")])
        .send()
        .await
        .unwrap()
}

/// The `name=value` part of a response's session cookie.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn post_event_as(
    client: &reqwest::Client,
    running: &server::Running,
    room: &str,
    extra: &[(&str, &str)],
) -> StatusCode {
    let mut request = client
        .post(format!("http://{}/api/rooms/{room}/events", running.addr))
        .json(&json!({"kind": "notice", "data": {"text": "hello"}}));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

/// The status the server refused a socket with, or None if it opened.
async fn upgrade_status(request: tungstenite::handshake::client::Request) -> Option<u16> {
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(response)) => Some(response.status().as_u16()),
        Err(other) => panic!("unexpected socket error {other}"),
    }
}

#[tokio::test]
async fn without_an_identity_the_api_and_the_socket_answer_401_and_pages_lead_to_sign_in() {
    let app = start().await;
    let room = unique_room("closed");
    let response = browser()
        .get(events_url(&app, room.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unauthenticated"
    );

    let socket = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    assert_eq!(
        upgrade_status(socket).await,
        Some(401),
        "no upgrade without identity"
    );
    let wrong = format!("ws://{}/ws?token=wr_0000", app.addr)
        .into_client_request()
        .unwrap();
    assert_eq!(upgrade_status(wrong).await, Some(401));

    let page = browser()
        .get(url(&app, "/d/host?range=1h"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers()[header::LOCATION],
        "/login?next=/d/host%3Frange%3D1h"
    );
    let health = browser().get(url(&app, "/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "liveness stays open");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_fresh_install_leads_every_page_to_setup_which_makes_one_first_admin() {
    let database = EmptyDatabase::create("setup").await;
    let url_of = database.url.clone();
    let running = start_bare(move |config| config.database_url = Some(url_of)).await;
    let page = browser()
        .get(url(&running, "/d/host"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()[header::LOCATION], "/setup");
    let form = browser().get(url(&running, "/setup")).send().await.unwrap();
    assert!(
        !form.text().await.unwrap().contains("setup_token"),
        "none on loopback"
    );

    let setup = |name: &'static str| {
        browser()
            .post(url(&running, "/setup"))
            .form(&[("name", name), ("password", PASSWORD)])
            .send()
    };
    let created = setup("first").await.unwrap();
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&created);
    let home = browser()
        .get(url(&running, "/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK, "signed in as the new admin");

    let again = setup("second").await.unwrap();
    assert_eq!(
        again.headers()[header::LOCATION],
        "/login",
        "setup happens once"
    );
    assert!(running.store.account("second").await.unwrap().is_none());
    running.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn off_loopback_setup_requires_the_token_the_server_printed() {
    let database = EmptyDatabase::create("setup-token").await;
    let url_of = database.url.clone();
    let running = start_bare(move |config| {
        config.database_url = Some(url_of);
        config.listen = "0.0.0.0:0".parse().unwrap();
    })
    .await;
    let token = running
        .auth
        .setup_token()
        .expect("a token off loopback")
        .to_owned();
    // Behind a proxy, too, whoever reaches it first could claim the setup.
    let proxied = start_bare(|c| c.public_url = Some("https://watch.example.com".into())).await;
    assert!(proxied.auth.setup_token().is_some());
    proxied.stop().await.unwrap();
    let local = format!("http://127.0.0.1:{}/setup", running.addr.port());
    for given in ["", "not-the-token"] {
        let refused = browser()
            .post(&local)
            .form(&[
                ("name", "admin"),
                ("password", PASSWORD),
                ("setup_token", given),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{given:?}");
    }
    let taken = browser()
        .post(&local)
        .form(&[
            ("name", "admin"),
            ("password", PASSWORD),
            ("setup_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), StatusCode::SEE_OTHER);
    assert!(running.store.account("admin").await.unwrap().is_some());
    running.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn signing_in_sets_a_guarded_cookie_and_signing_out_ends_the_session() {
    let app = start().await;
    let name = user(&app, Role::Viewer, &["*"]).await;
    let signed_in = log_in(&app, &name, PASSWORD).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[header::LOCATION], "/d/host");
    let set = signed_in.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain http without a public https URL: {set}"
    );
    let cookie = session_cookie(&signed_in);
    let with_cookie = |path: &str| {
        browser()
            .get(url(&app, path))
            .header(header::COOKIE, &cookie)
            .send()
    };
    assert_eq!(with_cookie("/").await.unwrap().status(), StatusCode::OK);

    let out = browser()
        .post(url(&app, "/logout"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.headers()[header::LOCATION], "/login");
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = with_cookie("/").await.unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "the session is gone");
    app.stop().await.unwrap();

    let https = start_with(|c| c.public_url = Some("https://watch.example.com".into())).await;
    let name = user(&https, Role::Viewer, &["*"]).await;
    let signed_in = log_in(&https, &name, PASSWORD).await;
    let set = signed_in.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
    https.stop().await.unwrap();
}

#[tokio::test]
async fn failed_sign_ins_get_one_message_and_are_throttled_per_account() {
    let app = start().await;
    let name = user(&app, Role::Viewer, &["*"]).await;
    let unknown = log_in(&app, "nobody-by-this-name", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown_page = unknown.text().await.unwrap();
    for _ in 0..5 {
        let wrong = log_in(&app, &name, "not the password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            wrong.text().await.unwrap(),
            unknown_page,
            "one message for both"
        );
    }
    let throttled = log_in(&app, &name, PASSWORD).await;
    assert_eq!(
        throttled.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right one, for now"
    );

    // Guesses sent all at once get no more tries than guesses sent one by one.
    let target = user(&app, Role::Viewer, &["*"]).await;
    let guesses = futures::future::join_all((0..20).map(|_| log_in(&app, &target, "guess"))).await;
    let tried = guesses
        .iter()
        .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(
        tried, 5,
        "the rest are refused before their password is checked"
    );
    let other = user(&app, Role::Viewer, &["*"]).await;
    assert_eq!(
        log_in(&app, &other, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let app = start().await;
    let name = user(&app, Role::Viewer, &["*"]).await;
    let account = app.store.account(&name).await.unwrap().unwrap();
    let id = server::auth::new_secret();
    let expired = chrono::Utc::now() - chrono::Duration::seconds(1);
    let hash = server::auth::digest(&id);
    app.store
        .create_session(&hash, account.id, expired, "", "")
        .await
        .unwrap();
    let response = browser()
        .get(events_url(&app, "anything"))
        .header(
            header::COOKIE,
            format!("{}={id}", server::auth::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_viewer_watches_but_publishes_nothing() {
    let app = start().await;
    let room = unique_room("viewer");
    let token = app
        .token_for(Role::Viewer, &["*"], &["read:*", "publish:*"])
        .await;
    let viewer = http_with(&token);
    assert_eq!(
        post_event_as(&viewer, &app, room.as_str(), &[]).await,
        StatusCode::FORBIDDEN
    );

    let mut socket = Client::connect_with(&app, &token).await;
    socket.subscribe(&room, None).await;
    socket
        .send(&ClientFrame::Publish {
            room: room.clone(),
            kind: EventKind::Notice,
            data: json!({"text": "sneaky"}),
            reference: Some(json!(1)),
        })
        .await;
    match socket.next().await {
        ServerFrame::Error {
            code, reference, ..
        } => {
            assert_eq!((code, reference), (ErrorCode::Forbidden, Some(json!(1))));
        }
        other => panic!("expected forbidden, got {other:?}"),
    }
    socket.assert_answers_ping().await;
    assert!(crate::helpers::stored(&app, &room).await.is_empty());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_token_scoped_to_ingest_web_sources_does_only_that() {
    let app = start().await;
    let token = app.token_for(Role::Editor, &["*"], &["ingest:web-*"]).await;
    let agent = http_with(&token);
    let ingest = |source: &str| {
        agent
            .post(format!("http://{}/api/metrics", app.addr))
            .json(&json!([{"source": source, "series": "cpu", "value": 1}]))
            .send()
    };
    let web = format!("web-{}", unique_room("a").as_str().replace([':', '.'], "-"));
    assert_eq!(ingest(&web).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        ingest("db-1").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let alerts = agent.get(events_url(&app, "alerts")).send().await.unwrap();
    assert_eq!(alerts.status(), StatusCode::FORBIDDEN);

    let mut socket = Client::connect_with(&app, &token).await;
    socket
        .send(&ClientFrame::Subscribe {
            room: app::protocol::RoomName::parse("alerts").unwrap(),
            since: None,
            epoch: None,
        })
        .await;
    assert!(matches!(
        socket.next().await,
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_user_limited_to_room_patterns_finds_no_other_room() {
    let app = start().await;
    let token = app
        .token_for(Role::Editor, &["team.payments.*"], &["admin"])
        .await;
    let member = http_with(&token);
    assert_eq!(
        post_event_as(&member, &app, "team.payments.eu", &[]).await,
        StatusCode::CREATED
    );
    assert_eq!(
        post_event_as(&member, &app, "team.search.eu", &[]).await,
        StatusCode::FORBIDDEN
    );
    let search = member
        .get(events_url(&app, "team.search.eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), StatusCode::FORBIDDEN);
    let sources: Vec<String> = member
        .get(format!("http://{}/api/metrics/sources", app.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(sources.is_empty(), "no source room matches: {sources:?}");

    // The overview neither lists nor counts sources outside a user's rooms.
    let prefix = unique_room("ov").as_str().replace(['.', ':'], "-");
    let samples = json!([
        {"source": format!("{prefix}-web"), "series": "cpu", "value": 1},
        {"source": format!("{prefix}-db"), "series": "cpu", "value": 1},
    ]);
    let stored = app
        .http()
        .post(url(&app, "/api/metrics"))
        .json(&samples)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::OK);
    let web_only = app
        .token_for(
            Role::Viewer,
            &[&format!("metrics:{prefix}-web")],
            &["admin"],
        )
        .await;
    let page = text_of(&http_with(&web_only), url(&app, &format!("/?q={prefix}"))).await;
    assert!(page.contains(&format!("{prefix}-web")));
    assert!(
        !page.contains(&format!("{prefix}-db")),
        "hidden, not even counted"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_rooms_page_lists_only_the_rooms_a_user_may_read_and_none_for_a_filter_no_name_holds() {
    let app = start().await;
    let base = unique_room("list");
    let (mine, theirs) = (format!("{base}.mine"), format!("{base}.theirs"));
    for room in [&mine, &mine, &theirs] {
        assert_eq!(
            post_event_as(app.http(), &app, room, &[]).await,
            StatusCode::CREATED
        );
    }
    let member = http_with(
        &app.token_for(Role::Viewer, &[&format!("{base}.mine")], &["read:*"])
            .await,
    );

    let page = text_of(&member, url(&app, &format!("/rooms?q={base}"))).await;
    assert!(page.contains(&format!(r#"href="/rooms/{mine}""#)), "{page}");
    assert!(page.contains(&format!(r#"href="/history?room={mine}""#)));
    // Its two events are counted, and the newest one's time is shown.
    assert!(page.contains("<td>2</td>"), "{page}");
    assert!(page.contains("<time datetime="));
    assert!(
        !page.contains(&theirs),
        "hidden from one who may not read it"
    );

    let everything = text_of(app.http(), url(&app, &format!("/rooms?q={base}"))).await;
    assert!(everything.contains(&format!(r#"href="/rooms/{theirs}""#)));
    // A filter no room name can hold (another's room, a NUL, more than 64 bytes) finds none.
    let long = "x".repeat(65);
    for filter in [theirs.as_str(), "%00", &long] {
        let none = text_of(&member, url(&app, &format!("/rooms?q={filter}"))).await;
        assert!(none.contains("No room name contains"), "{filter}: {none}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn revoking_a_token_closes_its_open_sockets() {
    let app = start().await;
    let token = app.token_for(Role::Viewer, &["*"], &["read:*"]).await;
    let mut socket = Client::connect_with(&app, &token).await;
    socket.subscribe(&unique_room("revoked"), None).await;
    let grant = app
        .store
        .token_grant(&server::auth::digest(&token))
        .await
        .unwrap()
        .unwrap();
    app.store.revoke_token(grant.id).await.unwrap();
    assert_eq!(socket.close_code().await, CloseCode::Policy);
    let again = format!("ws://{}/ws?token={token}", app.addr)
        .into_client_request()
        .unwrap();
    assert_eq!(upgrade_status(again).await, Some(401));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn pages_of_other_sites_may_not_open_sockets_nor_make_changes_with_the_cookie() {
    let app = start().await;
    let mut from_elsewhere = format!("ws://{}/ws?token={}", app.addr, app.token())
        .into_client_request()
        .unwrap();
    let evil = "http://evil.example".parse().unwrap();
    from_elsewhere.headers_mut().insert("origin", evil);
    assert_eq!(upgrade_status(from_elsewhere).await, Some(403));
    let mut from_here = format!("ws://{}/ws?token={}", app.addr, app.token())
        .into_client_request()
        .unwrap();
    let ours = format!("http://127.0.0.1:{}", app.addr.port())
        .parse()
        .unwrap();
    from_here.headers_mut().insert("origin", ours);
    assert_eq!(upgrade_status(from_here).await, None);

    let name = user(&app, Role::Editor, &["*"]).await;
    let cookie = session_cookie(&log_in(&app, &name, PASSWORD).await);
    let room = unique_room("csrf");
    let as_browser = browser();
    let with = |extra: Vec<(&'static str, String)>| {
        let mut headers = vec![("cookie", cookie.clone())];
        headers.extend(extra);
        headers
    };
    for (headers, expect) in [
        (
            with(vec![("origin", "http://evil.example".into())]),
            StatusCode::FORBIDDEN,
        ),
        (
            with(vec![("sec-fetch-site", "cross-site".into())]),
            StatusCode::FORBIDDEN,
        ),
        (
            with(vec![("sec-fetch-site", "same-origin".into())]),
            StatusCode::CREATED,
        ),
        (
            with(vec![(
                "origin",
                format!("http://localhost:{}", app.addr.port()),
            )]),
            StatusCode::CREATED,
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let status = post_event_as(&as_browser, &app, room.as_str(), &headers).await;
        assert_eq!(status, expect, "{headers:?}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused() {
    let app = start().await;
    let response = app
        .http()
        .get(url(&app, "/api/metrics/sources"))
        .header(header::HOST, "rebound.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let probe = browser()
        .get(url(&app, "/healthz"))
        .header(header::HOST, "10.0.0.7:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK, "liveness answers any name");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn signing_in_from_another_sites_page_is_refused() {
    let app = start().await;
    let name = user(&app, Role::Viewer, &["*"]).await;
    let forged = browser()
        .post(url(&app, "/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("name", name.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get(header::SET_COOKIE).is_none());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn one_token_holds_only_so_many_sockets() {
    let app = start_with(|c| c.max_sockets_per_identity = 2).await;
    let first = Client::connect(&app).await;
    let _second = Client::connect(&app).await;
    let third = format!("ws://{}/ws?token={}", app.addr, app.token())
        .into_client_request()
        .unwrap();
    assert_eq!(upgrade_status(third).await, Some(429));
    first.close().await;
    // The place is given back once a socket is gone.
    let mut again = None;
    for _ in 0..100 {
        let request = format!("ws://{}/ws?token={}", app.addr, app.token())
            .into_client_request()
            .unwrap();
        if upgrade_status(request).await.is_none() {
            again = Some(());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a closed socket frees its place");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn anonymous_watchers_see_their_rooms_without_signing_in_and_change_nothing() {
    let app = start_with(|c| {
        c.anonymous = Some(Role::Viewer);
        c.anonymous_rooms = vec![Pattern::parse("wall.*").unwrap()];
    })
    .await;
    let wall = unique_room("x").as_str().replace("t.", "wall.");
    let page = browser()
        .get(url(&app, &format!("/rooms/{wall}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let secret = browser()
        .get(events_url(&app, "secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(secret.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post_event_as(&browser(), &app, &wall, &[]).await,
        StatusCode::FORBIDDEN
    );
    let socket = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    assert_eq!(upgrade_status(socket).await, None, "anonymous sockets open");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_command_line_creates_users_and_tokens_that_work() {
    let app = start().await;
    let config = crate::helpers::config();
    let name = unique_room("cli").as_str().replace(':', "-");
    let create_user = Command::User(UserCommand::Create {
        name: name.clone(),
        role: Role::Editor,
        password_stdin: true,
        rooms: vec![Pattern::any()],
    });
    let mut input = std::io::Cursor::new(format!("{PASSWORD}\n"));
    server::cli::run(&config, &create_user, &mut input, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(
        log_in(&app, &name, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );

    let create_token = Command::Token(TokenCommand::Create {
        user: name,
        scopes: vec![app::auth::Scope::parse("publish:cli.*").unwrap()],
        expires: Some(std::time::Duration::from_secs(90)),
        name: "deploys".into(),
    });
    let mut output = Vec::new();
    let mut no_input = std::io::Cursor::new(Vec::new());
    server::cli::run(&config, &create_token, &mut no_input, &mut output)
        .await
        .unwrap();
    let token = String::from_utf8(output).unwrap().trim().to_owned();
    assert!(token.starts_with(server::auth::TOKEN_PREFIX), "{token}");
    let scoped = http_with(&token);
    assert_eq!(
        post_event_as(&scoped, &app, "cli.deploys", &[]).await,
        StatusCode::CREATED
    );
    assert_eq!(
        post_event_as(&scoped, &app, "other", &[]).await,
        StatusCode::FORBIDDEN
    );

    let unknown = Command::Token(TokenCommand::Create {
        user: "nobody-at-all".into(),
        scopes: vec![app::auth::Scope::Admin],
        expires: None,
        name: "x".into(),
    });
    let refused = server::cli::run(&config, &unknown, &mut no_input, &mut Vec::new()).await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("no user named nobody-at-all")
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn ingest_takes_only_its_own_content_types() {
    let app = start().await;
    for (path, content_type) in [
        ("/api/metrics", "text/plain"),
        (
            "/api/metrics/prometheus?source=web",
            "application/x-www-form-urlencoded",
        ),
    ] {
        let response = app
            .http()
            .post(url(&app, path))
            .header(header::CONTENT_TYPE, content_type)
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path}"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_address_that_keeps_opening_sockets_without_identity_is_held_off() {
    let app = start().await;
    let anonymous = || {
        format!("ws://{}/ws", app.addr)
            .into_client_request()
            .unwrap()
    };
    let mut refused = Vec::new();
    for _ in 0..61 {
        refused.push(upgrade_status(anonymous()).await);
    }
    assert!(refused[..60].iter().all(|status| *status == Some(401)));
    assert_eq!(refused[60], Some(429));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn disabling_a_user_closes_their_sockets_and_refuses_their_tokens() {
    let app = start().await;
    let name = user(&app, Role::Editor, &["*"]).await;
    let token =
        server::auth::create_token(&app.store, &name, "t", &[app::auth::Scope::Admin], None)
            .await
            .unwrap();
    let mut socket = Client::connect_with(&app, &token).await;
    socket.subscribe(&unique_room("disabled"), None).await;

    let disable = Command::User(UserCommand::Disable { name: name.clone() });
    let config = crate::helpers::config();
    let mut nothing = std::io::Cursor::new(Vec::new());
    server::cli::run(&config, &disable, &mut nothing, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(socket.close_code().await, CloseCode::Policy);
    let refused = http_with(&token)
        .get(events_url(&app, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        log_in(&app, &name, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn sign_in_forms_and_tokens_have_their_limits() {
    let app = start().await;
    let huge = "x".repeat(16 * 1024);
    let oversized = browser()
        .post(url(&app, "/login"))
        .form(&[("name", "someone"), ("password", huge.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A name no account can have is refused like any wrong name.
    let long_name = "n".repeat(65);
    assert_eq!(
        log_in(&app, &long_name, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let name = user(&app, Role::Editor, &["*"]).await;
    let scope = app::auth::Scope::parse("read:*").unwrap();
    for (token_name, scopes, reason) in [
        ("", vec![scope.clone()], "name"),
        ("many", vec![scope.clone(); 17], "scopes"),
        ("none", vec![], "scopes"),
    ] {
        let refused = server::auth::create_token(&app.store, &name, token_name, &scopes, None)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(refused.to_string().contains(reason), "{refused}");
    }
    app.stop().await.unwrap();
}
