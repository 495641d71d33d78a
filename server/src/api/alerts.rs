//! Alerts over HTTP: instances, rules, acknowledgements, silences and notification channels.
//! Anyone who may read room `alerts` may read them; changing them takes an editor whose rooms are
//! not narrowed (`Identity::may_handle_alerts`).

use app::{
    alerts::{
        self, Ack, Channel, Delivery, Instance, InvalidField, Key, NewSilence, News, Rule,
        Severity, Silence, State, StoredChannel, StoredRule, Transition,
    },
    auth::Identity,
};
use axum::{
    Extension, Json, Router,
    extract::{
        DefaultBodyLimit, Path, State as Shared,
        rejection::{JsonRejection, PathRejection},
    },
    http::StatusCode,
    routing::{delete, get, post},
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AppState,
    alerts::{event, notify, room},
    error::{Error, Result},
};

/// Largest rule, silence, channel or acknowledgement body.
const MAX_BODY: usize = 64 * 1024;
/// Deliveries a channel's log shows.
const LOG_LENGTH: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/alerts", get(instances))
        .route("/api/alerts/rules", get(list_rules).post(create_rule))
        .route(
            "/api/alerts/rules/{id}",
            get(read_rule).put(replace_rule).delete(delete_rule),
        )
        .route("/api/alerts/ack", post(acknowledge))
        .route("/api/alerts/silences", get(list_silences).post(silence))
        .route("/api/alerts/silences/{id}", delete(unsilence))
        .route(
            "/api/alerts/channels",
            get(list_channels).post(create_channel),
        )
        .route(
            "/api/alerts/channels/{id}",
            get(read_channel)
                .put(replace_channel)
                .delete(delete_channel),
        )
        .route("/api/alerts/channels/{id}/test", post(test_channel))
        .route("/api/alerts/channels/{id}/deliveries", get(deliveries))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

fn reader(identity: &Identity) -> Result<()> {
    match identity.may_read(alerts::ROOM) {
        true => Ok(()),
        false => Err(Error::Forbidden("you may not read alerts".into())),
    }
}

/// The editor's name, for the record.
fn editor(identity: &Identity) -> Result<String> {
    match (identity.may_handle_alerts(), &identity.name) {
        (true, Some(name)) => Ok(name.clone()),
        _ => Err(Error::Forbidden(
            "changing alerts needs an editor whose rooms are not narrowed (or their token with \
             the admin scope)"
                .into(),
        )),
    }
}

fn invalid(e: InvalidField) -> Error {
    Error::bad_request(e.to_string())
}

fn id(path: Result<Path<i64>, PathRejection>) -> Result<i64> {
    path.map(|Path(id)| id)
        .map_err(|_| Error::bad_request("the id in the path must be a number"))
}

