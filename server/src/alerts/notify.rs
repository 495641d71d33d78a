//! Notifications: transitions stored in room `alerts` are routed to the channels that take them
//! through an outbox in Postgres, then sent at least once, with backoff, across restarts.

use std::{sync::Arc, time::Duration};

use app::alerts::{Channel, Instance, Key, State, StoredChannel, Target, Transition, format_value};
use chrono::{DateTime, TimeDelta, Utc};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{Alerts, headline};
use crate::{
    Config,
    error::{Result, RunError},
    jobs::Leadership,
    store::{Notification, Store},
};

/// Transitions routed per transaction.
const ROUTE_BATCH: i64 = 256;
/// Notifications sent at once.
const SEND_BATCH: i64 = 16;
/// A receiver that has not answered by then has failed this attempt.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry waits this long, each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Attempts before a notification is given up (about an hour and a half of retries).
const MAX_ATTEMPTS: i32 = 16;
/// How often alerts still firing are looked at for repeats.
const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// Sends notifications for this node until `shutdown`.
pub fn spawn(
    store: Store,
    alerts: Alerts,
    senders: Senders,
    public_url: Arc<str>,
    leader: Leadership,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let notifier = Notifier {
        store,
        alerts,
        public_url,
        senders,
        shutdown: shutdown.clone(),
    };
    // Tracked, so shutdown waits for sends in flight to be recorded: a notification cut off
    // mid-send would wait out its lease before anyone sent it again.
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut repeats = tokio::time::interval(REPEAT_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = notifier.alerts.committed.notified() => {}
                _ = tick.tick() => {}
                // Repeats are queued by one node: two would send each twice.
                _ = repeats.tick(), if leader.is_leading() => {
                    if let Err(e) = notifier.repeat().await {
                        tracing::warn!(error = %e, "repeating notifications failed");
                    }
                }
            }
            if let Err(e) = notifier.step().await {
                tracing::warn!(error = %e, "notifying failed; trying again");
            }
        }
    });
}

/// Where notifications leave the server: HTTP for webhooks and Slack, SMTP for email.
#[derive(Clone)]
pub struct Senders {
    http: reqwest::Client,
    smtp: Option<Smtp>,
}

#[derive(Clone)]
struct Smtp {
    relay: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Senders {
    pub fn new(config: &Config) -> Result<Self, RunError> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("watchroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RunError::Refused(format!("the HTTP client: {e}")))?;
        let smtp = match &config.smtp_url {
            None => None,
            Some(url) => Some(Smtp {
                relay: AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| RunError::Refused(format!("--smtp-url: {e}")))?
                    .timeout(Some(SEND_TIMEOUT))
                    .build(),
                from: config
                    .smtp_from
                    .parse()
                    .map_err(|e| RunError::Refused(format!("--smtp-from: {e}")))?,
            }),
        };
        Ok(Self { http, smtp })
    }

    /// Sends `body` to `target`; the error says why it was not taken.
    pub async fn send(&self, target: &Target, body: &Value) -> std::result::Result<(), String> {
        match target {
            Target::Webhook { url } | Target::Slack { url } => self.post(url, body).await,
            Target::Email { to } => self.mail(to, body).await,
        }
    }

