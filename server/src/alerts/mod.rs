//! Alerts: one task evaluates the rules on samples as the writer commits them (and once a second
//! for pending periods, windows and missing data), stores every transition in room `alerts`, and
//! answers what stands now; [`notify`] tells the channels.

mod eval;
pub mod notify;
mod window;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use app::{
    alerts::{self, Ack, AlertEvent, Instance, Key, News, Silence, StoredRule, Transition},
    metrics::Point,
    protocol::{EventKind, NewEvent, RoomName},
};
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use eval::{Evaluator, backtest};

use crate::{
    error::{Error, Result, RunError},
    ingest::Ingest,
    store::{Pending, Store},
};

/// How often pending periods, windows and missing data are looked at between samples.
const TICK: Duration = Duration::from_secs(1);
/// Committed batches waiting for the evaluator before the writer drops them (and counts it).
const FEED_QUEUE: usize = 1024;

/// Samples one transaction committed, by source.
pub type Committed = Vec<(String, Vec<Point>)>;

/// How the writer hands committed samples to the evaluator: never waiting for it.
#[derive(Clone)]
pub struct Feed {
    tx: mpsc::Sender<Committed>,
    dropped: Arc<AtomicU64>,
}

impl Feed {
    pub fn new() -> (Self, mpsc::Receiver<Committed>) {
        let (tx, rx) = mpsc::channel(FEED_QUEUE);
        let dropped = Arc::default();
        (Self { tx, dropped }, rx)
    }

    pub fn send(&self, committed: Committed) {
        if committed.is_empty() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(committed) {
            // The writer must not wait: a stalled evaluator would stall every room.
            if self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1000)
            {
                tracing::warn!(
                    "the alert evaluator is behind; committed samples were not evaluated"
                );
            }
        }
    }
}

enum Command {
    SetRule(StoredRule),
    RemoveRule(i64),
    Ack(Ack),
    Silence(Silence),
    Unsilence(i64),
    Instances(oneshot::Sender<Vec<Instance>>),
}

/// The handle the API, the pages and the notifier use.
#[derive(Clone)]
pub struct Alerts {
    commands: mpsc::Sender<Command>,
    /// Woken when transitions were committed, for the notifier.
    pub(crate) committed: Arc<Notify>,
}

/// What the evaluator task owns.
struct Evaluation {
    eval: Evaluator,
    acks: HashMap<Key, Ack>,
    silences: Vec<Silence>,
    ingest: Ingest,
    committed: Arc<Notify>,
}

impl Alerts {
    /// Loads the rules, where each instance stood (from room `alerts`), acknowledgements and
    /// silences, then follows `samples` until `shutdown`.
    pub async fn start(
        store: &Store,
        ingest: Ingest,
        samples: mpsc::Receiver<Committed>,
        shutdown: CancellationToken,
    ) -> Result<Self, RunError> {
        let now = now();
        let mut eval = Evaluator::default();
        for rule in store.alert_rules().await? {
            eval.set_rule(rule, now);
        }
        for transition in store.last_transitions().await? {
            eval.restore(transition, now);
        }
        let acks = store
            .alert_acks()
            .await?
            .into_iter()
            .map(|ack| (ack.key.clone(), ack))
            .collect();
        let silences = store.alert_silences().await?;
        let (commands, receive) = mpsc::channel(64);
        let committed = Arc::new(Notify::new());
        let task = Evaluation {
            eval,
            acks,
            silences,
            ingest,
            committed: committed.clone(),
        };
        tokio::spawn(task.run(samples, receive, shutdown));
        Ok(Self {
            commands,
            committed,
        })
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Unavailable)
    }

    pub async fn set_rule(&self, rule: StoredRule) -> Result<()> {
        self.send(Command::SetRule(rule)).await
    }

    pub async fn remove_rule(&self, id: i64) -> Result<()> {
        self.send(Command::RemoveRule(id)).await
    }

    pub async fn ack(&self, ack: Ack) -> Result<()> {
        self.send(Command::Ack(ack)).await
    }

    pub async fn silence(&self, silence: Silence) -> Result<()> {
        self.send(Command::Silence(silence)).await
    }

    pub async fn unsilence(&self, id: i64) -> Result<()> {
        self.send(Command::Unsilence(id)).await
    }

    /// Every instance followed, with its acknowledgement and silence, most urgent first.
    pub async fn instances(&self) -> Result<Vec<Instance>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Instances(reply)).await?;
        answer.await.map_err(|_| Error::Unavailable)
    }
}