async fn instances(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Json<Vec<Instance>>> {
    reader(&identity)?;
    Ok(Json(state.alerts.instances().await?))
}

async fn list_rules(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Json<Vec<StoredRule>>> {
    reader(&identity)?;
    Ok(Json(state.store.alert_rules().await?))
}

async fn read_rule(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<StoredRule>> {
    reader(&identity)?;
    let id = id(path)?;
    let rule = state.store.alert_rule(id).await?;
    rule.map(Json).ok_or_else(|| no_rule(id))
}

fn no_rule(id: i64) -> Error {
    Error::NotFound(format!("no alert rule {id}"))
}

async fn create_rule(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<StoredRule>)> {
    let by = editor(&identity)?;
    let Json(body) = body?;
    let rule = Rule::read(&body).map_err(invalid)?;
    let id = state.store.create_alert_rule(&rule, &by).await?;
    let stored = StoredRule { id, rule };
    state.alerts.set_rule(stored.clone()).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

async fn replace_rule(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<StoredRule>> {
    let by = editor(&identity)?;
    let id = id(path)?;
    let Json(body) = body?;
    let rule = Rule::read(&body).map_err(invalid)?;
    if !state.store.replace_alert_rule(id, &rule, &by).await? {
        return Err(no_rule(id));
    }
    let stored = StoredRule { id, rule };
    state.alerts.set_rule(stored.clone()).await?;
    Ok(Json(stored))
}

async fn delete_rule(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode> {
    editor(&identity)?;
    let id = id(path)?;
    if !state.store.delete_alert_rule(id).await? {
        return Err(no_rule(id));
    }
    state.alerts.remove_rule(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Acknowledge {
    #[serde(flatten)]
    key: Key,
    #[serde(default)]
    comment: String,
}

/// Acknowledges an instance's current trouble: it stays on the pages, marked, and is not
/// repeated to channels, until the instance changes state.
async fn acknowledge(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    body: Result<Json<Acknowledge>, JsonRejection>,
) -> Result<(StatusCode, Json<Ack>)> {
    let by = editor(&identity)?;
    let Json(request) = body?;
    alerts::check_text("comment", &request.comment).map_err(invalid)?;
    let instance = state
        .alerts
        .instances()
        .await?
        .into_iter()
        .find(|i| i.key == request.key)
        .ok_or_else(|| Error::NotFound("no such alert instance".into()))?;
    if !matches!(
        instance.state,
        State::Firing | State::NoData | State::Pending
    ) {
        return Err(Error::BadRequest {
            status: StatusCode::CONFLICT,
            message: format!(
                "the alert is {}: there is nothing to acknowledge",
                instance.state
            ),
        });
    }
    let ack = Ack {
        key: request.key,
        since: instance.since,
        by: by.clone(),
        at: Utc::now(),
        comment: request.comment,
    };
    state.store.put_alert_ack(&ack).await?;
    state.alerts.ack(ack.clone()).await?;
    let text = format!("{by} acknowledged {}: {}", instance.name, instance.summary);
    state
        .ingest
        .publish(room(), event(text, News::Ack(ack.clone())))
        .await?;
    Ok((StatusCode::CREATED, Json(ack)))
}

async fn list_silences(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Json<Vec<Silence>>> {
    reader(&identity)?;
    Ok(Json(state.store.alert_silences().await?))
}

async fn silence(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    body: Result<Json<NewSilence>, JsonRejection>,
) -> Result<(StatusCode, Json<Silence>)> {
    let by = editor(&identity)?;
    let Json(request) = body?;
    let period = request.period(Utc::now()).map_err(invalid)?;
    let silence = state
        .store
        .add_alert_silence(&request.matchers, period, &request.comment, &by)
        .await?;
    state.alerts.silence(silence.clone()).await?;
    let text = format!(
        "{by} silenced alerts until {}",
        silence.ends.format("%Y-%m-%d %H:%M UTC")
    );
    state
        .ingest
        .publish(room(), event(text, News::Silence(silence.clone())))
        .await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

async fn unsilence(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode> {
    let by = editor(&identity)?;
    let id = id(path)?;
    if !state.store.end_alert_silence(id).await? {
        return Err(Error::NotFound(format!("no silence {id} in force")));
    }
    state.alerts.unsilence(id).await?;
    let text = format!("{by} ended silence {id}");
    state
        .ingest
        .publish(room(), event(text, News::Unsilence { id, by }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_channels(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Json<Vec<StoredChannel>>> {
    // Channels hold receivers' addresses, some of them secrets: editors only.
    editor(&identity)?;
    Ok(Json(state.store.alert_channels().await?))
}

async fn channel(state: &AppState, id: i64) -> Result<StoredChannel> {
    state
        .store
        .alert_channel(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no channel {id}")))
}

async fn read_channel(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<StoredChannel>> {
    editor(&identity)?;
    Ok(Json(channel(&state, id(path)?).await?))
}

fn name_taken(channel: &Channel) -> Error {
    Error::BadRequest {
        status: StatusCode::CONFLICT,
        message: format!("a channel is already named {:?}", channel.name),
    }
}

async fn create_channel(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<StoredChannel>)> {
    editor(&identity)?;
    let Json(body) = body?;
    let channel = Channel::read(&body).map_err(invalid)?;
    let id = state
        .store
        .create_alert_channel(&channel)
        .await?
        .ok_or_else(|| name_taken(&channel))?;
    Ok((StatusCode::CREATED, Json(StoredChannel { id, channel })))
}

async fn replace_channel(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<StoredChannel>> {
    editor(&identity)?;
    let id = id(path)?;
    let Json(body) = body?;
    let channel = Channel::read(&body).map_err(invalid)?;
    match state.store.replace_alert_channel(id, &channel).await {
        Ok(true) => Ok(Json(StoredChannel { id, channel })),
        Ok(false) => Err(Error::NotFound(format!("no channel {id}"))),
        Err(Error::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            Err(name_taken(&channel))
        }
        Err(e) => Err(e),
    }
}

async fn delete_channel(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode> {
    editor(&identity)?;
    let id = id(path)?;
    match state.store.delete_alert_channel(id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(Error::NotFound(format!("no channel {id}"))),
    }
}

/// Sends a made-up firing alert to the channel now and says how the receiver took it.
async fn test_channel(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>> {
    let by = editor(&identity)?;
    let StoredChannel { channel, .. } = channel(&state, id(path)?).await?;
    let test = Transition {
        key: Key {
            rule: 0,
            source: "watchroom".into(),
            labels: Default::default(),
        },
        name: "test notification".into(),
        state: State::Firing,
        previous: State::Normal,
        value: None,
        threshold: 0.0,
        severity: Severity::Info,
        summary: format!("{by} is testing channel {}", channel.name),
        since: Utc::now(),
        began: None,
        rule_labels: Default::default(),
        silenced: false,
    };
    let body = notify::body(&channel, &test, &state.public_url);
    let sent = state.senders.send(&channel.target, &body).await;
    Ok(Json(match sent {
        Ok(()) => json!({"sent": true}),
        Err(error) => json!({"sent": false, "error": error}),
    }))
}

async fn deliveries(
    Shared(state): Shared<AppState>,
    Extension(identity): Extension<Identity>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Vec<Delivery>>> {
    editor(&identity)?;
    let id = id(path)?;
    channel(&state, id).await?;
    Ok(Json(state.store.alert_deliveries(id, LOG_LENGTH).await?))
}
