//! The log read across rooms: pages of a filter's events newest first, an event with its
//! neighbours, and retention.

use std::collections::HashMap;

use app::{
    auth::{Identity, Pattern, Scope},
    history::{Cursor, EventDetail, EventPage, Oldest, Page, Query, RoomSummary},
    protocol::{Epoch, Event, EventKind, MAX_ROOM_LEN, RoomName},
};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, types::Json};

use super::Store;
use crate::error::Result;

/// Events shown on each side of one in its detail.
const NEIGHBOURS: i64 = 5;

#[derive(sqlx::FromRow)]
struct Row {
    room: String,
    seq: i64,
    ts: DateTime<Utc>,
    kind: String,
    data: Json<serde_json::Value>,
}

/// A row of a page bounded by bytes, with how many rows the page had before the bound cut it.
#[derive(sqlx::FromRow)]
struct SizedRow {
    #[sqlx(flatten)]
    row: Row,
    fetched: i64,
}

impl Row {
    fn into_event(self) -> Result<Event> {
        let decode = |what: String| sqlx::Error::Decode(what.into());
        let kind = EventKind::parse(&self.kind)
            .ok_or_else(|| decode(format!("unknown event kind {:?}", self.kind)))?;
        let room = RoomName::parse(self.room).map_err(|e| decode(e.to_string()))?;
        Ok(Event {
            room,
            seq: self.seq,
            ts: self.ts,
            kind,
            data: self.data.0,
        })
    }
}

/// A room pattern as a `LIKE` pattern: `*` is any run, everything else literal.
fn like(pattern: &Pattern) -> String {
    let mut like = String::with_capacity(pattern.as_str().len() + 2);
    for c in pattern.as_str().chars() {
        match c {
            '*' => like.push('%'),
            '%' | '_' | '\\' => {
                like.push('\\');
                like.push(c);
            }
            c => like.push(c),
        }
    }
    like
}

/// The rooms an identity may read, as lists of `LIKE` patterns that must each match (its
/// rooms, and its token's read scopes); none when it may read nothing.
fn readable(identity: &Identity) -> Option<Vec<Vec<String>>> {
    let any = |patterns: &[Pattern]| patterns.iter().any(|p| *p == Pattern::any());
    let mut lists = Vec::new();
    if !any(&identity.rooms) {
        lists.push(identity.rooms.iter().map(like).collect::<Vec<_>>());
    }
    if let Some(scopes) = identity
        .scopes
        .as_ref()
        .filter(|s| !s.contains(&Scope::Admin))
    {
        let reads: Vec<Pattern> = scopes
            .iter()
            .filter_map(|scope| match scope {
                Scope::Read(pattern) => Some(pattern.clone()),
                _ => None,
            })
            .collect();
        if !any(&reads) {
            lists.push(reads.iter().map(like).collect());
        }
    }
    (!lists.iter().any(Vec::is_empty)).then_some(lists)
}

/// The kinds a query reads: alert filters and words narrow it to the kinds they apply to.
fn kinds(query: &Query) -> Vec<EventKind> {
    let filter = &query.filter;
    filter
        .kinds()
        .into_iter()
        .filter(|kind| {
            (filter.source.is_none() && filter.severity.is_none() && filter.state.is_none()
                || *kind == EventKind::Alert)
                && (filter.text.is_none() || *kind != EventKind::Metric)
        })
        .collect()
}

