//! Room epochs: a room whose log starts over (a reset database, a restore from an older backup)
//! is sent anew to clients holding seqs of the old log, instead of leaving them waiting for seqs
//! that will never come.

use app::protocol::{RoomName, ServerFrame};

use crate::helpers::{Client, database, event_seqs, post_notice, start};

/// Throws `room`'s log away, as a database reset to before the room existed would.
async fn reset_log(room: &RoomName) {
    let pool = database().await;
    for statement in [
        "DELETE FROM events WHERE room = $1",
        "DELETE FROM rooms WHERE name = $1",
    ] {
        sqlx::query(statement)
            .bind(room.as_str())
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

#[tokio::test]
async fn a_client_resuming_in_an_epoch_the_room_no_longer_has_is_sent_the_new_log_from_the_start() {
    let server = start().await;
    let room = crate::helpers::unique_room("epoch-resume");
    for text in ["a", "b", "c"] {
        post_notice(&server, &room, text).await;
    }
    let mut first = Client::connect(&server).await;
    let (_, head, old) = first.subscribe_in(&room, None, None).await;
    assert_eq!(head, 3);
    first.close().await;

    reset_log(&room).await;
    post_notice(&server, &room, "after the reset").await;

    let mut resuming = Client::connect(&server).await;
    let (before, head, new) = resuming
        .subscribe_in(&room, Some(3), Some(old.clone()))
        .await;
    assert_ne!(new, old);
    assert_eq!(
        before.first(),
        Some(&ServerFrame::Reset {
            room: room.clone(),
            epoch: new.clone()
        }),
        "told to start over before the new log arrives"
    );
    assert_eq!(event_seqs(&before), vec![1]);
    assert_eq!(head, 1);

    // Resuming in the epoch the room has is an ordinary resume.
    let mut current = Client::connect(&server).await;
    let (before, head, _) = current.subscribe_in(&room, Some(0), Some(new)).await;
    assert_eq!(event_seqs(&before), vec![1]);
    assert!(
        !before
            .iter()
            .any(|f| matches!(f, ServerFrame::Reset { .. }))
    );
    assert_eq!(head, 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_subscriber_is_told_when_its_rooms_log_starts_over_and_is_sent_the_new_one() {
    let server = start().await;
    let room = crate::helpers::unique_room("epoch-live");
    post_notice(&server, &room, "first life").await;
    let mut watcher = Client::connect(&server).await;
    let (_, _, old) = watcher.subscribe_in(&room, None, None).await;
    // The same log goes on: no reset.
    post_notice(&server, &room, "still the first").await;
    assert_eq!(watcher.next_event_seq(&room).await, 2);

    reset_log(&room).await;
    post_notice(&server, &room, "second life").await;
    let new = match watcher.next().await {
        ServerFrame::Reset { room: r, epoch } if r == room => epoch,
        other => panic!("expected reset, got {other:?}"),
    };
    assert_ne!(new, old);
    let events = watcher.events_until(&room, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["text"], "second life");
    post_notice(&server, &room, "goes on").await;
    assert_eq!(
        watcher.next_event_seq(&room).await,
        2,
        "once each, in order"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_resuming_into_a_room_whose_log_is_gone_starts_over_at_once() {
    let server = start().await;
    let room = crate::helpers::unique_room("epoch-empty");
    post_notice(&server, &room, "old").await;
    post_notice(&server, &room, "old too").await;
    let mut first = Client::connect(&server).await;
    let (_, _, old) = first.subscribe_in(&room, None, None).await;
    first.close().await;
    reset_log(&room).await;

    let mut resuming = Client::connect(&server).await;
    let (before, head, new) = resuming.subscribe_in(&room, Some(2), Some(old)).await;
    assert_eq!(
        before,
        vec![ServerFrame::Reset {
            room: room.clone(),
            epoch: new.clone()
        }]
    );
    assert_eq!(head, 0);
    post_notice(&server, &room, "new").await;
    assert_eq!(resuming.next_event_seq(&room).await, 1);
    // A subscriber that came after the reset holds the new epoch: nothing starts over.
    let mut later = Client::connect(&server).await;
    let (before, _, epoch) = later.subscribe_in(&room, Some(1), Some(new.clone())).await;
    assert!(before.is_empty());
    assert_eq!(epoch, new);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn many_subscribers_arriving_at_once_at_a_new_room_all_get_its_one_epoch() {
    let server = start().await;
    let room = crate::helpers::unique_room("epoch-crowd");
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(Client::connect(&server).await);
    }
    let subscribed = futures::future::join_all(
        clients
            .iter_mut()
            .map(|client| client.subscribe_in(&room, None, None)),
    )
    .await;
    let epochs: std::collections::HashSet<_> = subscribed
        .into_iter()
        .map(|(before, head, epoch)| {
            assert!(before.is_empty(), "no error, no replay: {before:?}");
            assert_eq!(head, 0);
            epoch
        })
        .collect();
    assert_eq!(epochs.len(), 1, "one room, one epoch");
    server.stop().await.unwrap();
}