    /// A receiver answering other than 2xx has not taken it.
    async fn post(&self, url: &str, body: &Value) -> std::result::Result<(), String> {
        let answer = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("the receiver answered {status}")),
        }
    }

    async fn mail(&self, to: &[String], body: &Value) -> std::result::Result<(), String> {
        let Some(smtp) = &self.smtp else {
            return Err("no SMTP relay is configured (WATCHROOM_SMTP_URL)".into());
        };
        let mut message = Message::builder()
            .from(smtp.from.clone())
            .subject(body["subject"].as_str().unwrap_or("Watchroom alert"));
        for address in to {
            message = message.to(address.parse().map_err(|e| format!("{address}: {e}"))?);
        }
        let message = message
            .header(ContentType::TEXT_PLAIN)
            .body(body["text"].as_str().unwrap_or_default().to_owned())
            .map_err(|e| e.to_string())?;
        smtp.relay
            .send(message)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

struct Notifier {
    store: Store,
    alerts: Alerts,
    public_url: Arc<str>,
    senders: Senders,
    shutdown: CancellationToken,
}

impl Notifier {
    /// Routes what was stored since last time, then sends what is due.
    async fn step(&self) -> Result<()> {
        let channels = self.store.alert_channels().await?;
        while self
            .store
            .route_alerts(ROUTE_BATCH, |transitions| {
                route(&channels, &transitions, &self.public_url)
            })
            .await?
            == ROUTE_BATCH as usize
        {}
        while !self.shutdown.is_cancelled() {
            let lease = TimeDelta::from_std(SEND_TIMEOUT * 3).expect("short");
            let due = self.store.claim_notifications(SEND_BATCH, lease).await?;
            if due.is_empty() {
                break;
            }
            let sent = futures::future::join_all(
                due.iter()
                    .map(|n| async move { (n, self.senders.send(&n.target, &n.body).await) }),
            )
            .await;
            for (n, outcome) in sent {
                let retry = (n.attempts + 1 < MAX_ATTEMPTS).then(|| backoff(n.attempts));
                let error = outcome.err();
                if let Some(error) = &error {
                    tracing::info!(id = n.id, %error, "a notification was not accepted");
                }
                self.store
                    .notification_attempted(n.id, error.as_deref(), retry)
                    .await?;
            }
        }
        Ok(())
    }

    /// Queues again what keeps firing, unacknowledged and unsilenced, past each channel's repeat
    /// interval since it was last sent there.
    async fn repeat(&self) -> Result<()> {
        let channels = self.store.alert_channels().await?;
        if channels.iter().all(|c| c.channel.repeat.is_none()) {
            return Ok(());
        }
        let instances = self.alerts.instances().await?;
        if !instances.iter().any(Instance::is_open) {
            return Ok(());
        }
        let ids: Vec<String> = instances.iter().map(|i| instance_id(&i.key)).collect();
        let last = self.store.last_notified(&ids).await?;
        let due = repeats(&channels, &instances, &last, Utc::now(), &self.public_url);
        if !due.is_empty() {
            self.store.queue_alert_notifications(&due).await?;
        }
        Ok(())
    }
}

/// The repeats due at `now`: of each instance in trouble, unacknowledged and unsilenced, to each
/// channel with a repeat interval that was sent it before, last that interval or longer ago.
/// `last` holds when each instance was last sent to each channel.
fn repeats(
    channels: &[StoredChannel],
    open: &[Instance],
    last: &[(i64, String, DateTime<Utc>)],
    now: DateTime<Utc>,
    public_url: &str,
) -> Vec<Notification> {
    let mut due = Vec::new();
    for instance in open {
        if !instance.state.is_trouble() || instance.ack.is_some() || instance.silenced {
            continue;
        }
        let id = instance_id(&instance.key);
        let t = Transition {
            key: instance.key.clone(),
            name: instance.name.clone(),
            state: instance.state,
            previous: instance.state,
            value: instance.value,
            threshold: instance.threshold,
            severity: instance.severity,
            summary: instance.summary.clone(),
            since: instance.since,
            began: None,
            rule_labels: instance.rule_labels.clone(),
            silenced: false,
        };
        for StoredChannel {
            id: channel,
            channel: c,
        } in channels
        {
            let Some(repeat) = c.repeat else { continue };
            let sent = last
                .iter()
                .find(|(ch, i, _)| ch == channel && *i == id)
                .map(|(.., at)| *at);
            if sent.is_some_and(|at| now - at >= repeat.chrono()) && c.takes(&t) {
                due.push(notification(*channel, c, &t, public_url));
            }
        }
    }
    due
}

/// The notifications `transitions` make: firing, no data and resolved ones, unsilenced, to every
/// channel that takes them.
fn route(
    channels: &[StoredChannel],
    transitions: &[Transition],
    public_url: &str,
) -> Vec<Notification> {
    let mut out = Vec::new();
    for t in transitions {
        let told = matches!(t.state, State::Firing | State::NoData)
            || (t.state == State::Resolved && t.previous.is_trouble());
        if !told || t.silenced {
            continue;
        }
        for StoredChannel { id, channel } in channels {
            if channel.takes(t) {
                out.push(notification(*id, channel, t, public_url));
            }
        }
    }
    out
}

fn notification(id: i64, channel: &Channel, t: &Transition, public_url: &str) -> Notification {
    Notification {
        channel: id,
        instance: instance_id(&t.key),
        summary: headline(t),
        body: body(channel, t, public_url),
    }
}

/// An instance's name in the outbox, and the fingerprint receivers group by.
fn instance_id(key: &Key) -> String {
    serde_json::to_string(key).expect("keys serialise")
}

pub fn body(channel: &Channel, t: &Transition, public_url: &str) -> Value {
    match channel.target {
        Target::Webhook { .. } => alertmanager(&channel.name, t, public_url),
        Target::Slack { .. } => slack(t, public_url),
        Target::Email { .. } => email(t, public_url),
    }
}

/// A plain-text mail: the headline as subject, the details and a link in the text.
fn email(t: &Transition, public_url: &str) -> Value {
    let labels: Vec<String> = t
        .key
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let text = format!(
        "{}\n\nstate: {}\nsource: {} {}\nseverity: {}\nvalue: {}\nthreshold: {}\nsince: {}\n\n{public_url}/alerts\n",
        t.summary,
        t.state,
        t.key.source,
        labels.join(" "),
        t.severity.as_str(),
        t.value.map_or("no data".into(), format_value),
        format_value(t.threshold),
        rfc3339(t.since),
    );
    json!({"subject": headline(t), "text": text})
}

/// Alertmanager's webhook payload, version 4: one group of one alert.
fn alertmanager(receiver: &str, t: &Transition, public_url: &str) -> Value {
    let status = if t.state == State::Resolved {
        "resolved"
    } else {
        "firing"
    };
    let mut labels = serde_json::Map::new();
    for (k, v) in t.rule_labels.iter().chain(&t.key.labels) {
        labels.insert(k.clone(), v.clone().into());
    }
    labels.insert("alertname".into(), t.name.clone().into());
    labels.insert("source".into(), t.key.source.clone().into());
    labels.insert("severity".into(), t.severity.as_str().into());
    let annotations = json!({
        "summary": t.summary,
        "value": t.value.map(format_value),
        "state": t.state,
    });
    let never = "0001-01-01T00:00:00Z";
    let fingerprint = hex::encode(&Sha256::digest(instance_id(&t.key))[..8]);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={:?}}}", t.name),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": t.name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": public_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(if status == "resolved" { t.began.unwrap_or(t.since) } else { t.since }),
            "endsAt": if status == "resolved" { rfc3339(t.since) } else { never.into() },
            "generatorURL": format!("{public_url}/alerts"),
            "fingerprint": fingerprint,
        }],
    })
}