/// The time states are stamped with: to the microsecond, as Postgres keeps it, so an
/// acknowledgement read back still names the state it acknowledged.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Room `alerts`.
pub fn room() -> RoomName {
    RoomName::parse(alerts::ROOM).expect("`alerts` is a room name")
}

/// A transition's one line for people: `FIRING cpu hot: web-1 cpu 93%`.
pub fn headline(t: &Transition) -> String {
    format!(
        "{} {}: {}",
        t.state.as_str().to_uppercase(),
        t.name,
        t.summary
    )
}

/// An event for room `alerts`.
pub fn event(text: String, news: News) -> NewEvent {
    let data = serde_json::to_value(AlertEvent { text, news }).expect("alert events serialise");
    NewEvent {
        kind: EventKind::Alert,
        data,
    }
}

impl Evaluation {
    async fn run(
        mut self,
        mut samples: mpsc::Receiver<Committed>,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let transitions = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(batch) = samples.recv() => {
                    let now = now();
                    let mut out = Vec::new();
                    for (source, points) in &batch {
                        out.extend(self.eval.observe(source, points, now));
                    }
                    out
                }
                Some(command) = commands.recv() => self.command(command),
                _ = tick.tick() => {
                    let now = now();
                    self.silences.retain(|s| s.ends > now);
                    self.eval.tick(now)
                }
            };
            if !transitions.is_empty() {
                self.publish(transitions).await;
            }
        }
    }

    fn command(&mut self, command: Command) -> Vec<Transition> {
        match command {
            Command::SetRule(rule) => return self.eval.set_rule(rule, now()),
            Command::RemoveRule(id) => {
                self.acks.retain(|key, _| key.rule != id);
                return self.eval.remove_rule(id, now());
            }
            Command::Ack(ack) => {
                self.acks.insert(ack.key.clone(), ack);
            }
            Command::Silence(silence) => self.silences.push(silence),
            Command::Unsilence(id) => self.silences.retain(|s| s.id != id),
            Command::Instances(reply) => {
                let now = now();
                let mut list = self.eval.instances();
                for instance in &mut list {
                    instance.ack = self
                        .acks
                        .get(&instance.key)
                        .filter(|ack| ack.since == instance.since)
                        .cloned();
                    instance.silenced = self.silences.iter().any(|s| {
                        s.starts <= now
                            && s.matchers.matches(
                                &instance.name,
                                &instance.key.source,
                                &instance.key.labels,
                                &instance.rule_labels,
                            )
                    });
                }
                list.sort_by(Instance::urgency);
                let _ = reply.send(list);
            }
        }
        Vec::new()
    }

    /// Stores the transitions in room `alerts` (which pushes them) in the order they happened.
    async fn publish(&mut self, transitions: Vec<Transition>) {
        let now = now();
        let room = room();
        let events = transitions
            .into_iter()
            .map(|mut t| {
                t.silenced = self.silences.iter().any(|s| s.covers(&t, now));
                Pending::new(
                    room.clone(),
                    event(headline(&t), News::Transition(t)),
                    Vec::new(),
                )
            })
            .collect();
        // Only waiting for room in the writer's queue: the writer never waits for this task.
        match self.ingest.submit(events).await {
            Ok(stored) => {
                let committed = self.committed.clone();
                tokio::spawn(async move {
                    match stored.await {
                        Ok(_) => committed.notify_one(),
                        Err(e) => tracing::error!(error = %e, "storing alert transitions failed"),
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, "alert transitions could not be queued"),
        }
    }
}
