//! Pushing a room's frames to its members on this node with no task wake-up per member: one
//! fan-out thread per core, each holding its share of every room's members, writes each frame
//! (encoded once) straight to every member's socket. Threads of their own, not runtime tasks: a
//! turn writes to thousands of sockets, and would hold a runtime worker from every other task
//! (reads, commits) meanwhile.
//!
//! A room sends its deliveries, in its order, to each shard that has members of it; a member
//! belongs to one shard, so it sees them in that order too. A shard that is behind takes what
//! queued for it at once and hands each member all of a room's deliveries together: a socket
//! then gets several frames in one write, as many as fell due meanwhile.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use app::protocol::{Epoch, RoomName};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{telemetry::Telemetry, ws::framing};

/// One fan-out turn in so many has its publish→deliver latency observed: the histogram takes a
/// lock, and the shards take turns at several hundred a second.
const TIMED_TURNS: u32 = 16;
/// Jobs a shard takes from its queue per turn.
const TURN_JOBS: usize = 1024;
/// Jobs still queued after a turn's are taken that mark the shard as outrun (publishes faster
/// than it writes): it then hands its members a gap in place of each run of the turn's events,
/// and they read what they lack from the store, as readers that fell behind do. The queue stays
/// short, where writing every event late would let it grow without bound.
const OUTRUN_JOBS: usize = 4 * TURN_JOBS;

/// What a room sends its members.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// A stored event; its seq lets a member drop what a replay already sent, and `published`
    /// (when its publish reached a server) times its way to the sockets.
    Event {
        seq: i64,
        frame: Frame,
        published: Instant,
    },
    /// A watcher count: state, not history, so it is never replayed.
    Presence { frame: Frame },
    /// The epoch of the events that follow; sent when it differs from the one before (and once
    /// after the room is made here), so a member can tell that the room's log started over.
    Epoch(Epoch),
    /// Events are missing that the store could not give in time (it is away): each member reads
    /// what it lacks from the store itself, as one that fell behind does.
    Gap,
}

/// A WebSocket text frame as it goes on the wire. A server's frames are not masked, so the same
/// bytes go to every socket.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame(Bytes);

