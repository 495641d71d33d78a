//! The pages' server functions over HTTP, as a script or a page without wasm calls them.

use app::{
    error::AppError,
    pages::{CreateDashboard, DeletePanel},
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
        &[("dashboard", "nobody-made-this"), ("index", "0")],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error, AppError::NotFound("dashboard".into()));
    running.stop().await.unwrap();
}
