//! Alerts: one task evaluates the rules on samples as the writer commits them (and once a second
//! for pending periods, windows and missing data), stores every transition in room `alerts`, and
//! answers what stands now; [`notify`] tells the channels. With several nodes only the one
//! leading evaluates, fed the other nodes' samples by the bus; every node applies every change
//! to the rules, acknowledgements and silences, wherever it was made.

mod eval;
pub mod notify;
pub mod remote;
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
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use eval::{Evaluator, backtest};

use crate::{
    bus::Bus,
    error::{Error, Result, RunError},
    ingest::Ingest,
    jobs::Leadership,
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

/// A change to what the evaluator follows, made on one node and applied on each.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    SetRule(StoredRule),
    RemoveRule { id: i64 },
    Ack(Ack),
    Silence(Silence),
    Unsilence { id: i64 },
}

enum Command {
    Change(Box<Change>),
    Instances(oneshot::Sender<Vec<Instance>>),
}

/// The handle the API, the pages and the notifier use.
#[derive(Clone)]
pub struct Alerts {
    commands: mpsc::Sender<Command>,
    /// Where changes made here go to the other nodes.
    bus: Bus,
    /// Woken when transitions were committed, for the notifier.
    pub(crate) committed: Arc<Notify>,
}

/// What the evaluator task owns.
struct Evaluation {
    state: Followed,
    store: Store,
    leader: Leadership,
    ingest: Ingest,
    committed: Arc<Notify>,
}

/// What the evaluator follows, as the store has it.
struct Followed {
    eval: Evaluator,
    acks: HashMap<Key, Ack>,
    silences: Vec<Silence>,
}

impl Followed {
    /// Every instance followed, with its acknowledgement and silence, most urgent first.
    fn instances(&self) -> Vec<Instance> {
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
        list
    }

    /// The rules, where each instance stood (from room `alerts`), acknowledgements and silences.
    async fn load(store: &Store) -> Result<Self> {
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
        Ok(Self {
            eval,
            acks,
            silences,
        })
    }
}

impl Alerts {
    /// Loads what the store has of alerts, then follows `samples` while this node leads,
    /// until `shutdown`.
    pub async fn start(
        store: &Store,
        ingest: Ingest,
        samples: mpsc::Receiver<Committed>,
        (leader, bus): (Leadership, Bus),
        shutdown: CancellationToken,
    ) -> Result<Self, RunError> {
        let state = Followed::load(store).await?;
        let (commands, receive) = mpsc::channel(64);
        let committed = Arc::new(Notify::new());
        let task = Evaluation {
            state,
            store: store.clone(),
            leader,
            ingest,
            committed: committed.clone(),
        };
        tokio::spawn(task.run(samples, receive, shutdown));
        Ok(Self {
            commands,
            bus,
            committed,
        })
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Unavailable)
    }

    /// Applies `change` here and on the other nodes.
    async fn change(&self, change: Change) -> Result<()> {
        self.bus.share(&change);
        self.apply(change).await
    }

    /// Applies `change`, made here or on another node, to this node's evaluator.
    pub async fn apply(&self, change: Change) -> Result<()> {
        self.send(Command::Change(Box::new(change))).await
    }

    pub async fn set_rule(&self, rule: StoredRule) -> Result<()> {
        self.change(Change::SetRule(rule)).await
    }

    pub async fn remove_rule(&self, id: i64) -> Result<()> {
        self.change(Change::RemoveRule { id }).await
    }

    pub async fn ack(&self, ack: Ack) -> Result<()> {
        self.change(Change::Ack(ack)).await
    }

    pub async fn silence(&self, silence: Silence) -> Result<()> {
        self.change(Change::Silence(silence)).await
    }

    pub async fn unsilence(&self, id: i64) -> Result<()> {
        self.change(Change::Unsilence { id }).await
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
        let mut leader = self.leader.clone();
        loop {
            let transitions = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(batch) = samples.recv() => match leader.is_leading() {
                    true => {
                        let now = now();
                        let mut out = Vec::new();
                        for (source, points) in &batch {
                            out.extend(self.state.eval.observe(source, points, now));
                        }
                        out
                    }
                    false => Vec::new(),
                },
                Some(command) = commands.recv() => self.command(command).await,
                _ = tick.tick(), if leader.is_leading() => {
                    let now = now();
                    self.state.silences.retain(|s| s.ends > now);
                    self.state.eval.tick(now)
                }
                leading = leader.changed() => {
                    // Where the last leader left each instance is in the store; what this node
                    // held from its own last turn is not.
                    if leading {
                        self.reload().await;
                    }
                    Vec::new()
                }
            };
            if !transitions.is_empty() {
                self.publish(transitions).await;
            }
        }
    }

    /// Follows the store's state from scratch, retrying until it answers.
    async fn reload(&mut self) {
        loop {
            match Followed::load(&self.store).await {
                Ok(state) => return self.state = state,
                Err(e) => {
                    tracing::warn!(error = %e, "loading the alert state to lead failed; trying again");
                    tokio::time::sleep(TICK).await;
                }
            }
        }
    }

    async fn command(&mut self, command: Command) -> Vec<Transition> {
        match command {
            Command::Change(change) => self.change(*change),
            Command::Instances(reply) => {
                // A node that does not lead follows no instance: it answers from the store,
                // where the leader keeps every transition.
                let list = match self.leader.is_leading() {
                    true => self.state.instances(),
                    false => match Followed::load(&self.store).await {
                        Ok(stored) => stored.instances(),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading alert instances failed");
                            return Vec::new();
                        }
                    },
                };
                let _ = reply.send(list);
                Vec::new()
            }
        }
    }

    fn change(&mut self, change: Change) -> Vec<Transition> {
        let state = &mut self.state;
        let transitions = match change {
            Change::SetRule(rule) => state.eval.set_rule(rule, now()),
            Change::RemoveRule { id } => {
                state.acks.retain(|key, _| key.rule != id);
                state.eval.remove_rule(id, now())
            }
            Change::Ack(ack) => {
                state.acks.insert(ack.key.clone(), ack);
                Vec::new()
            }
            Change::Silence(silence) => {
                state.silences.push(silence);
                Vec::new()
            }
            Change::Unsilence { id } => {
                state.silences.retain(|s| s.id != id);
                Vec::new()
            }
        };
        // Rule changes are evaluated by the leader alone: the others would store them again.
        match self.leader.is_leading() {
            true => transitions,
            false => Vec::new(),
        }
    }

    /// Stores the transitions in room `alerts` (which pushes them) in the order they happened.
    async fn publish(&mut self, transitions: Vec<Transition>) {
        let now = now();
        let room = room();
        let events = transitions
            .into_iter()
            .map(|mut t| {
                t.silenced = self.state.silences.iter().any(|s| s.covers(&t, now));
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
