//! Alert rules, acknowledgements, silences, channels and the notification outbox.

use app::alerts::{
    Ack, Channel, Delivery, Matchers, Rule, Silence, StoredChannel, StoredRule, Target, Transition,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use super::Store;
use crate::error::Result;

/// A notification due to be sent.
pub struct Outgoing {
    pub id: i64,
    pub target: Target,
    pub body: Value,
    pub attempts: i32,
}

/// A notification to queue: for `channel`, about `instance`.
pub struct Notification {
    pub channel: i64,
    pub instance: String,
    pub summary: String,
    pub body: Value,
}

impl Store {
    pub async fn alert_rules(&self) -> Result<Vec<StoredRule>> {
        let rows: Vec<(i64, Json<Rule>)> =
            sqlx::query_as("SELECT id, rule FROM alert_rules ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, Json(rule))| StoredRule { id, rule })
            .collect())
    }

    pub async fn alert_rule(&self, id: i64) -> Result<Option<StoredRule>> {
        let rule: Option<Json<Rule>> =
            sqlx::query_scalar("SELECT rule FROM alert_rules WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(rule.map(|Json(rule)| StoredRule { id, rule }))
    }

    pub async fn create_alert_rule(&self, rule: &Rule, by: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO alert_rules (rule, updated_by) VALUES ($1, $2) RETURNING id",
        )
        .bind(Json(rule))
        .bind(by)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Whether the rule was there to replace.
    pub async fn replace_alert_rule(&self, id: i64, rule: &Rule, by: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alert_rules SET rule = $2, updated_by = $3, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(Json(rule))
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_alert_rule(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM alert_rules WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The newest transition of every instance, from room `alerts`: where each one stands.
    pub async fn last_transitions(&self) -> Result<Vec<Transition>> {
        let rows: Vec<Json<Transition>> = sqlx::query_scalar(
            "SELECT DISTINCT ON (d->'rule', d->'source', d->'labels') d
             FROM (SELECT seq, data::jsonb AS d FROM events WHERE room = $1) AS e
             WHERE d->>'type' = 'transition'
             ORDER BY d->'rule', d->'source', d->'labels', seq DESC",
        )
        .bind(app::alerts::ROOM)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|Json(t)| t).collect())
    }

    pub async fn alert_acks(&self) -> Result<Vec<Ack>> {
        let rows: Vec<Json<Ack>> = sqlx::query_scalar(
            "SELECT json_build_object('rule', rule, 'source', source, 'labels', labels,
                 'since', since, 'by', by_user, 'at', at, 'comment', comment)
             FROM alert_acks",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|Json(ack)| ack).collect())
    }

    pub async fn put_alert_ack(&self, ack: &Ack) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_acks (rule, source, labels, since, by_user, at, comment)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (rule, source, labels) DO UPDATE SET since = EXCLUDED.since,
                 by_user = EXCLUDED.by_user, at = EXCLUDED.at, comment = EXCLUDED.comment",
        )
        .bind(ack.key.rule)
        .bind(&ack.key.source)
        .bind(Json(&ack.key.labels))
        .bind(ack.since)
        .bind(&ack.by)
        .bind(ack.at)
        .bind(&ack.comment)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Silences that have not ended, soonest to start first.
    pub async fn alert_silences(&self) -> Result<Vec<Silence>> {
        let rows: Vec<Json<Silence>> = sqlx::query_scalar(
            "SELECT json_build_object('id', id, 'matchers', matchers, 'starts', starts,
                 'ends', ends, 'comment', comment, 'author', author)
             FROM alert_silences WHERE ends > now() ORDER BY starts, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|Json(silence)| silence).collect())
    }

    pub async fn add_alert_silence(
        &self,
        matchers: &Matchers,
        (starts, ends): (DateTime<Utc>, DateTime<Utc>),
        comment: &str,
        author: &str,
    ) -> Result<Silence> {
        let id = sqlx::query_scalar(
            "INSERT INTO alert_silences (matchers, starts, ends, comment, author)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(Json(matchers))
        .bind(starts)
        .bind(ends)
        .bind(comment)
        .bind(author)
        .fetch_one(&self.pool)
        .await?;
        Ok(Silence {
            id,
            matchers: matchers.clone(),
            starts,
            ends,
            comment: comment.to_owned(),
            author: author.to_owned(),
        })
    }

    /// Ends a silence now; whether it was still on.
    pub async fn end_alert_silence(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alert_silences
             SET ends = now(), starts = least(starts, now() - interval '1 millisecond')
             WHERE id = $1 AND ends > now()",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn alert_channels(&self) -> Result<Vec<StoredChannel>> {
        let rows: Vec<(i64, Json<Channel>)> =
            sqlx::query_as("SELECT id, channel FROM alert_channels ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, Json(channel))| StoredChannel { id, channel })
            .collect())
    }

    pub async fn alert_channel(&self, id: i64) -> Result<Option<StoredChannel>> {
        let channel: Option<Json<Channel>> =
            sqlx::query_scalar("SELECT channel FROM alert_channels WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(channel.map(|Json(channel)| StoredChannel { id, channel }))
    }

    /// None when another channel has the name.
    pub async fn create_alert_channel(&self, channel: &Channel) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO alert_channels (name, channel) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(&channel.name)
        .bind(Json(channel))
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn replace_alert_channel(&self, id: i64, channel: &Channel) -> Result<bool> {
        let done = sqlx::query("UPDATE alert_channels SET name = $2, channel = $3 WHERE id = $1")
            .bind(id)
            .bind(&channel.name)
            .bind(Json(channel))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_alert_channel(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM alert_channels WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The channel's newest deliveries, newest first.
    pub async fn alert_deliveries(&self, channel: i64, limit: i64) -> Result<Vec<Delivery>> {
        let rows: Vec<Json<Delivery>> = sqlx::query_scalar(
            "SELECT json_build_object('id', id, 'created', created, 'status', status,
                 'attempts', attempts, 'last_error', last_error, 'summary', summary)
             FROM alert_outbox WHERE channel = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(channel)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|Json(delivery)| delivery).collect())
    }

    /// Reads the transitions after the notifier's cursor (at most `limit`), lets `route` turn
    /// them into notifications, and queues those while moving the cursor past them, in one
    /// transaction: a crash in between neither loses nor repeats one. A room `alerts` whose log
    /// started over is followed from its new start. Returns how many events were routed.
    pub async fn route_alerts(
        &self,
        limit: i64,
        route: impl FnOnce(Vec<Transition>) -> Vec<Notification>,
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let (at, seq): (String, i64) =
            sqlx::query_as("SELECT epoch, seq FROM alert_cursor FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let Some(epoch): Option<String> =
            sqlx::query_scalar("SELECT epoch FROM rooms WHERE name = $1")
                .bind(app::alerts::ROOM)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(0);
        };
        let after = if at == epoch { seq } else { 0 };
        let rows: Vec<(i64, Json<Value>)> = sqlx::query_as(
            "SELECT seq, data FROM events WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(app::alerts::ROOM)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(0);
        };
        let count = rows.len();
        let transitions = rows
            .into_iter()
            .filter(|(_, Json(data))| data["type"] == "transition")
            .filter_map(|(_, Json(data))| serde_json::from_value(data).ok())
            .collect();
        let notifications = route(transitions);
        if !notifications.is_empty() {
            self.queue_notifications(&mut tx, &notifications).await?;
        }
        sqlx::query("UPDATE alert_cursor SET epoch = $1, seq = $2")
            .bind(&epoch)
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(count)
    }

    async fn queue_notifications(
        &self,
        tx: &mut sqlx::PgConnection,
        notifications: &[Notification],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_outbox (channel, instance, summary, body)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::jsonb[])",
        )
        .bind(notifications.iter().map(|n| n.channel).collect::<Vec<_>>())
        .bind(
            notifications
                .iter()
                .map(|n| n.instance.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            notifications
                .iter()
                .map(|n| n.summary.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            notifications
                .iter()
                .map(|n| Json(&n.body))
                .collect::<Vec<_>>(),
        )
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Queues notifications outside routing (repeats of alerts still firing).
    pub async fn queue_alert_notifications(&self, notifications: &[Notification]) -> Result<()> {
        let mut connection = self.pool.acquire().await?;
        self.queue_notifications(&mut connection, notifications)
            .await
    }

    /// When each of `instances` was last notified to each channel.
    pub async fn last_notified(
        &self,
        instances: &[String],
    ) -> Result<Vec<(i64, String, DateTime<Utc>)>> {
        Ok(sqlx::query_as(
            "SELECT channel, instance, max(created) FROM alert_outbox
             WHERE instance = ANY($1) GROUP BY channel, instance",
        )
        .bind(instances)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Claims notifications due now, oldest first, for `lease`: another node does not send
    /// them meanwhile, and if this one dies they are due again when the lease ends.
    pub async fn claim_notifications(
        &self,
        limit: i64,
        lease: chrono::TimeDelta,
    ) -> Result<Vec<Outgoing>> {
        let rows: Vec<(i64, Json<Channel>, Json<Value>, i32)> = sqlx::query_as(
            "WITH due AS (
                 SELECT id FROM alert_outbox WHERE status = 'queued' AND next_at <= now()
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE alert_outbox o SET next_at = now() + $2 FROM due, alert_channels c
             WHERE o.id = due.id AND c.id = o.channel
             RETURNING o.id, c.channel, o.body, o.attempts",
        )
        .bind(limit)
        .bind(lease)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, Json(channel), Json(body), attempts)| Outgoing {
                id,
                target: channel.target,
                body,
                attempts,
            })
            .collect())
    }

    /// Records a delivery attempt: sent, or failed with `error` and tried again after `retry`
    /// (given up when `retry` is none).
    pub async fn notification_attempted(
        &self,
        id: i64,
        error: Option<&str>,
        retry: Option<chrono::TimeDelta>,
    ) -> Result<()> {
        let status = match (error, retry) {
            (None, _) => "sent",
            (Some(_), Some(_)) => "queued",
            (Some(_), None) => "failed",
        };
        sqlx::query(
            "UPDATE alert_outbox SET status = $2, attempts = attempts + 1,
                 last_error = coalesce($3, last_error),
                 next_at = now() + $4 WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(retry.unwrap_or_default())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