impl Store {
    /// One page of `query`'s events among the rooms `visible` may read, newest first. Kinds go
    /// into the statement as literals so the planner can pick the partial index of each.
    pub async fn events(
        &self,
        query: &Query,
        visible: &Identity,
        now: DateTime<Utc>,
    ) -> Result<EventPage> {
        let kinds = kinds(query);
        let Some(readable) = readable(visible).filter(|_| !kinds.is_empty()) else {
            return Ok(EventPage::default());
        };
        let filter = &query.filter;
        // One room: its own index, in which the room is fixed and (ts, seq) orders its events.
        let one_room = filter
            .room
            .as_ref()
            .filter(|p| !p.as_str().contains('*'))
            .map(|p| p.as_str().to_owned());
        let (older, cursor) = match &query.page {
            Page::First => (true, None),
            Page::Older(cursor) => (true, Some(cursor)),
            Page::Newer(cursor) => (false, Some(cursor)),
        };
        let order = if older { "DESC" } else { "ASC" };
        let columns = match one_room {
            Some(_) => format!("ts {order}, seq {order}"),
            None => format!("ts {order}, room {order}, seq {order}"),
        };
        // The page is also bounded by the bytes of its events as stored, like a room's log
        // (`PAGE_BYTES`): the rows past the bound are neither sent nor decoded.
        let mut sql = QueryBuilder::<Postgres>::new(format!(
            "SELECT * FROM (
                 SELECT room, seq, ts, kind, data, count(*) OVER () AS fetched,
                        (sum(pg_column_size(data)) OVER (ORDER BY {columns}))::int8
                            - pg_column_size(data) AS before
                 FROM (SELECT room, seq, ts, kind, data FROM events WHERE "
        ));
        let named: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
        match kinds.as_slice() {
            [EventKind::Notice, EventKind::Alert] | [EventKind::Alert, EventKind::Notice] => {
                sql.push("kind <> 'metric'")
            }
            [one] => sql.push(format_args!("kind = '{}'", one.as_str())),
            _ => sql.push(format_args!("kind IN ({})", named.join(", "))),
        };
        for patterns in readable {
            sql.push(" AND room LIKE ANY(")
                .push_bind(patterns)
                .push(")");
        }
        match (&one_room, &filter.room) {
            (Some(room), _) => {
                sql.push(" AND room = ").push_bind(room.clone());
            }
            (None, Some(pattern)) => {
                sql.push(" AND room LIKE ").push_bind(like(pattern));
            }
            (None, None) => {}
        }
        if let Some(source) = &filter.source {
            sql.push(" AND data ->> 'source' LIKE ")
                .push_bind(like(source));
        }
        if let Some(severity) = filter.severity {
            sql.push(" AND data ->> 'severity' = ")
                .push_bind(severity.as_str());
        }
        if let Some(state) = filter.state {
            sql.push(" AND data ->> 'type' = 'transition' AND data ->> 'state' = ")
                .push_bind(state.as_str());
        }
        let (from, to) = query.span(now);
        if let Some(from) = from {
            sql.push(" AND ts >= ").push_bind(from);
        }
        if let Some(to) = to {
            sql.push(" AND ts < ").push_bind(to);
        }
        if let Some(text) = &filter.text {
            sql.push(" AND words @@ websearch_to_tsquery('english', ")
                .push_bind(text.clone())
                .push(")");
        }
        let key = match one_room {
            Some(_) => "(ts, seq)",
            None => "(ts, room, seq)",
        };
        if let Some(cursor) = cursor {
            sql.push(format_args!(
                " AND {key} {} (",
                if older { "<" } else { ">" }
            ))
            .push_bind(cursor.ts);
            if one_room.is_none() {
                sql.push(", ").push_bind(cursor.room.as_str().to_owned());
            }
            sql.push(", ").push_bind(cursor.seq).push(")");
        }
        sql.push(format_args!(" ORDER BY {columns} LIMIT "))
            .push_bind(query.page_size() as i64 + 1)
            .push(") page) sized WHERE before < ")
            .push_bind(super::events::PAGE_BYTES)
            .push(format_args!(" ORDER BY {columns}"));

        let rows: Vec<SizedRow> = sql.build_query_as().fetch_all(&self.pool).await?;
        let cut = rows.first().is_some_and(|r| r.fetched > rows.len() as i64);
        let more = cut || rows.len() > query.page_size();
        let rows = rows.into_iter().map(|sized| sized.row);
        let mut events = rows
            .take(query.page_size())
            .map(Row::into_event)
            .collect::<Result<Vec<_>>>()?;
        if !older {
            events.reverse();
        }
        let newest = events.first().map(Cursor::of);
        let oldest = events.last().map(Cursor::of);
        let (next, prev) = match &query.page {
            Page::First => (oldest.filter(|_| more), None),
            Page::Older(_) => (oldest.filter(|_| more), newest),
            Page::Newer(_) => (oldest, newest.filter(|_| more)),
        };
        Ok(EventPage { events, next, prev })
    }

    /// The first `limit` rooms (by name) whose name contains `filter` and which are `visible`,
    /// each with when its newest event was stored, and how many matched: two queries, however
    /// many rooms there are.
    pub async fn room_page(
        &self,
        filter: &str,
        limit: usize,
        visible: impl Fn(&str) -> bool,
    ) -> Result<(usize, Vec<RoomSummary>)> {
        // No name holds a NUL (nor can Postgres text) or is longer than a room name may be: such
        // a filter matches nothing, and is not sent.
        if filter.contains('\0') || filter.len() > MAX_ROOM_LEN {
            return Ok((0, Vec::new()));
        }
        let mut matched: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, head FROM rooms WHERE strpos(name, $1) > 0 ORDER BY name")
                .bind(filter)
                .fetch_all(&self.pool)
                .await?;
        matched.retain(|(room, _)| visible(room));
        let shown = &matched[..matched.len().min(limit)];
        let (rooms, heads): (Vec<&str>, Vec<i64>) = shown
            .iter()
            .map(|(room, head)| (room.as_str(), *head))
            .unzip();
        let newest: HashMap<String, DateTime<Utc>> = sqlx::query_as(
            "SELECT e.room, e.ts FROM UNNEST($1::text[], $2::bigint[]) AS r (room, head)
             JOIN events e ON e.room = r.room AND e.seq = r.head",
        )
        .bind(&rooms)
        .bind(&heads)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let page = shown
            .iter()
            .filter_map(|(room, head)| {
                Some(RoomSummary {
                    newest: newest.get(room).copied(),
                    room: RoomName::parse(room.as_str()).ok()?,
                    head: *head,
                })
            })
            .collect();
        Ok((matched.len(), page))
    }

    /// The event `seq` of `room` with up to five neighbours on each side.
    pub async fn event(&self, room: &RoomName, seq: i64) -> Result<Option<EventDetail>> {
        let around: Vec<Row> = sqlx::query_as(
            "(SELECT room, seq, ts, kind, data FROM events
              WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3)
             UNION ALL
             (SELECT room, seq, ts, kind, data FROM events
              WHERE room = $1 AND seq >= $2 ORDER BY seq LIMIT $3 + 1)",
        )
        .bind(room.as_str())
        .bind(seq)
        .bind(NEIGHBOURS)
        .fetch_all(&self.pool)
        .await?;
        let mut around = around
            .into_iter()
            .map(Row::into_event)
            .collect::<Result<Vec<_>>>()?;
        around.sort_by_key(|event| event.seq);
        let Some(at) = around.iter().position(|event| event.seq == seq) else {
            return Ok(None);
        };
        let after = around.split_off(at + 1);
        let event = around.pop().expect("the event itself is there");
        Ok(Some(EventDetail {
            event,
            before: around,
            after,
        }))
    }

