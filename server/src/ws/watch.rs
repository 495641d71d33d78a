//! One socket's watch of one room: where the client stands in the room's log, and whether the
//! room's pushes go straight to the socket or wait for its connection to read from the store.

use std::sync::{Arc, Mutex, MutexGuard};

use app::protocol::Epoch;
use bytes::Bytes;

use super::outbox::{Outbox, WAITING_LIMIT};
use crate::fanout::{Delivery, Frame, Member};

pub struct Watch {
    outbox: Arc<Outbox>,
    state: Mutex<State>,
}

struct State {
    /// The newest seq the client has (written or waiting in the outbox); later ones are due.
    seq: i64,
    /// The epoch `seq` counts in; none until the subscribe has read it.
    epoch: Option<Epoch>,
    mode: Mode,
}

/// Whether pushes go to the socket.
enum Mode {
    /// As they come.
    Live,
    /// Not yet: the connection is writing the room from the store, and pushes wait here (up to
    /// [`WAITING_LIMIT`] bytes) to follow it.
    Holding {
        held: Vec<(i64, Frame)>,
        bytes: usize,
    },
    /// Not until the connection has read what the client lacks from the store: the socket
    /// stopped taking them, or events went missing on their way to this node.
    Behind,
    /// Not until the connection has asked the store for the room's epoch: the log may have
    /// started over.
    Restarted,
    /// Never again: the client left the room.
    Left,
}

/// What a watch needs from its connection.
#[derive(Debug, PartialEq)]
pub enum Need {
    Nothing,
    /// Reading from the store from its seq on, metrics conflated: it fell behind.
    CatchUp,
    /// Asking the store whether the room's log started over.
    Recheck,
}

