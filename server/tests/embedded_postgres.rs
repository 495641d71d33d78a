//! Without DATABASE_URL the server runs its own Postgres; what it stored outlives a restart.

mod support;

use support::{post_notice, stored, unique_room};

#[tokio::test]
async fn events_survive_a_restart_on_the_private_cluster() {
    // Under the system temp dir: as root the cluster runs as `postgres`, which must reach it.
    let data_dir = std::env::temp_dir().join(unique_room("watchroom-pg").as_str());
    let mut config = support::config();
    config.database_url = None;
    config.data_dir = data_dir.clone();
    let room = unique_room("durable");

    let first = server::start(&config).await.expect("starts its own postgres");
    assert_eq!(post_notice(&first, &room, "before restart").await["seq"], 1);
    first.stop().await.unwrap();

    let second = server::start(&config).await.expect("restarts on the same cluster");
    let events = stored(&second, &room).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["text"], "before restart");
    assert_eq!(post_notice(&second, &room, "after restart").await["seq"], 2);
    second.stop().await.unwrap();

    std::fs::remove_dir_all(&data_dir).unwrap();
}