/// Text as Slack reads it: `<`, `>` and `&` would otherwise make links and mentions.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` for notifications, `blocks` for the channel.
fn slack(t: &Transition, public_url: &str) -> Value {
    let icon = match t.state {
        State::Resolved => ":white_check_mark:",
        _ => ":rotating_light:",
    };
    let details = format!(
        "source `{}` · severity {} · value {} · threshold {} · <{public_url}/alerts|Watchroom>",
        slack_escape(&t.key.source),
        t.severity.as_str(),
        t.value.map_or("no data".into(), format_value),
        format_value(t.threshold),
    );
    let (name, summary) = (slack_escape(&t.name), slack_escape(&t.summary));
    json!({
        "text": slack_escape(&headline(t)),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn",
                "text": format!("{icon} *{} {name}*\n{summary}", t.state.as_str().to_uppercase())}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": details}]},
        ],
    })
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn backoff(attempts: i32) -> TimeDelta {
    let wait = FIRST_BACKOFF
        .saturating_mul(1 << attempts.clamp(0, 16))
        .min(MAX_BACKOFF);
    TimeDelta::from_std(wait).expect("backoffs are short")
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::alerts::Severity;

    fn transition(state: State, previous: State) -> Transition {
        Transition {
            key: Key {
                rule: 7,
                source: "web-1".into(),
                labels: [("mount".to_owned(), "/".to_owned())].into(),
            },
            name: "disk full".into(),
            state,
            previous,
            value: Some(97.5),
            threshold: 95.0,
            severity: Severity::Critical,
            summary: "web-1 / at 97.5%".into(),
            since: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            began: Some(DateTime::from_timestamp(1_799_999_000, 0).unwrap()),
            rule_labels: [("team".to_owned(), "ops".to_owned())].into(),
            silenced: false,
        }
    }

    fn channel(json: Value) -> StoredChannel {
        StoredChannel {
            id: 1,
            channel: Channel::read(&json).unwrap(),
        }
    }

    #[test]
    fn a_webhook_body_is_alertmanagers_version_4() {
        let body = alertmanager("ops", &transition(State::Firing, State::Normal), "http://w");
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "ops");
        let alert = &body["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "disk full");
        assert_eq!(alert["labels"]["mount"], "/");
        assert_eq!(alert["labels"]["team"], "ops");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["annotations"]["summary"], "web-1 / at 97.5%");
        assert_eq!(alert["startsAt"], "2027-01-15T08:00:00.000Z");
        assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16);
        let resolved = alertmanager(
            "ops",
            &transition(State::Resolved, State::Firing),
            "http://w",
        );
        assert_eq!(resolved["alerts"][0]["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2027-01-15T08:00:00.000Z");
        // When the firing it ends began.
        assert_eq!(
            resolved["alerts"][0]["startsAt"],
            "2027-01-15T07:43:20.000Z"
        );
    }

    #[test]
    fn routing_sends_trouble_and_its_end_to_the_channels_that_take_them() {
        let all = channel(json!({"name": "all", "kind": "webhook", "url": "http://a"}));
        let warnings = channel(
            json!({"name": "w", "kind": "slack", "url": "http://b", "severities": ["warning"]}),
        );
        let quiet = channel(
            json!({"name": "q", "kind": "webhook", "url": "http://c", "send_resolved": false}),
        );
        let channels = [all, warnings, quiet];
        let sent = |t: Transition| route(&channels, &[t], "http://w").len();
        assert_eq!(sent(transition(State::Firing, State::Pending)), 2);
        assert_eq!(sent(transition(State::Resolved, State::Firing)), 1);
        assert_eq!(sent(transition(State::Pending, State::Normal)), 0);
        assert_eq!(sent(transition(State::Normal, State::Pending)), 0);
        let mut silenced = transition(State::Firing, State::Normal);
        silenced.silenced = true;
        assert_eq!(sent(silenced), 0);
        let by_label = channel(
            json!({"name": "l", "kind": "webhook", "url": "http://d", "matchers": {"labels": {"team": "db"}}}),
        );
        assert!(route(&[by_label], &[transition(State::Firing, State::Normal)], "").is_empty());
    }

    #[test]
    fn a_slack_message_has_text_and_blocks_and_makes_no_links_of_its_own_text() {
        let body = slack(&transition(State::Firing, State::Normal), "http://w");
        assert_eq!(body["text"], "FIRING disk full: web-1 / at 97.5%");
        assert_eq!(body["blocks"][0]["type"], "section");
        let mut sneaky = transition(State::Firing, State::Normal);
        sneaky.summary = "<https://evil|click> & <!channel>".into();
        let body = slack(&sneaky, "http://w");
        let text = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            text.ends_with("&lt;https://evil|click&gt; &amp; &lt;!channel&gt;"),
            "{text}"
        );
    }

    #[test]
    fn an_alert_still_firing_is_repeated_where_it_was_sent_once_its_interval_is_over() {
        let t = transition(State::Firing, State::Normal);
        let mut firing = Instance {
            key: t.key.clone(),
            name: t.name.clone(),
            state: State::Firing,
            value: t.value,
            threshold: t.threshold,
            since: t.since,
            severity: t.severity,
            summary: t.summary.clone(),
            rule_labels: t.rule_labels.clone(),
            ack: None,
            silenced: false,
        };
        let mut repeating =
            channel(json!({"name": "r", "kind": "webhook", "url": "http://a", "repeat": "5m"}));
        repeating.id = 2;
        let once = channel(json!({"name": "o", "kind": "webhook", "url": "http://b"}));
        let channels = [once, repeating];
        let now = t.since + TimeDelta::hours(1);
        let sent = |ago: i64| {
            vec![
                (1, instance_id(&t.key), now - TimeDelta::minutes(ago)),
                (2, instance_id(&t.key), now - TimeDelta::minutes(ago)),
            ]
        };
        let due = |instance: &Instance, last: &[(i64, String, DateTime<Utc>)]| {
            repeats(
                &channels,
                std::slice::from_ref(instance),
                last,
                now,
                "http://w",
            )
        };
        let repeated = due(&firing, &sent(6));
        assert_eq!(repeated.len(), 1);
        assert_eq!(repeated[0].channel, 2);
        assert!(due(&firing, &sent(4)).is_empty(), "not yet");
        assert!(due(&firing, &[]).is_empty(), "never sent there");
        firing.silenced = true;
        assert!(due(&firing, &sent(6)).is_empty(), "silenced");
        firing.silenced = false;
        firing.ack = Some(app::alerts::Ack {
            key: t.key.clone(),
            since: t.since,
            by: "ann".into(),
            at: now,
            comment: String::new(),
        });
        assert!(due(&firing, &sent(6)).is_empty(), "acknowledged");
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(backoff(0), TimeDelta::seconds(2));
        assert_eq!(backoff(3), TimeDelta::seconds(16));
        assert_eq!(backoff(30), TimeDelta::seconds(600));
    }
}
