use std::collections::HashMap;

use futures::channel::mpsc::UnboundedSender;
use leptos::prelude::*;

use crate::protocol::{ClientFrame, Epoch, Event, RoomName, RoomSnapshot};

/// Events a page keeps and shows per room.
pub const EVENTS_SHOWN: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConnState {
    Connecting,
    Live,
    /// Waiting to try again at this time (milliseconds since the epoch).
    Reconnecting {
        retry_at: f64,
    },
    /// The browser reports no network; trying resumes when it comes back.
    Offline,
}

impl ConnState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting { .. } => "reconnecting",
            Self::Offline => "offline",
        }
    }
}

/// A room the page shows: its newest events and the last `seq` applied (with the epoch it
/// counts in), from which a new connection resumes.
#[derive(Clone)]
struct Feed {
    events: RwSignal<Vec<Event>>,
    watchers: RwSignal<Option<usize>>,
    resets: RwSignal<u32>,
    last_seq: i64,
    epoch: Option<Epoch>,
}

impl Feed {
    fn resume(&self, room: &RoomName) -> ClientFrame {
        ClientFrame::Subscribe {
            room: room.clone(),
            since: Some(self.last_seq),
            epoch: self.epoch.clone(),
        }
    }
}

/// What a component shows of a room it joined.
#[derive(Clone, Copy)]
pub struct RoomView {
    pub events: ReadSignal<Vec<Event>>,
    /// Connections watching the room, once the server has said.
    pub watchers: ReadSignal<Option<usize>>,
    /// Counts the times the room's log started over: seqs begin again at 1 after each.
    pub resets: ReadSignal<u32>,
}

/// Handle to the page's live connection, provided as context by [`crate::App`].
#[derive(Clone, Copy)]
pub struct LiveClient {
    pub state: RwSignal<ConnState>,
    feeds: StoredValue<HashMap<RoomName, Feed>>,
    /// Frames for the open socket; `None` while disconnected (the next connection resubscribes).
    outbox: StoredValue<Option<UnboundedSender<ClientFrame>>>,
}

impl LiveClient {
    fn new() -> Self {
        Self {
            state: RwSignal::new(ConnState::Connecting),
            feeds: StoredValue::new(HashMap::new()),
            outbox: StoredValue::new(None),
        }
    }

    pub fn provide() {
        let client = Self::new();
        provide_context(client);
        // Effects run only in the browser, after hydration: the server never opens a socket.
        #[cfg(feature = "hydrate")]
        Effect::new(move |_| super::socket::spawn(client));
    }

    pub fn expect() -> Self {
        expect_context()
    }

    /// Shows `snapshot`'s room live from its head on; the returned events grow as pushes arrive.
    /// The room is left when the calling component is cleaned up.
    pub fn join(self, snapshot: RoomSnapshot) -> RoomView {
        let room = snapshot.room;
        let feed = Feed {
            events: RwSignal::new(snapshot.events),
            watchers: RwSignal::new(None),
            resets: RwSignal::new(0),
            last_seq: snapshot.head,
            epoch: snapshot.epoch,
        };
        let view = RoomView {
            events: feed.events.read_only(),
            watchers: feed.watchers.read_only(),
            resets: feed.resets.read_only(),
        };
        self.send(feed.resume(&room));
        self.feeds.update_value(|feeds| {
            feeds.insert(room.clone(), feed);
        });
        on_cleanup(move || self.leave(room));
        view
    }

    fn leave(self, room: RoomName) {
        if self
            .feeds
            .try_update_value(|feeds| feeds.remove(&room))
            .flatten()
            .is_some()
        {
            self.send(ClientFrame::Unsubscribe { room });
        }
    }

    fn send(self, frame: ClientFrame) {
        self.outbox.with_value(|outbox| {
            if let Some(outbox) = outbox {
                // A closed channel means the socket just dropped; the next one resubscribes.
                let _ = outbox.unbounded_send(frame);
            }
        });
    }