    /// When the oldest notice or alert `visible` may read was stored.
    pub async fn oldest(&self, visible: &Identity) -> Result<Oldest> {
        let Some(readable) = readable(visible) else {
            return Ok(None);
        };
        let mut sql =
            QueryBuilder::<Postgres>::new("SELECT min(ts) FROM events WHERE kind <> 'metric'");
        for patterns in readable {
            sql.push(" AND room LIKE ANY(")
                .push_bind(patterns)
                .push(")");
        }
        Ok(sql.build_query_scalar().fetch_one(&self.pool).await?)
    }

    /// The newest seq of `room`'s log in `epoch` that retention may have removed; 0 when it
    /// removed none.
    pub async fn purged(&self, room: &RoomName, epoch: &Epoch) -> Result<i64> {
        let purged: Option<i64> =
            sqlx::query_scalar("SELECT purged FROM room_purges WHERE room = $1 AND epoch = $2")
                .bind(room.as_str())
                .bind(&epoch.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(purged.unwrap_or(0))
    }

    /// Removes up to `batch` events of `kind` stored before `before`, oldest first, notes how far
    /// each room's log was removed, and says how many went. Rooms keep their heads, so seqs go
    /// on from where they were.
    pub async fn purge(&self, kind: EventKind, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        // The kind as a literal: each kind's partial index on ts finds the oldest at once. Rooms
        // are noted in name order, so retention on two nodes cannot deadlock on them.
        let sql = format!(
            "WITH gone AS (
                 DELETE FROM events WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM events WHERE kind = '{}' AND ts < $1 ORDER BY ts LIMIT $2))
                 RETURNING room, seq),
             noted AS (
                 INSERT INTO room_purges (room, epoch, purged)
                 SELECT g.room, r.epoch, max(g.seq) FROM gone g JOIN rooms r ON r.name = g.room
                 GROUP BY g.room, r.epoch ORDER BY g.room
                 ON CONFLICT (room) DO UPDATE SET
                     purged = CASE WHEN room_purges.epoch = EXCLUDED.epoch
                                   THEN greatest(room_purges.purged, EXCLUDED.purged)
                                   ELSE EXCLUDED.purged END,
                     epoch = EXCLUDED.epoch)
             SELECT count(*) FROM gone",
            kind.as_str()
        );
        let removed: i64 = sqlx::query_scalar(&sql)
            .bind(before)
            .bind(batch)
            .fetch_one(&self.pool)
            .await?;
        Ok(removed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::auth::Role;

    fn identity(rooms: &[&str], scopes: Option<Vec<Scope>>) -> Identity {
        Identity {
            name: Some("ann".into()),
            role: Role::Viewer,
            rooms: rooms.iter().map(|r| Pattern::parse(r).unwrap()).collect(),
            scopes,
        }
    }

    #[test]
    fn patterns_become_like_patterns_with_underscores_taken_literally() {
        let like = |p: &str| like(&Pattern::parse(p).unwrap());
        assert_eq!(like("host:*"), "host:%");
        assert_eq!(like("team_a.*.x"), "team\\_a.%.x");
        assert_eq!(like("*"), "%");
    }

    #[test]
    fn readable_rooms_narrow_by_rooms_and_read_scopes_and_nothing_is_nothing() {
        assert_eq!(readable(&identity(&["*"], None)), Some(vec![]));
        assert_eq!(
            readable(&identity(&["ops.*", "alerts"], None)),
            Some(vec![vec!["ops.%".to_owned(), "alerts".to_owned()]])
        );
        let scoped = identity(
            &["*"],
            Some(vec![
                Scope::Read(Pattern::parse("host:*").unwrap()),
                Scope::Publish(Pattern::any()),
            ]),
        );
        assert_eq!(readable(&scoped), Some(vec![vec!["host:%".to_owned()]]));
        assert_eq!(
            readable(&identity(&["*"], Some(vec![Scope::Admin]))),
            Some(vec![])
        );
        let publish_only = identity(&["*"], Some(vec![Scope::Publish(Pattern::any())]));
        assert_eq!(readable(&publish_only), None);
    }
}
