//! The pages' server functions over HTTP, as a script or a page without wasm calls them.

use app::{
    error::AppError,
    pages::{CreateDashboard, DeletePanel, SavePanel},
};
use leptos::server_fn::{ServerFn, error::FromServerFnError};

use crate::helpers::start;

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
