//! The pages, and what they share: following a room's pushes into charts.

mod board;
mod chart;
mod overview;
mod room;

pub use board::Board;
pub use overview::Overview;
pub use room::RoomPage;

use leptos::prelude::*;

use crate::{
    live::LiveClient,
    metrics::{Point, event_points},
    protocol::{EventKind, RoomName, RoomSnapshot},
};

/// Joins `room` from `head` on and hands every sample pushed after it to `on_point`, once each,
/// in order. Only the browser receives pushes; on the server this renders nothing live.
fn follow(room: RoomName, head: i64, on_point: impl Fn(&Point) + 'static) {
    let events = LiveClient::expect()
        .join(RoomSnapshot {
            room,
            head,
            events: Vec::new(),
        })
        .events;
    let seen = StoredValue::new(head);
    Effect::new(move |_| {
        events.with(|events| {
            for event in events.iter().filter(|e| e.seq > seen.get_value()) {
                seen.set_value(event.seq);
                if event.kind == EventKind::Metric {
                    event_points(&event.data, event.ts)
                        .iter()
                        .for_each(&on_point);
                }
            }
        });
    });
}