    /// Attaches a new socket: returns the subscriptions it must send first, resuming every room
    /// after its last applied `seq`. Later joins go to `outbox`.
    #[cfg(any(feature = "hydrate", test))]
    pub(super) fn attach(self, outbox: UnboundedSender<ClientFrame>) -> Vec<ClientFrame> {
        self.outbox.set_value(Some(outbox));
        self.feeds
            .with_value(|feeds| feeds.iter().map(|(room, feed)| feed.resume(room)).collect())
    }

    #[cfg(feature = "hydrate")]
    pub(super) fn detach(self) {
        self.outbox.set_value(None);
    }

    /// Applies a frame from the server; returns the reply it calls for, if any.
    #[cfg(any(feature = "hydrate", test))]
    pub(super) fn apply(self, frame: crate::protocol::ServerFrame) -> Option<ClientFrame> {
        use crate::protocol::{ErrorCode, ServerFrame};

        match frame {
            ServerFrame::Event(event) => {
                self.feeds.update_value(|feeds| {
                    // Replays and live pushes may overlap; the seq decides what is new.
                    if let Some(feed) = feeds
                        .get_mut(&event.room)
                        .filter(|f| event.seq > f.last_seq)
                    {
                        feed.last_seq = event.seq;
                        feed.events.update(|events| {
                            events.push(event);
                            let excess = events.len().saturating_sub(EVENTS_SHOWN);
                            events.drain(..excess);
                        });
                    }
                });
                None
            }
            // The room's log started over: what this page holds of it belongs to the old one.
            ServerFrame::Reset { room, epoch } => {
                self.feeds.update_value(|feeds| {
                    if let Some(feed) = feeds.get_mut(&room) {
                        feed.last_seq = 0;
                        feed.epoch = Some(epoch);
                        feed.events.set(Vec::new());
                        feed.resets.update(|n| *n += 1);
                    }
                });
                None
            }
            ServerFrame::Subscribed { room, epoch, .. } => {
                self.feeds.update_value(|feeds| {
                    if let Some(feed) = feeds.get_mut(&room) {
                        feed.epoch = Some(epoch);
                    }
                });
                None
            }
            ServerFrame::Presence { room, watchers } => {
                self.feeds.with_value(|feeds| {
                    feeds
                        .get(&room)
                        .map(|feed| feed.watchers.set(Some(watchers)))
                });
                None
            }
            ServerFrame::Ping => Some(ClientFrame::Pong),
            // The server could not keep this room flowing: pick it up again where we are.
            ServerFrame::Error {
                code: ErrorCode::Lagged,
                room: Some(room),
                ..
            } => self
                .feeds
                .with_value(|feeds| feeds.get(&room).map(|feed| feed.resume(&room))),
            ServerFrame::Error {
                code,
                message,
                room,
                ..
            } => {
                leptos::logging::warn!("server refused a frame: {code:?} {message} {room:?}");
                None
            }
            ServerFrame::Hello { .. }
            | ServerFrame::Unsubscribed { .. }
            | ServerFrame::Published { .. }
            | ServerFrame::Pong => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorCode, EventKind, ServerFrame};
    use futures::channel::mpsc;
    use serde_json::json;

    // Every test runs inside `Owner::new().with`: signals live in a reactive owner's arena, as on a page.

    fn room() -> RoomName {
        RoomName::parse("web").unwrap()
    }

    fn event(seq: i64) -> Event {
        Event {
            room: room(),
            seq,
            ts: chrono::Utc::now(),
            kind: EventKind::Notice,
            data: json!({"text": format!("n{seq}")}),
        }
    }

    fn epoch(name: &str) -> Option<Epoch> {
        Some(Epoch(name.into()))
    }

    fn joined(head: i64) -> (LiveClient, RoomView) {
        let client = LiveClient::new();
        let events = (1..=head).map(event).collect();
        let view = client.join(RoomSnapshot {
            room: room(),
            head,
            epoch: epoch("first"),
            events,
        });
        (client, view)
    }

    fn resume(since: i64, epoch: Option<Epoch>) -> ClientFrame {
        ClientFrame::Subscribe {
            room: room(),
            since: Some(since),
            epoch,
        }
    }

    fn seqs(view: RoomView) -> Vec<i64> {
        view.events.get_untracked().iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_new_socket_resubscribes_every_room_from_its_last_seq() {
        Owner::new().with(|| {
            let (client, _) = joined(3);
            client.apply(ServerFrame::Event(event(4)));
            let (outbox, _pending) = mpsc::unbounded();
            assert_eq!(client.attach(outbox), vec![resume(4, epoch("first"))]);
        });
    }

    #[test]
    fn a_reset_room_drops_the_old_log_and_resumes_in_the_new_epoch() {
        Owner::new().with(|| {
            let (client, view) = joined(3);
            client.apply(ServerFrame::Reset {
                room: room(),
                epoch: Epoch("second".into()),
            });
            assert_eq!(seqs(view), Vec::<i64>::new());
            assert_eq!(view.resets.get_untracked(), 1);
            // Seqs of the new log are shown though they are below the old head.
            client.apply(ServerFrame::Event(event(1)));
            client.apply(ServerFrame::Event(event(2)));
            assert_eq!(seqs(view), vec![1, 2]);
            let (outbox, _pending) = mpsc::unbounded();
            assert_eq!(client.attach(outbox), vec![resume(2, epoch("second"))]);
        });
    }

    #[test]
    fn the_epoch_a_subscription_reports_is_the_one_resumed_in() {
        Owner::new().with(|| {
            let client = LiveClient::new();
            client.join(RoomSnapshot {
                room: room(),
                head: 0,
                epoch: None,
                events: vec![],
            });
            client.apply(ServerFrame::Subscribed {
                room: room(),
                head: 0,
                epoch: Epoch("fresh".into()),
            });
            let (outbox, _pending) = mpsc::unbounded();
            assert_eq!(client.attach(outbox), vec![resume(0, epoch("fresh"))]);
        });
    }

    #[test]
    fn replayed_and_live_copies_of_an_event_are_shown_once() {
        Owner::new().with(|| {
            let (client, view) = joined(3);
            for seq in [2, 3, 4, 4, 5] {
                client.apply(ServerFrame::Event(event(seq)));
            }
            assert_eq!(seqs(view), vec![1, 2, 3, 4, 5]);
        });
    }

    #[test]
    fn only_the_newest_events_are_kept() {
        Owner::new().with(|| {
            let (client, view) = joined(0);
            for seq in 1..=EVENTS_SHOWN as i64 + 10 {
                client.apply(ServerFrame::Event(event(seq)));
            }
            assert_eq!(
                seqs(view),
                (11..=EVENTS_SHOWN as i64 + 10).collect::<Vec<_>>()
            );
        });
    }

    #[test]
    fn a_lagged_room_is_resubscribed_from_the_last_seq_shown() {
        Owner::new().with(|| {
            let (client, _) = joined(7);
            let lagged = ServerFrame::Error {
                code: ErrorCode::Lagged,
                message: "behind".into(),
                room: Some(room()),
                since: Some(7),
                reference: None,
            };
            assert_eq!(client.apply(lagged), Some(resume(7, epoch("first"))));
            assert_eq!(client.apply(ServerFrame::Ping), Some(ClientFrame::Pong));
        });
    }

    #[test]
    fn presence_updates_the_watcher_count_and_joins_go_to_an_open_socket() {
        Owner::new().with(|| {
            let (client, view) = joined(0);
            client.apply(ServerFrame::Presence {
                room: room(),
                watchers: 3,
            });
            assert_eq!(view.watchers.get_untracked(), Some(3));

            let (outbox, mut pending) = mpsc::unbounded();
            client.attach(outbox);
            let other = RoomName::parse("db").unwrap();
            client.join(RoomSnapshot {
                room: other.clone(),
                head: 9,
                epoch: None,
                events: vec![],
            });
            assert_eq!(
                pending.try_recv().ok(),
                Some(ClientFrame::Subscribe {
                    room: other,
                    since: Some(9),
                    epoch: None,
                })
            );
        });
    }
}
