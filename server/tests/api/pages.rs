//! The pages' server functions over HTTP, as a script or a page without wasm calls them.

use app::{
    auth::Role,
    dashboards::Dashboard,
    error::AppError,
    pages::{BoardPage, CreateDashboard, DeletePanel, LoadBoard, SavePanel},
};
use leptos::server_fn::{ServerFn, error::FromServerFnError};
use serde_json::{Value, json};

use crate::helpers::{http_with, start, start_with, unique_room};

/// Calls the server function at `path` with a form body, as JSON-speaking clients do.
async fn call(
    running: &crate::helpers::TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, AppError) {
    let response = running
        .http()
        .post(format!("http://{}{path}", running.addr))
        .header("accept", "application/json")
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, AppError::de(response.bytes().await.unwrap()))
}

#[tokio::test]
async fn server_functions_answer_a_typed_error_with_its_status() {
    let running = start().await;
    let (status, error) = call(&running, CreateDashboard::PATH, &[("name", "Not A Name")]).await;
    assert_eq!(status, 400);
    assert!(matches!(error, AppError::Invalid(_)), "{error:?}");

    let (status, error) = call(
        &running,
        DeletePanel::PATH,
        &[
            ("dashboard", "nobody-made-this"),
            ("version", "1"),
            ("index", "0"),
        ],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error, AppError::NotFound("dashboard".into()));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn two_edits_made_from_the_same_version_of_a_dashboard_cannot_overwrite_each_other() {
    let running = start().await;
    let name = crate::helpers::unique_room("edits")
        .as_str()
        .replace('.', "-");
    let panel = |title: &'static str| {
        let name = name.clone();
        move |version: &'static str| {
            vec![
                ("dashboard", name.clone()),
                ("version", version.to_owned()),
                ("panel[title]", title.to_owned()),
                ("panel[kind]", "stat".to_owned()),
                ("panel[source]", "host:a".to_owned()),
                ("panel[series]", "cpu.total".to_owned()),
                ("panel[unit]", "percent".to_owned()),
                ("panel[warn]", String::new()),
                ("panel[critical]", String::new()),
            ]
        }
    };
    let answered = |path: &'static str, form: Vec<(&'static str, String)>| {
        let running = &running;
        async move {
            let response = running
                .http()
                .post(format!("http://{}{path}", running.addr))
                .header("accept", "application/json")
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            (status, (status >= 400).then(|| AppError::de(body)))
        }
    };
    let created = answered(CreateDashboard::PATH, vec![("name", name.clone())]).await;
    assert_eq!(created.1, None);

    // Two editors opened version 1; the first to save wins, the second is told to reload.
    assert_eq!(answered(SavePanel::PATH, panel("Mine")("1")).await.1, None);
    let (status, error) = answered(SavePanel::PATH, panel("Theirs")("1")).await;
    assert_eq!(status, 409);
    assert!(matches!(error, Some(AppError::Conflict(_))), "{error:?}");
    let delete = |version: &'static str| {
        let form = [
            ("dashboard", name.as_str()),
            ("version", version),
            ("index", "0"),
        ];
        form.map(|(k, v)| (k, v.to_owned())).to_vec()
    };
    assert_eq!(answered(DeletePanel::PATH, delete("1")).await.0, 409);
    // Creating it again leaves it as it is.
    assert_eq!(
        answered(CreateDashboard::PATH, vec![("name", name.clone())])
            .await
            .1,
        None
    );

    let stored = running.store.dashboard(&name).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    let titles: Vec<&str> = stored.panels.iter().map(|p| p.title.as_str()).collect();
    assert_eq!(titles, ["Mine"]);
    assert_eq!(answered(DeletePanel::PATH, delete("2")).await.1, None);
    let stored = running.store.dashboard(&name).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.panels.len()), (3, 0));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn answers_come_compressed_with_an_id_and_pages_allow_only_their_own_nonced_scripts() {
    let running = start().await;
    let get = |path: &str, encoding: &str| {
        running
            .http()
            .get(format!("http://{}{path}", running.addr))
            .header("accept-encoding", encoding)
            .send()
    };
    let page = get("/", "br").await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers();
    assert_eq!(headers["content-encoding"], "br");
    let policy = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a fresh UUID: {id}");

    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("scripts only with a nonce");
    let page = get("/", "identity").await.unwrap();
    let again = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!again.contains(nonce), "a fresh nonce each response");
    let html = page.text().await.unwrap();
    let next = again
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let scripts = html.matches("<script").count();
    assert!(scripts > 0);
    assert_eq!(
        html.matches(&format!("nonce=\"{next}\"")).count(),
        scripts,
        "every script carries the response's nonce"
    );

    let api = get("/api/metrics/storage", "gzip").await.unwrap();
    assert_eq!(api.status(), 200);
    assert_eq!(api.headers()["content-encoding"], "gzip");
    let plain = get("/api/metrics/storage", "identity").await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(
        plain.headers()["content-security-policy"],
        "frame-ancestors 'none'; object-src 'none'; base-uri 'self'; form-action 'self'",
        "not a page: no scripts to allow"
    );

    let traced = running
        .http()
        .get(format!("http://{}/healthz", running.addr))
        .header("x-request-id", "from-the-proxy-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        traced.headers()["x-request-id"],
        "from-the-proxy-1",
        "a proxy's id is kept"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn the_sites_files_go_out_as_compressed_at_build_time_when_the_browser_takes_it() {
    let site = crate::helpers::scratch_dir();
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("watchroom.wasm"), b"\0asm the module itself").unwrap();
    std::fs::write(
        pkg.join("watchroom.wasm.br"),
        b"the module, brotli at build time",
    )
    .unwrap();
    let running = start_with(|config| config.site_root = site.clone()).await;
    let get = |encoding: &str| {
        running
            .http()
            .get(format!("http://{}/pkg/watchroom.wasm", running.addr))
            .header("accept-encoding", encoding)
            .send()
    };

    let packed = get("gzip, br").await.unwrap();
    assert_eq!(packed.status(), 200);
    let headers = packed.headers().clone();
    assert_eq!(headers["content-encoding"], "br");
    assert_eq!(headers["content-type"], "application/wasm");
    assert_eq!(headers["vary"], "accept-encoding");
    assert_eq!(headers["cache-control"], "no-cache", "names without hashes");
    let body = packed.bytes().await.unwrap();
    assert_eq!(
        &body[..],
        b"the module, brotli at build time",
        "sent as built, not again"
    );

    let plain = get("identity").await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(
        &plain.bytes().await.unwrap()[..],
        b"\0asm the module itself"
    );
    let absent = running
        .http()
        .get(format!("http://{}/pkg/absent.wasm", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), 404);
    running.stop().await.unwrap();
    std::fs::remove_dir_all(site).unwrap();
}