impl Watch {
    /// A watch that holds pushes until [`Watch::go_live`]: its subscribe writes the room's past
    /// first.
    pub fn holding(outbox: Arc<Outbox>) -> Self {
        Self {
            outbox,
            state: Mutex::new(State {
                seq: 0,
                epoch: None,
                mode: Mode::Holding {
                    held: Vec::new(),
                    bytes: 0,
                },
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Updated whole under the lock: a poisoned one is intact.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the client stands; seqs after it are due.
    pub fn position(&self) -> (i64, Option<Epoch>) {
        let state = self.state();
        (state.seq, state.epoch.clone())
    }

    /// Sets where the client stands as its subscribe found the room: at `seq` in `epoch`. A
    /// push of another epoch seen before (the log started over meanwhile) calls for a recheck.
    pub fn opened(&self, seq: i64, epoch: Epoch) {
        let mut state = self.state();
        if state.epoch.as_ref().is_some_and(|seen| *seen != epoch) {
            state.mode = Mode::Restarted;
        }
        state.seq = seq;
        state.epoch = Some(epoch);
    }

    /// The client starts the room's log over, in `epoch`.
    pub fn start_over(&self, epoch: Epoch) {
        let mut state = self.state();
        state.seq = 0;
        state.epoch = Some(epoch);
    }

    /// The client has everything up to `seq`.
    pub fn advance(&self, seq: i64) {
        let mut state = self.state();
        state.seq = state.seq.max(seq);
    }

    /// Holds pushes while the connection writes from the store.
    pub fn hold(&self) {
        let mut state = self.state();
        if !matches!(state.mode, Mode::Left) {
            state.mode = Mode::Holding {
                held: Vec::new(),
                bytes: 0,
            };
        }
    }

    /// Writes what was held past the client's seq and goes live; unless the watch fell behind
    /// or restarted meanwhile (or the socket would not take what was held): then the
    /// connection must see to it again.
    pub fn go_live(&self) -> Need {
        let mut state = self.state();
        if let Mode::Holding { held, .. } = &mut state.mode {
            let held = std::mem::take(held);
            state.mode = Mode::Live;
            for (seq, frame) in held {
                if seq > state.seq {
                    if !self.outbox.offer(&[frame.bytes()]) {
                        state.mode = Mode::Behind;
                        break;
                    }
                    state.seq = seq;
                }
            }
        }
        state.need()
    }

    pub fn need(&self) -> Need {
        self.state().need()
    }

    /// No more pushes: the client left the room.
    pub fn leave(&self) {
        self.state().mode = Mode::Left;
    }

    /// Stops pushes until the connection sees to the watch, and calls it.
    fn stop(&self, state: &mut State, mode: Mode) {
        if !matches!(state.mode, Mode::Left | Mode::Restarted) {
            state.mode = mode;
            self.outbox.call();
        }
    }
}

impl State {
    fn need(&self) -> Need {
        match self.mode {
            Mode::Behind => Need::CatchUp,
            Mode::Restarted => Need::Recheck,
            Mode::Live | Mode::Holding { .. } | Mode::Left => Need::Nothing,
        }
    }
}

impl Member for Watch {
    fn deliver(&self, deliveries: &[Delivery]) -> usize {
        let mut state = self.state();
        // Frames due to the socket, written together; the newest event among them.
        let mut due: Vec<&Bytes> = Vec::new();
        let (mut newest, mut events) = (state.seq, 0);
        for delivery in deliveries {
            match delivery {
                Delivery::Event { seq, frame, .. } if *seq > newest => match &mut state.mode {
                    Mode::Live => {
                        due.push(frame.bytes());
                        (newest, events) = (*seq, events + 1);
                    }
                    Mode::Holding { held, bytes } => {
                        *bytes += frame.bytes().len();
                        if *bytes <= WAITING_LIMIT {
                            held.push((*seq, frame.clone()));
                        } else {
                            self.stop(&mut state, Mode::Behind);
                        }
                    }
                    Mode::Behind | Mode::Restarted | Mode::Left => {}
                },
                Delivery::Event { .. } => {}
                // A count: a socket too full to take it gets the next.
                Delivery::Presence { frame } => {
                    if matches!(state.mode, Mode::Live | Mode::Holding { .. }) {
                        due.push(frame.bytes());
                    }
                }
                Delivery::Epoch(epoch) => {
                    if state.epoch.as_ref().is_some_and(|ours| ours != epoch) {
                        self.stop(&mut state, Mode::Restarted);
                    } else if state.epoch.is_none() {
                        // Seen before the subscribe read the room's epoch: it checks the two.
                        state.epoch = Some(epoch.clone());
                    }
                }
                Delivery::Gap => {
                    if matches!(state.mode, Mode::Live | Mode::Holding { .. }) {
                        self.stop(&mut state, Mode::Behind);
                    }
                }
            }
        }
        // What fell due before the watch stopped (if it did) is still the client's.
        if due.is_empty() {
            return 0;
        }
        if !self.outbox.offer(&due) {
            self.stop(&mut state, Mode::Behind);
            return 0;
        }
        state.seq = newest;
        events
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::{io::AsyncReadExt, net::TcpStream};

    use super::*;
    use crate::ws::outbox::tests::pair;

    async fn watch() -> (Watch, TcpStream) {
        let (outbox, peer) = pair().await;
        (Watch::holding(Arc::new(outbox)), peer)
    }

    /// A live watch at the start of epoch `e`.
    async fn live() -> (Watch, TcpStream) {
        let (watch, peer) = watch().await;
        watch.opened(0, Epoch("e".into()));
        watch.go_live();
        (watch, peer)
    }

    fn event(seq: i64) -> Delivery {
        Delivery::Event {
            seq,
            frame: Frame::text(&seq.to_string()),
            published: Instant::now(),
        }
    }

    /// The texts of the frames the peer has been sent so far (each under 126 bytes).
    async fn received(peer: &mut TcpStream) -> Vec<String> {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(Ok(read @ 1..)) =
            tokio::time::timeout(Duration::from_millis(50), peer.read(&mut chunk)).await
        {
            bytes.extend_from_slice(&chunk[..read]);
        }
        let mut texts = Vec::new();
        let mut rest = &bytes[..];
        while let [0x81, len, tail @ ..] = rest {
            let (text, after) = tail.split_at(*len as usize);
            texts.push(String::from_utf8(text.to_vec()).unwrap());
            rest = after;
        }
        assert!(rest.is_empty(), "whole text frames only");
        texts
    }

    #[tokio::test]
    async fn pushes_held_while_the_past_is_written_follow_it_without_overlap() {
        let (watch, mut peer) = watch().await;
        let early: Vec<Delivery> = (1..=5).map(event).collect();
        assert_eq!(watch.deliver(&early), 0, "held, not written");
        assert!(received(&mut peer).await.is_empty());
        // The replay wrote up to 3.
        watch.opened(3, Epoch("e".into()));
        assert_eq!(watch.go_live(), Need::Nothing);
        assert_eq!(watch.deliver(&[event(6), event(6), event(2)]), 1);
        assert_eq!(watch.deliver(&[event(6)]), 0, "once");
        assert_eq!(received(&mut peer).await, ["4", "5", "6"]);
    }

    #[tokio::test]
    async fn a_batch_goes_out_up_to_a_gap_which_calls_for_the_store() {
        let (watch, mut peer) = live().await;
        let batch = [event(1), event(2), Delivery::Gap, event(3)];
        assert_eq!(watch.deliver(&batch), 2);
        assert_eq!(received(&mut peer).await, ["1", "2"]);
        assert_eq!(watch.need(), Need::CatchUp);
        assert_eq!(
            watch.position().0,
            2,
            "the catch-up starts after what was written"
        );
    }

    #[tokio::test]
    async fn a_socket_that_takes_no_more_puts_its_watch_behind_and_calls_its_connection() {
        let (watch, _peer) = live().await;
        let big = |seq| Delivery::Event {
            seq,
            frame: Frame::text(&"x".repeat(60_000)),
            published: Instant::now(),
        };
        let mut seq = 1;
        while watch.deliver(&[big(seq)]) == 1 {
            seq += 1;
            assert!(seq < 10_000, "the socket never filled");
        }
        assert_eq!(watch.need(), Need::CatchUp);
        assert_eq!(
            watch.position().0,
            seq - 1,
            "the client has what was written"
        );
        assert!(watch.outbox.take_call());
        assert_eq!(
            watch.deliver(&[event(seq + 1)]),
            0,
            "nothing more until caught up"
        );
    }

    #[tokio::test]
    async fn a_push_of_another_epoch_calls_for_a_recheck() {
        let (watch, _peer) = live().await;
        watch.deliver(&[Delivery::Epoch(Epoch("e".into()))]);
        assert_eq!(watch.need(), Need::Nothing, "the same epoch");
        let restarted = [Delivery::Epoch(Epoch("f".into())), event(1)];
        assert_eq!(watch.deliver(&restarted), 0, "not the client's log");
        assert_eq!(watch.need(), Need::Recheck);

        let (watch, _peer) = super::tests::watch().await;
        watch.deliver(&[Delivery::Epoch(Epoch("f".into()))]);
        watch.opened(0, Epoch("e".into()));
        assert_eq!(
            watch.go_live(),
            Need::Recheck,
            "seen while subscribing, before the store was read"
        );
    }
}
