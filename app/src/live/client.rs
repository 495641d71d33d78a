use std::collections::HashMap;

use futures::channel::mpsc::UnboundedSender;
use leptos::prelude::*;

use crate::protocol::{ClientFrame, Event, RoomName, RoomSnapshot};

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

/// A room the page shows: its newest events and the last `seq` applied, from which a new
/// connection resumes.
#[derive(Clone, Copy)]
struct Feed {
    events: RwSignal<Vec<Event>>,
    watchers: RwSignal<Option<usize>>,
    last_seq: i64,
}

/// What a component shows of a room it joined.
#[derive(Clone, Copy)]
pub struct RoomView {
    pub events: ReadSignal<Vec<Event>>,
    /// Connections watching the room, once the server has said.
    pub watchers: ReadSignal<Option<usize>>,
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
    pub fn provide() {
        let client = Self {
            state: RwSignal::new(ConnState::Connecting),
            feeds: StoredValue::new(HashMap::new()),
            outbox: StoredValue::new(None),
        };
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
            last_seq: snapshot.head,
        };
        self.feeds.update_value(|feeds| {
            feeds.insert(room.clone(), feed);
        });
        self.send(ClientFrame::Subscribe {
            room: room.clone(),
            since: Some(feed.last_seq),
        });
        on_cleanup(move || self.leave(room));
        RoomView {
            events: feed.events.read_only(),
            watchers: feed.watchers.read_only(),
        }
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
    #[cfg(feature = "hydrate")]
    pub(super) fn attach(self, outbox: UnboundedSender<ClientFrame>) -> Vec<ClientFrame> {
        self.outbox.set_value(Some(outbox));
        self.feeds.with_value(|feeds| {
            feeds
                .iter()
                .map(|(room, feed)| ClientFrame::Subscribe {
                    room: room.clone(),
                    since: Some(feed.last_seq),
                })
                .collect()
        })
    }

    #[cfg(feature = "hydrate")]
    pub(super) fn detach(self) {
        self.outbox.set_value(None);
    }

    /// Applies a frame from the server; returns the reply it calls for, if any.
    #[cfg(feature = "hydrate")]
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
            } => {
                let since = self
                    .feeds
                    .with_value(|feeds| feeds.get(&room).map(|feed| feed.last_seq))?;
                Some(ClientFrame::Subscribe {
                    room,
                    since: Some(since),
                })
            }
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
            | ServerFrame::Subscribed { .. }
            | ServerFrame::Unsubscribed { .. }
            | ServerFrame::Published { .. }
            | ServerFrame::Pong => None,
        }
    }
}