/// `PUT /api/dashboards/{name}` of `board`, sent by `http`.
async fn put_dashboard(
    running: &crate::helpers::TestApp,
    http: &reqwest::Client,
    name: &str,
    board: &Value,
) -> reqwest::Response {
    http.put(format!("http://{}/api/dashboards/{name}", running.addr))
        .header("content-type", "application/json")
        .body(board.to_string())
        .send()
        .await
        .unwrap()
}

/// A dashboard name of the test's own in a database kept between runs.
fn unique_dashboard(label: &str) -> String {
    unique_room(label).as_str().replace('.', "-")
}

#[tokio::test]
async fn a_dashboard_goes_out_as_json_comes_back_by_put_and_bad_json_is_refused_naming_its_field() {
    let running = start().await;
    let name = unique_dashboard("json");
    let url = format!("http://{}/api/dashboards/{name}", running.addr);
    let mut board = serde_json::to_value(Dashboard {
        name: name.clone(),
        ..Dashboard::host("host:json-test")
    })
    .unwrap();
    board.as_object_mut().unwrap().remove("version");

    // Provisioning: created, then replaced whatever is stored, each time a version further.
    let created = put_dashboard(&running, running.http(), &name, &board).await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.json::<Dashboard>().await.unwrap().version, 1);
    let replaced = put_dashboard(&running, running.http(), &name, &board).await;
    assert_eq!(replaced.status(), 200);
    let read: Dashboard = running.get(&url).await.json().await.unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.variables[0].sources, "host:*");
    assert_eq!(read.panels[0].source, "$source");
    let listed: Vec<String> = running
        .get(format!("http://{}/api/dashboards", running.addr))
        .await
        .json()
        .await
        .unwrap();
    assert!(listed.contains(&name));

    // An export sent back at its version replaces that version only.
    let mut export = serde_json::to_value(&read).unwrap();
    export["panels"][0]["title"] = "CPU now".into();
    let at_two = put_dashboard(&running, running.http(), &name, &export).await;
    assert_eq!(at_two.status(), 200);
    let again = put_dashboard(&running, running.http(), &name, &export).await;
    assert_eq!(again.status(), 409, "version 2 is gone");
    let refusal: Value = again.json().await.unwrap();
    assert_eq!(refusal["error"], "conflict");

    let refused = |change: fn(&mut Value)| {
        let mut body = board.clone();
        change(&mut body);
        let (running, name) = (&running, &name);
        async move {
            let response = put_dashboard(running, running.http(), name, &body).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["message"].as_str().unwrap().to_owned())
        }
    };
    let (status, message) = refused(|b| b["panels"][1]["kind"] = "pie".into()).await;
    assert_eq!(status, 422);
    assert!(
        message.starts_with("panels[1].kind: unknown variant `pie`"),
        "{message}"
    );
    let (_, message) = refused(|b| b["panels"][2]["source"] = "$host".into()).await;
    assert_eq!(
        message,
        r#"panels[2].source: no variable "host" on this dashboard"#
    );
    let (_, message) = refused(|b| b["variables"][0]["sourcez"] = "x".into()).await;
    assert!(
        message.starts_with("variables[0].sourcez: unknown field `sourcez`"),
        "{message}"
    );
    let (_, message) = refused(|b| b["name"] = "another".into()).await;
    assert!(
        message.starts_with("name: the body names \"another\""),
        "{message}"
    );

    let viewer = http_with(&running.token_for(Role::Viewer, &["*"], &["read:*"]).await);
    assert_eq!(
        put_dashboard(&running, &viewer, &name, &board)
            .await
            .status(),
        403
    );
    let stored = running.store.dashboard(&name).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.panels[0].title.as_str()),
        (3, "CPU now")
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_variable_shows_the_source_the_address_chooses_among_those_stored_with_its_rules() {
    let running = start().await;
    let prefix = unique_dashboard("var");
    let (first, second) = (format!("{prefix}-a"), format!("{prefix}-b"));
    for (source, value) in [(&first, 11.0), (&second, 22.0)] {
        let posted = running
            .http()
            .post(format!("http://{}/api/metrics", running.addr))
            .json(&json!([{"source": source, "series": "load", "value": value}]))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 200);
    }
    let name = unique_dashboard("vars");
    let board = json!({
        "name": name,
        "variables": [{"name": "host", "sources": format!("{prefix}-*")}],
        "panels": [{"title": "Load", "kind": "line", "source": "$host", "series": ["load"]}],
    });
    let rule = json!({"name": "busy b", "series": "load", "threshold": 20, "severity": "warning"});
    crate::alerts::create_rule(&running, &second, rule).await;
    let put = put_dashboard(&running, running.http(), &name, &board).await;
    assert_eq!(put.status(), 201);

    let load = |vars: &[(&str, &str)]| {
        let vars: serde_json::Map<String, Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let request = running
            .http()
            .post(format!("http://{}{}", running.addr, LoadBoard::PATH))
            .header("accept", "application/json")
            .json(&json!({"name": name, "range": "15m", "vars": vars}))
            .send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 200);
            let page: BoardPage = response.json().await.unwrap();
            let board = page.board.unwrap();
            let choice = board.variables[0].clone();
            let shown = board.panels[0][0].last();
            assert_eq!(
                board.dashboard.panels[0].source, "$host",
                "as stored, for the editor"
            );
            (choice.values, choice.chosen, shown)
        }
    };
    let (values, chosen, shown) = load(&[]).await;
    assert_eq!(values, [first.clone(), second.clone()]);
    assert_eq!(
        (chosen.as_deref(), shown),
        (Some(first.as_str()), Some(11.0)),
        "the first"
    );
    let (_, chosen, shown) = load(&[("host", &second)]).await;
    assert_eq!(
        (chosen.as_deref(), shown),
        (Some(second.as_str()), Some(22.0))
    );
    let (_, chosen, _) = load(&[("host", "host:elsewhere")]).await;
    assert_eq!(
        chosen.as_deref(),
        Some(first.as_str()),
        "not among the values: the first"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_zoom_draws_its_span_still_and_a_half_given_or_too_short_span_is_refused() {
    let running = start().await;
    let load = |extra: &[(&str, &str)]| {
        let mut args = json!({"name": "host", "range": "15m"});
        for (k, v) in extra {
            args[*k] = json!(v);
        }
        let request = running
            .http()
            .post(format!("http://{}{}", running.addr, LoadBoard::PATH))
            .header("accept", "application/json")
            .json(&args)
            .send();
        async move {
            let response = request.await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        }
    };
    let (status, body) = load(&[
        ("from", "2026-11-20T10:00:00Z"),
        ("to", "2026-11-20T10:02:30Z"),
    ])
    .await;
    assert_eq!(status, 200);
    let board = serde_json::from_slice::<BoardPage>(&body)
        .unwrap()
        .board
        .unwrap();
    let (from, to) = board.zoomed.unwrap();
    assert_eq!(
        (to - from, board.window_ms, board.now_ms),
        (150_000, 150_000, to)
    );
    assert!(board.heads.is_empty(), "a zoom follows nothing");

    for refused in [
        &[("from", "2026-11-20T10:00:00Z")][..],
        &[
            ("from", "2026-11-20T10:00:00Z"),
            ("to", "2026-11-20T10:00:05Z"),
        ],
        &[("from", "now-1h"), ("to", "now-2h")],
    ] {
        let (status, body) = load(refused).await;
        assert_eq!(status, 400, "{refused:?}");
        assert!(matches!(AppError::de(body), AppError::Invalid(_)));
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_edit_goes_back_to_the_page_it_was_made_on_with_its_range_and_variables() {
    use app::pages::ArrangePanel;

    let running = start().await;
    let name = unique_dashboard("back");
    let board = json!({"name": name, "panels": [
        {"title": "Load", "kind": "stat", "source": "host:a", "series": ["load"]},
    ]});
    let put = put_dashboard(&running, running.http(), &name, &board).await;
    assert_eq!(put.status(), 201);
    // A browser without the wasm posts the form and follows where it is sent.
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", running.token()).parse().unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    let browser = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let widen = |version: &'static str, referer: String| {
        browser
            .post(format!("http://{}{}", running.addr, ArrangePanel::PATH))
            .header("referer", referer)
            .form(&[
                ("dashboard", name.as_str()),
                ("version", version),
                ("index", "0"),
                ("change", "wider"),
            ])
            .send()
    };
    let page = format!("/d/{name}?range=1h&source=host:b");
    let answer = widen("1", format!("http://{}{page}", running.addr))
        .await
        .unwrap();
    assert_eq!(answer.headers()["location"], page.as_str());
    // Another page, or another dashboard, is not where this edit was made.
    let elsewhere = [
        ("2", format!("http://{}/", running.addr)),
        ("3", format!("http://{}/d/{name}x", running.addr)),
    ];
    for (version, referer) in elsewhere {
        let answer = widen(version, referer).await.unwrap();
        assert_eq!(answer.headers()["location"], format!("/d/{name}").as_str());
    }
    let stored = running.store.dashboard(&name).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.panels[0].width), (4, Some(4)));
    running.stop().await.unwrap();
}

// Two threads, as tests running side by side have: the starts and the renders interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_while_another_server_starts_in_the_same_process() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let app = start().await;
    let page = format!("http://{}/rooms/{}", app.addr, unique_room("render"));
    let done = Arc::new(AtomicBool::new(false));
    let starts = tokio::spawn({
        let done = done.clone();
        async move {
            while !done.load(Ordering::Relaxed) {
                start().await.stop().await.unwrap();
            }
        }
    });
    let reader = || async {
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(app.get(&page).await.status().as_u16());
        }
        statuses
    };
    let statuses = futures::future::join_all((0..8).map(|_| reader())).await;
    done.store(true, Ordering::Relaxed);
    starts.await.unwrap();
    assert_eq!(
        statuses.concat(),
        vec![200; 320],
        "no page waits for data that never loads"
    );
    app.stop().await.unwrap();
}
