//! Start-up on a database as a fresh machine has it: empty, with several nodes arriving at once.

use futures::future::join_all;

use crate::helpers::{EmptyDatabase, start_with};

#[tokio::test]
async fn nodes_starting_together_on_an_empty_database_all_start_and_seed_it_once() {
    let database = EmptyDatabase::create("startup").await;
    // Migrated beforehand, as when a node restarts: otherwise the migration lock would space the
    // nodes' first writes apart.
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::migrate!("../migrations").run(&pool).await.unwrap();
    let nodes = join_all((0..8).map(|_| {
        let url = database.url.clone();
        start_with(move |config| config.database_url = Some(url))
    }))
    .await;

    for node in &nodes {
        let host = node.get(format!("http://{}/d/host", node.addr)).await;
        assert_eq!(host.status(), 200, "every node serves the seeded dashboard");
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM dashboards")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(names, vec!["host".to_owned()]);
    pool.close().await;
    for node in nodes {
        node.stop().await.unwrap();
    }
    database.drop().await;
}

#[tokio::test]
async fn a_seed_racing_another_nodes_seed_succeeds_and_leaves_one_host_dashboard() {
    let database = EmptyDatabase::create("seed").await;
    let store = server::store::Store::connect(database.url.parse().unwrap(), Default::default())
        .await
        .unwrap();
    let other_node = sqlx::PgPool::connect(&database.url).await.unwrap();
    // The other node has written its seed but not yet committed it: ours cannot see it.
    let mut racing = other_node.begin().await.unwrap();
    sqlx::query("INSERT INTO dashboards (name) VALUES ('host')")
        .execute(&mut *racing)
        .await
        .unwrap();
    let ours = tokio::spawn(async move { store.seed_dashboards("host:a").await });
    // Ours waits on that row's lock, then the other node commits.
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&other_node)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            !ours.is_finished(),
            "our seed ended without waiting for the other node's row"
        );
        tokio::task::yield_now().await;
    }
    racing.commit().await.unwrap();

    ours.await
        .unwrap()
        .expect("the seed succeeds when another node seeded first");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM dashboards")
        .fetch_one(&other_node)
        .await
        .unwrap();
    assert_eq!(count, 1);
    other_node.close().await;
    database.drop().await;
}
