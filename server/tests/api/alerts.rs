//! Alerts against a real server, Postgres and sockets: rules crossing thresholds, transitions
//! stored and pushed, restarts, acknowledgements, silences, and channels against receivers the
//! tests run.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use app::{
    alerts::{AlertEvent, Instance, News, Severity, State, Transition},
    auth::Role,
    pages::{HeaderData, ReadHeader},
    protocol::{RoomName, ServerFrame},
};
use axum::{Json, Router, extract::State as Shared, http::StatusCode, routing::post};
use leptos::server_fn::ServerFn;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{
    Client, EmptyDatabase, TestApp, http_with, start, start_with, text_of, unique_room,
};

const PATIENCE: Duration = Duration::from_secs(20);

fn alerts_room() -> RoomName {
    RoomName::parse("alerts").unwrap()
}

/// A source no other test sends, so only this test's rules see it.
pub(crate) fn unique_source(label: &str) -> String {
    unique_room(label).as_str().to_owned()
}

fn url(app: &TestApp, path: &str) -> String {
    format!("http://{}{path}", app.addr)
}

/// Creates a rule for `source` (series `cpu`, `> 90` unless `extra` says otherwise); its id.
pub(crate) async fn create_rule(app: &TestApp, source: &str, extra: Value) -> i64 {
    let mut rule = json!({"name": "cpu hot", "source": source, "series": "cpu", "op": ">",
        "threshold": 90, "severity": "critical", "summary": "{{source}} cpu {{value}}%"});
    for (k, v) in extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    let response = app
        .http()
        .post(url(app, "/api/alerts/rules"))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

pub(crate) async fn sample(app: &TestApp, source: &str, value: f64) {
    let body = json!([{"source": source, "series": "cpu", "value": value}]);
    let response = app
        .http()
        .post(url(app, "/api/metrics"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

pub(crate) async fn watch_alerts(app: &TestApp) -> Client {
    let mut client = Client::connect(app).await;
    client.subscribe(&alerts_room(), None).await;
    client
}

/// The next event of room `alerts` about rule `rule`.
pub(crate) async fn next_news(client: &mut Client, rule: i64) -> News {
    loop {
        let ServerFrame::Event(event) = client.next().await else {
            continue;
        };
        if event.room != alerts_room() {
            continue;
        }
        let news = serde_json::from_value::<AlertEvent>(event.data)
            .unwrap()
            .news;
        let about = match &news {
            News::Transition(t) => t.key.rule,
            News::Ack(a) => a.key.rule,
            News::Silence(_) | News::Unsilence { .. } => rule,
        };
        if about == rule {
            return news;
        }
    }
}

/// A critical rule on a source of its own, firing (`cpu` at 97 over 90): the source, the rule
/// and a client watching room `alerts` that saw it fire.
async fn fire(app: &TestApp, label: &str) -> (String, i64, Client) {
    let source = unique_source(label);
    let rule = create_rule(app, &source, json!({})).await;
    let mut watcher = watch_alerts(app).await;
    sample(app, &source, 97.0).await;
    assert_eq!(
        next_transition(&mut watcher, rule).await.state,
        State::Firing
    );
    (source, rule, watcher)
}

pub(crate) async fn next_transition(client: &mut Client, rule: i64) -> Transition {
    match next_news(client, rule).await {
        News::Transition(t) => t,
        other => panic!("expected a transition, got {other:?}"),
    }
}

/// What the page's header shows whoever `http` signs in as.
async fn read_header(app: &TestApp, http: &reqwest::Client) -> reqwest::Response {
    http.post(url(app, ReadHeader::PATH))
        .header("accept", "application/json")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

async fn instances(app: &TestApp, rule: i64) -> Vec<Instance> {
    let all: Vec<Instance> = app.get(url(app, "/api/alerts")).await.json().await.unwrap();
    all.into_iter().filter(|i| i.key.rule == rule).collect()
}

/// Stored transitions of `rule`, oldest first.
pub(crate) async fn stored_transitions(app: &TestApp, rule: i64) -> Vec<Transition> {
    let events: Vec<Value> = app
        .get(url(app, "/api/rooms/alerts/events?limit=1000"))
        .await
        .json()
        .await
        .unwrap();
    events
        .into_iter()
        .filter_map(|e| serde_json::from_value::<AlertEvent>(e["data"].clone()).ok())
        .filter_map(|e| match e.news {
            News::Transition(t) if t.key.rule == rule => Some(t),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_sample_over_the_threshold_fires_an_alert_stored_and_pushed_and_one_below_resolves_it() {
    let app = start().await;
    let source = unique_source("hot");
    let rule = create_rule(&app, &source, json!({})).await;
    let mut watcher = watch_alerts(&app).await;

    sample(&app, &source, 50.0).await;
    sample(&app, &source, 95.5).await;
    let fired = next_transition(&mut watcher, rule).await;
    assert_eq!(
        (fired.state, fired.previous),
        (State::Firing, State::Normal)
    );
    assert_eq!(
        (fired.key.source.as_str(), fired.value),
        (source.as_str(), Some(95.5))
    );
    assert_eq!(fired.summary, format!("{source} cpu 95.5%"));
    let now = instances(&app, rule).await;
    assert_eq!(now.len(), 1);
    assert_eq!(
        (now[0].state, now[0].value, now[0].since),
        (State::Firing, Some(95.5), fired.since)
    );

    sample(&app, &source, 12.0).await;
    let resolved = next_transition(&mut watcher, rule).await;
    assert_eq!(
        (resolved.state, resolved.previous),
        (State::Resolved, State::Firing)
    );
    let stored: Vec<State> = stored_transitions(&app, rule)
        .await
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(stored, [State::Firing, State::Resolved]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_page_is_rendered_with_the_count_of_what_fires_and_where_its_feed_follows_from() {
    let app = start().await;
    let (source, ..) = fire(&app, "badge").await;

    let header = |http: reqwest::Client| {
        let app = &app;
        async move {
            let response = read_header(app, &http).await;
            assert_eq!(response.status(), 200);
            response.json::<HeaderData>().await.unwrap()
        }
    };
    let summary = header(app.http().clone())
        .await
        .alerts
        .unwrap()
        .expect("an admin reads alerts");
    // Other tests' alerts may fire meanwhile: this one is critical, and among them.
    assert!(summary.firing.count >= 1);
    assert_eq!(summary.firing.worst, Some(Severity::Critical));
    assert_eq!(summary.head.room, alerts_room());
    assert!(summary.head.head >= 1 && summary.head.events.is_empty());
    let page = app.get(url(&app, "/")).await.text().await.unwrap();
    assert!(page.contains(r#"class="alert-badge critical""#), "{page}");
    assert!(page.contains(" firing"), "{page}");

    // Someone who may not read room `alerts` is shown none of it.
    let elsewhere = app.token_for(Role::Viewer, &[&source], &["read:*"]).await;
    let theirs = header(http_with(&elsewhere)).await;
    assert!(matches!(theirs.alerts, Ok(None)));
    assert_eq!(theirs.role, Role::Viewer);
    let page = text_of(&http_with(&elsewhere), url(&app, "/")).await;
    assert!(!page.contains("alert-badge"), "{page}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_header_names_who_is_signed_in_and_says_alerts_are_unavailable_when_they_cannot_be_read()
 {
    let database = EmptyDatabase::create("header_unavailable").await;
    let app = start_with(|config| {
        config.database_url = Some(database.url.clone());
        config.query_timeout = Duration::from_millis(200);
    })
    .await;
    // Where room `alerts` stands cannot be read behind the lock.
    let session = database.lock("rooms").await;
    let response = read_header(&app, app.http()).await;
    assert_eq!(response.status(), 200, "the rest of the header stands");
    let header: HeaderData = response.json().await.unwrap();
    assert!(header.name.is_some());
    assert_eq!(
        header.alerts.unwrap_err(),
        app::error::AppError::Unavailable
    );

    session.rollback().await.unwrap();
    let header: HeaderData = read_header(&app, app.http()).await.json().await.unwrap();
    assert!(
        matches!(header.alerts, Ok(Some(_))),
        "read again once it can be"
    );
    app.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn a_rule_with_a_pending_period_is_pending_first_and_fires_when_it_is_over() {
    let app = start().await;
    let source = unique_source("pending");
    let rule = create_rule(&app, &source, json!({"for": "1s"})).await;
    let mut watcher = watch_alerts(&app).await;
    sample(&app, &source, 99.0).await;
    assert_eq!(
        next_transition(&mut watcher, rule).await.state,
        State::Pending
    );
    // No further sample: the tick ends the pending period.
    let fired = next_transition(&mut watcher, rule).await;
    assert_eq!(
        (fired.state, fired.previous),
        (State::Firing, State::Pending)
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn rules_are_created_read_replaced_and_deleted_and_a_bad_one_is_refused_naming_its_field() {
    let app = start().await;
    let source = unique_source("crud");
    let id = create_rule(&app, &source, json!({"window": "5m", "reducer": "avg"})).await;
    let read: Value = app
        .get(url(&app, &format!("/api/alerts/rules/{id}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (read["id"].as_i64(), &read["window"], &read["reducer"]),
        (Some(id), &json!("5m"), &json!("avg"))
    );

    let mut changed = read.clone();
    changed["threshold"] = json!(75);
    let put = app
        .http()
        .put(url(&app, &format!("/api/alerts/rules/{id}")))
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let listed: Vec<Value> = app
        .get(url(&app, "/api/alerts/rules"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.iter().find(|r| r["id"] == id).unwrap()["threshold"],
        75.0
    );

    for (field, bad) in [
        ("threshold", json!("ninety")),
        ("op", json!("~")),
        ("window", json!("0s")),
    ] {
        let mut rule = read.clone();
        rule[field] = bad;
        let response = app
            .http()
            .post(url(&app, "/api/alerts/rules"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{field}");
        let message = response.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with(&format!("{field}:")), "{message}");
    }

    // An editor narrowed to some rooms could reach every source through a rule: refused.
    let narrowed = http_with(
        &app.token_for(Role::Editor, &["team.*", "alerts"], &["admin"])
            .await,
    );
    let refused = narrowed
        .post(url(&app, "/api/alerts/rules"))
        .json(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let viewer = http_with(&app.token_for(Role::Viewer, &["*"], &["read:*"]).await);
    let refused = viewer
        .post(url(&app, "/api/alerts/rules"))
        .json(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        viewer
            .get(url(&app, "/api/alerts/rules"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // What Postgres cannot keep is the sender's mistake (400), not the server's failure (503).
    let silence = json!({"matchers": {"labels": {"team": "a\u{0}"}}, "duration": "1h"});
    let silences = url(&app, "/api/alerts/silences");
    let refused = app
        .http()
        .post(silences)
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let gone = app
        .http()
        .delete(url(&app, &format!("/api/alerts/rules/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        app.get(url(&app, &format!("/api/alerts/rules/{id}")))
            .await
            .status(),
        404
    );
    let again = app
        .http()
        .put(url(&app, &format!("/api/alerts/rules/{id}")))
        .json(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_restart_while_firing_neither_fires_again_nor_forgets_its_acknowledgement_or_to_resolve()
{
    let app = start().await;
    let (source, rule, _) = fire(&app, "restart").await;
    let ack = json!({"rule": rule, "source": source, "labels": {}, "comment": "mine"});
    let acked = app
        .http()
        .post(url(&app, "/api/alerts/ack"))
        .json(&ack)
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 201);
    app.stop().await.unwrap();

    let app = start().await;
    let now = instances(&app, rule).await;
    assert_eq!(
        now.len(),
        1,
        "the firing instance is known after the restart"
    );
    assert_eq!(now[0].state, State::Firing);
    let ack = now[0].ack.as_ref().map(|a| a.comment.as_str());
    assert_eq!(ack, Some("mine"), "and so is its acknowledgement");
    let mut watcher = watch_alerts(&app).await;
    sample(&app, &source, 98.0).await;
    sample(&app, &source, 3.0).await;
    let next = next_transition(&mut watcher, rule).await;
    assert_eq!(
        (next.state, next.previous),
        (State::Resolved, State::Firing)
    );
    let stored: Vec<State> = stored_transitions(&app, rule)
        .await
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(
        stored,
        [State::Firing, State::Resolved],
        "fired once, resolved once"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_acknowledgement_and_a_silence_reach_every_watcher_and_a_silenced_alert_notifies_no_one()
{
    let receiver = Receiver::start(0).await;
    let app = start().await;
    let source = unique_source("handled");
    let rule = create_rule(&app, &source, json!({})).await;
    add_channel(&app, "webhook", &receiver, &source).await;
    let (mut one, mut two) = (watch_alerts(&app).await, watch_alerts(&app).await);

    sample(&app, &source, 95.0).await;
    next_transition(&mut one, rule).await;
    next_transition(&mut two, rule).await;
    receiver.wait_for(1).await;

    let ack = json!({"rule": rule, "source": source, "labels": {}, "comment": "on it"});
    let response = app
        .http()
        .post(url(&app, "/api/alerts/ack"))
        .json(&ack)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    for watcher in [&mut one, &mut two] {
        let News::Ack(ack) = next_news(watcher, rule).await else {
            panic!("expected the ack")
        };
        assert_eq!(ack.comment, "on it");
    }
    assert_eq!(
        instances(&app, rule).await[0].ack.as_ref().unwrap().comment,
        "on it"
    );

    let silence =
        json!({"matchers": {"source": source}, "duration": "1h", "comment": "maintenance"});
    let response = app
        .http()
        .post(url(&app, "/api/alerts/silences"))
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let silence: Value = response.json().await.unwrap();
    for watcher in [&mut one, &mut two] {
        let News::Silence(s) = next_news(watcher, rule).await else {
            panic!("expected the silence")
        };
        assert_eq!(s.comment, "maintenance");
    }
    // Still evaluated and stored, marked silenced, and sent nowhere.
    sample(&app, &source, 10.0).await;
    let resolved = next_transition(&mut one, rule).await;
    assert_eq!((resolved.state, resolved.silenced), (State::Resolved, true));
    sample(&app, &source, 99.0).await;
    assert!(next_transition(&mut one, rule).await.silenced);

    let end = url(&app, &format!("/api/alerts/silences/{}", silence["id"]));
    assert_eq!(app.http().delete(&end).send().await.unwrap().status(), 204);
    assert!(matches!(
        next_news(&mut one, rule).await,
        News::Unsilence { .. }
    ));
    sample(&app, &source, 10.0).await;
    assert!(!next_transition(&mut one, rule).await.silenced);
    // Routed in order: once the resolve is in, the silenced two were passed over.
    let bodies = receiver.wait_for(2).await;
    let states: Vec<&Value> = bodies.iter().map(|b| &b["status"]).collect();
    assert_eq!(states, [&json!("firing"), &json!("resolved")]);
    assert_eq!(app.http().delete(&end).send().await.unwrap().status(), 404);
    app.stop().await.unwrap();
}

/// Makes the channel `channel` describes; its id.
async fn create_channel(app: &TestApp, channel: &Value) -> i64 {
    let response = app
        .http()
        .post(url(app, "/api/alerts/channels"))
        .json(channel)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// A channel of `kind` to `receiver` for the alerts of `source`.
async fn add_channel(app: &TestApp, kind: &str, receiver: &Receiver, source: &str) -> i64 {
    let channel = json!({"name": unique_source("channel"), "kind": kind, "url": receiver.url(),
        "matchers": {"source": source}});
    create_channel(app, &channel).await
}

/// What the channel's "send test" answered.
async fn test_channel(app: &TestApp, channel: i64) -> Value {
    let test = url(app, &format!("/api/alerts/channels/{channel}/test"));
    app.http()
        .post(test)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_webhook_channel_receives_alertmanager_json_when_an_alert_fires_and_resolves() {
    let receiver = Receiver::start(0).await;
    let app = start().await;
    let source = unique_source("webhook");
    create_rule(&app, &source, json!({"labels": {"team": "ops"}})).await;
    add_channel(&app, "webhook", &receiver, &source).await;
    sample(&app, &source, 93.0).await;
    let fired = receiver.wait_for(1).await.remove(0);
    assert_eq!(
        (&fired["version"], &fired["status"]),
        (&json!("4"), &json!("firing"))
    );
    let alert = &fired["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "cpu hot");
    assert_eq!(alert["labels"]["source"], json!(source));
    assert_eq!(alert["labels"]["team"], "ops");
    assert_eq!(alert["annotations"]["summary"], format!("{source} cpu 93%"));
    assert!(alert["generatorURL"].as_str().unwrap().ends_with("/alerts"));

    sample(&app, &source, 5.0).await;
    let resolved = receiver.wait_for(2).await.remove(1);
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"]);
    assert_eq!(resolved["alerts"][0]["startsAt"], alert["startsAt"]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_slack_channel_gets_text_and_blocks_and_send_test_reports_how_the_receiver_took_it() {
    let receiver = Receiver::start(0).await;
    let app = start().await;
    let source = unique_source("slack");
    let channel = add_channel(&app, "slack", &receiver, &source).await;
    let tested = test_channel(&app, channel).await;
    assert_eq!(tested, json!({"sent": true}));
    let test = receiver.wait_for(1).await.remove(0);
    assert!(
        test["text"].as_str().unwrap().contains("test notification"),
        "{test}"
    );
    assert_eq!(test["blocks"][0]["type"], "section");

    let down = Receiver::unreachable().await;
    let broken = json!({"name": unique_source("broken"), "kind": "slack", "url": down});
    let tested = test_channel(&app, create_channel(&app, &broken).await).await;
    assert_eq!(tested["sent"], false);
    assert!(tested["error"].as_str().is_some_and(|e| !e.is_empty()));

    // Mail needs a relay, and this server was given none: the test says so.
    let mail = json!({"name": unique_source("mail"), "kind": "email", "to": ["ops@example.com"]});
    let tested = test_channel(&app, create_channel(&app, &mail).await).await;
    assert_eq!(tested["sent"], false);
    assert!(
        tested["error"]
            .as_str()
            .unwrap()
            .contains("WATCHROOM_SMTP_URL"),
        "{tested}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_email_channel_mails_a_firing_alert_through_the_smtp_relay() {
    let relay = Relay::start().await;
    // A database of its own: other tests' servers, given no relay, would take its mail from the
    // outbox and fail it.
    let database = EmptyDatabase::create("mail").await;
    let app = start_with(|config| {
        config.database_url = Some(database.url.clone());
        config.smtp_url = Some(format!("smtp://{}", relay.addr));
    })
    .await;
    let source = unique_source("mail");
    create_rule(&app, &source, json!({})).await;
    let channel = json!({"name": "mail", "kind": "email", "to": ["ops@example.com"]});
    create_channel(&app, &channel).await;
    sample(&app, &source, 96.0).await;
    let mail = relay.wait_for_mail().await;
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(mail.contains("Subject: "), "{mail}");
    assert!(mail.contains(&format!("{source} cpu 96%\n")), "{mail}");
    assert!(mail.contains("severity: critical"), "{mail}");
    app.stop().await.unwrap();
    database.drop().await;
}

/// A mail relay standing in for the operators' own: it speaks just enough SMTP to take mail.
struct Relay {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Self {
            addr: listener.local_addr().unwrap(),
            mails: Arc::default(),
        };
        let mails = relay.mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(converse(stream, mails.clone()));
            }
        });
        relay
    }

    /// The first mail taken, its folded header lines unfolded.
    async fn wait_for_mail(&self) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(mail) = self.mails.lock().unwrap().first() {
                return mail.replace("\n ", " ");
            }
            assert!(tokio::time::Instant::now() < deadline, "a mail in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn converse(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 relay ready\r\n").await?;
    let mut data: Option<String> = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(mail) = &mut data {
            if line == "." {
                mails.lock().unwrap().push(data.take().unwrap());
                write.write_all(b"250 queued\r\n").await?;
            } else {
                mail.push_str(&line);
                mail.push('\n');
            }
            continue;
        }
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 relay\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
            "DATA" => {
                data = Some(String::new());
                b"354 end with a dot\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 not here\r\n",
        };
        write.write_all(reply).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_notification_is_retried_until_taken_and_its_log_shows_the_attempts() {
    let receiver = Receiver::start(1).await;
    // A database of its own: other tests' servers would otherwise share its outbox, and their
    // attempts would count among the ones this test counts.
    let database = EmptyDatabase::create("retry").await;
    let app = start_with(|config| config.database_url = Some(database.url.clone())).await;
    let source = unique_source("retry");
    create_rule(&app, &source, json!({})).await;
    let channel = add_channel(&app, "webhook", &receiver, &source).await;
    sample(&app, &source, 91.0).await;
    assert_eq!(receiver.wait_for(1).await[0]["status"], "firing");
    assert_eq!(receiver.refused(), 1);
    let log: Vec<Value> = app
        .get(url(
            &app,
            &format!("/api/alerts/channels/{channel}/deliveries"),
        ))
        .await
        .json()
        .await
        .unwrap();
    let delivery = log
        .iter()
        .find(|d| d["status"] == "sent")
        .expect("a sent delivery");
    assert_eq!(delivery["attempts"], 2);
    assert!(delivery["last_error"].as_str().unwrap().contains("503"));
    app.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn a_notification_queued_while_its_receiver_is_down_is_sent_after_a_server_restart() {
    let address = Receiver::unreachable().await;
    let app = start().await;
    let source = unique_source("outbox");
    let rule = create_rule(&app, &source, json!({})).await;
    let channel = json!({"name": unique_source("later"), "kind": "webhook", "url": address,
        "matchers": {"source": source}});
    create_channel(&app, &channel).await;
    let mut watcher = watch_alerts(&app).await;
    sample(&app, &source, 99.0).await;
    next_transition(&mut watcher, rule).await;
    app.stop().await.unwrap();

    let addr: SocketAddr = address[7..].trim_end_matches("/hook").parse().unwrap();
    let receiver = Receiver::start_on(addr, 0).await;
    let app = start().await;
    let body = receiver.wait_for(1).await.remove(0);
    assert_eq!(body["alerts"][0]["labels"]["source"], json!(source));
    app.stop().await.unwrap();
}

/// An HTTP receiver standing in for Alertmanager's and Slack's: it keeps every body it takes,
/// after refusing the first `refuse` requests with 503.
struct Receiver {
    addr: SocketAddr,
    taken: Arc<Mutex<Vec<Value>>>,
    refused: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Inbox {
    taken: Arc<Mutex<Vec<Value>>>,
    refused: Arc<AtomicUsize>,
    refuse: usize,
}

async fn take(Shared(inbox): Shared<Inbox>, Json(body): Json<Value>) -> StatusCode {
    if inbox.refused.load(Ordering::SeqCst) < inbox.refuse {
        inbox.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    inbox.taken.lock().unwrap().push(body);
    StatusCode::OK
}

impl Receiver {
    async fn start(refuse: usize) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), refuse).await
    }

    async fn start_on(addr: SocketAddr, refuse: usize) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let inbox = Inbox {
            taken: Arc::default(),
            refused: Arc::default(),
            refuse,
        };
        let receiver = Self {
            addr: listener.local_addr().unwrap(),
            taken: inbox.taken.clone(),
            refused: inbox.refused.clone(),
        };
        let app = Router::new().route("/hook", post(take)).with_state(inbox);
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    /// The address of a receiver that is not running (yet).
    async fn unreachable() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` bodies were taken (a little longer, to catch one too many).
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.taken.lock().unwrap().len() >= n {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.taken.lock().unwrap().clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} notifications in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