impl Frame {
    pub fn text(text: &str) -> Self {
        Self(framing::encode(framing::TEXT, text.as_bytes()).freeze())
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The text it carries.
    pub fn payload(&self) -> &str {
        let start = match self.0[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        std::str::from_utf8(&self.0[start..]).expect("made from a str")
    }
}

/// Whoever a room's deliveries go to on this node: a socket's watch of the room.
pub trait Member: Send + Sync {
    /// Takes a room's deliveries, in order, without waiting; says how many events went out.
    fn deliver(&self, deliveries: &[Delivery]) -> usize;
}

/// A member's place on its shard, given back to leave.
pub struct Joined {
    shard: usize,
    member: Arc<dyn Member>,
}

impl Joined {
    pub fn shard(&self) -> usize {
        self.shard
    }
}

enum Job {
    Join(RoomName, Arc<dyn Member>),
    Leave(RoomName, Arc<dyn Member>),
    Push(RoomName, Delivery),
}

#[derive(Clone)]
pub struct Fanout {
    shards: Arc<[mpsc::UnboundedSender<Job>]>,
    /// Members are placed on the shards in turn.
    next: Arc<AtomicUsize>,
}

impl Fanout {
    /// One shard per core, each on its own thread; they end when the last handle is dropped.
    pub fn spawn(telemetry: Telemetry) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (fanout, shards) = Self::unstarted(cores);
        for (i, jobs) in shards.into_iter().enumerate() {
            let telemetry = telemetry.clone();
            std::thread::Builder::new()
                .name(format!("fanout-{i}"))
                .spawn(move || run(jobs, telemetry))
                .expect("a thread starts");
        }
        fanout
    }

    /// `shards` shards whose work is left to the caller.
    fn unstarted(shards: usize) -> (Self, Vec<mpsc::UnboundedReceiver<Job>>) {
        let (senders, receivers): (Vec<_>, _) =
            (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
        let fanout = Self {
            shards: senders.into(),
            next: Arc::default(),
        };
        (fanout, receivers)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn join(&self, room: &RoomName, member: Arc<dyn Member>) -> Joined {
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.send(shard, Job::Join(room.clone(), member.clone()));
        Joined { shard, member }
    }

    pub fn leave(&self, room: &RoomName, joined: Joined) {
        self.send(joined.shard, Job::Leave(room.clone(), joined.member));
    }

    pub fn push(&self, room: &RoomName, shard: usize, delivery: Delivery) {
        self.send(shard, Job::Push(room.clone(), delivery));
    }

    fn send(&self, shard: usize, job: Job) {
        if self.shards[shard].send(job).is_err() {
            // Its thread ends only with the last handle, or by a panic.
            tracing::error!(shard, "a fan-out shard is gone: its members get no pushes");
        }
    }
}

/// One shard: its members of every room, and the deliveries for them in order.
fn run(mut jobs: mpsc::UnboundedReceiver<Job>, telemetry: Telemetry) {
    let mut rooms: HashMap<RoomName, Vec<Arc<dyn Member>>> = HashMap::new();
    let mut taken = Vec::with_capacity(TURN_JOBS);
    // Each room's deliveries of the turn, in its order.
    let mut due: HashMap<RoomName, Vec<Delivery>> = HashMap::new();
    let mut turns = 0u32;
    while let Some(first) = jobs.blocking_recv() {
        taken.push(first);
        while taken.len() < TURN_JOBS
            && let Ok(job) = jobs.try_recv()
        {
            taken.push(job);
        }
        // Joins and leaves take effect before the turn's deliveries: a member that joins gets
        // some it already has (it drops them by seq), one that leaves takes no more.
        for job in taken.drain(..) {
            match job {
                Job::Join(room, member) => rooms.entry(room).or_default().push(member),
                Job::Leave(room, member) => {
                    if let Some(members) = rooms.get_mut(&room) {
                        members
                            .retain(|m| !std::ptr::addr_eq(Arc::as_ptr(m), Arc::as_ptr(&member)));
                        if members.is_empty() {
                            rooms.remove(&room);
                        }
                    }
                }
                Job::Push(room, delivery) => due.entry(room).or_default().push(delivery),
            }
        }
        let outrun = jobs.len() > OUTRUN_JOBS;
        let mut delivered = 0;
        let mut oldest = None;
        for (room, mut deliveries) in due.drain() {
            let Some(members) = rooms.get(&room) else {
                continue;
            };
            if outrun {
                deliveries = gaps_for_events(deliveries);
            }
            delivered += members
                .iter()
                .map(|m| m.deliver(&deliveries))
                .sum::<usize>();
            oldest = oldest.or_else(|| {
                deliveries.iter().find_map(|d| match d {
                    Delivery::Event { published, .. } => Some(*published),
                    _ => None,
                })
            });
        }
        telemetry.delivered(delivered as u64);
        if let Some(published) = oldest.filter(|_| delivered > 0) {
            if turns.is_multiple_of(TIMED_TURNS) {
                telemetry.publish_delivered(published.elapsed());
            }
            turns = turns.wrapping_add(1);
        }
    }
}

/// `deliveries` with each run of events replaced by one gap.
fn gaps_for_events(deliveries: Vec<Delivery>) -> Vec<Delivery> {
    let mut kept: Vec<Delivery> = Vec::new();
    for delivery in deliveries {
        match delivery {
            Delivery::Event { .. } if matches!(kept.last(), Some(Delivery::Gap)) => {}
            Delivery::Event { .. } => kept.push(Delivery::Gap),
            other => kept.push(other),
        }
    }
    kept
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The deliveries sent to a room's shards, taken in the order sent.
    pub(crate) struct Sent(Vec<mpsc::UnboundedReceiver<Job>>);

    impl Sent {
        /// What each shard was sent since last asked.
        pub(crate) fn by_shard(&mut self) -> Vec<Vec<Delivery>> {
            let pushed = |jobs: &mut mpsc::UnboundedReceiver<Job>| {
                std::iter::from_fn(|| jobs.try_recv().ok())
                    .filter_map(|job| match job {
                        Job::Push(_, delivery) => Some(delivery),
                        _ => None,
                    })
                    .collect()
            };
            self.0.iter_mut().map(pushed).collect()
        }

        pub(crate) fn deliveries(&mut self) -> Vec<Delivery> {
            self.by_shard().concat()
        }
    }

    pub(crate) fn fanout_of(shards: usize) -> (Fanout, Sent) {
        let (fanout, jobs) = Fanout::unstarted(shards);
        (fanout, Sent(jobs))
    }

    pub(crate) fn fanout() -> (Fanout, Sent) {
        fanout_of(1)
    }

    /// A member that keeps what it is handed.
    #[derive(Default)]
    struct Recording(std::sync::Mutex<Vec<Delivery>>);

    impl Member for Recording {
        fn deliver(&self, deliveries: &[Delivery]) -> usize {
            self.0.lock().unwrap().extend_from_slice(deliveries);
            deliveries.len()
        }
    }

    #[test]
    fn a_shard_outrun_by_its_queue_hands_out_gaps_in_place_of_events() {
        let (fanout, mut jobs) = Fanout::unstarted(1);
        let room = RoomName::parse("r").unwrap();
        let member = Arc::new(Recording::default());
        fanout.join(&room, member.clone());
        let events = 10 * OUTRUN_JOBS as i64;
        for seq in 1..=events {
            let frame = Frame::text(&seq.to_string());
            let event = Delivery::Event {
                seq,
                frame,
                published: Instant::now(),
            };
            fanout.push(&room, 0, event);
        }
        drop(fanout);
        run(jobs.remove(0), Telemetry::default());

        let handed = member.0.lock().unwrap();
        let seqs: Vec<i64> = handed
            .iter()
            .filter_map(|d| match d {
                Delivery::Event { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        let gaps = handed.iter().filter(|d| matches!(d, Delivery::Gap)).count();
        assert!(gaps > 0, "the outrun turns handed gaps");
        assert!(seqs.len() < events as usize, "and not their events");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "what was written is in order"
        );
        assert_eq!(
            seqs.last(),
            Some(&events),
            "the turns that kept up wrote their events"
        );
    }

    #[test]
    fn a_run_of_events_becomes_one_gap_and_the_rest_stays() {
        let event = |seq| Delivery::Event {
            seq,
            frame: Frame::text("e"),
            published: Instant::now(),
        };
        let presence = Delivery::Presence {
            frame: Frame::text("p"),
        };
        let epoch = Delivery::Epoch(Epoch("f".into()));
        let kept = gaps_for_events(vec![
            event(1),
            event(2),
            presence,
            event(3),
            epoch,
            event(1),
        ]);
        let kinds: Vec<&str> = kept
            .iter()
            .map(|d| match d {
                Delivery::Event { .. } => "event",
                Delivery::Presence { .. } => "presence",
                Delivery::Epoch(_) => "epoch",
                Delivery::Gap => "gap",
            })
            .collect();
        assert_eq!(kinds, ["gap", "presence", "gap", "epoch", "gap"]);
    }

    #[test]
    fn a_frame_carries_its_length_in_the_shortest_form() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let text = "x".repeat(len);
            let frame = Frame::text(&text);
            assert_eq!(frame.bytes().len(), header + len, "length {len}");
            assert_eq!(frame.bytes()[0], 0x81);
            assert_eq!(frame.payload(), text);
        }
        assert_eq!(&Frame::text("hi").bytes()[..], b"\x81\x02hi");
        assert_eq!(
            &Frame::text(&"y".repeat(300)).bytes()[..4],
            b"\x81\x7e\x01\x2c"
        );
    }
}
