//! What the pages read and change, served from the store: the app's `History`,
//! `DashboardStore` and `AccountStore` seams.
//! A page gets only the public face of a failure; the log gets all of it.

use app::{
    accounts::{AccountStore, SessionInfo, TokenInfo},
    alerts::{
        AlertBook, Backtest, BacktestSource, Instance, Reducer, Rule, Silence, StoredChannel,
        StoredRule,
    },
    auth::{Identity, Scope},
    dashboards::{Dashboard, DashboardStore},
    error::AppError,
    history::{EventDetail, EventPage, History, Oldest, Query, RoomSummary, Sources},
    metrics::{Bucket, Series, Storage, source_room},
    protocol::{RoomName, RoomSnapshot},
};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::{alerts::Alerts, auth, error::Error, store::Store};

#[derive(Clone)]
pub struct Pages {
    store: Store,
    alerts: Alerts,
}

impl Pages {
    pub fn new(store: Store, alerts: Alerts) -> Self {
        Self { store, alerts }
    }

    /// Runs `query` on the store for a page, `what` naming it in the log.
    fn serve<T, F>(
        &self,
        what: &'static str,
        query: impl FnOnce(Store) -> F,
    ) -> BoxFuture<'static, Result<T, AppError>>
    where
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let query = query(self.store.clone());
        Box::pin(async move {
            query.await.map_err(|error| {
                if error.is_servers() {
                    tracing::error!(%error, "{what} failed");
                }
                AppError::from(error)
            })
        })
    }
}

impl History for Pages {
    fn snapshot(
        &self,
        room: RoomName,
        limit: i64,
    ) -> BoxFuture<'static, Result<RoomSnapshot, AppError>> {
        self.serve("loading a room snapshot", |store| async move {
            store.snapshot(&room, limit).await
        })
    }

    fn ranges(
        &self,
        series: Vec<(String, Series)>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_ms: i64,
    ) -> BoxFuture<'static, Result<Vec<Vec<Bucket>>, AppError>> {
        let width = step_ms.max(1) as f64 / 1000.0;
        self.serve("reading metric ranges", |store| async move {
            store.ranges(&series, from, to, width).await
        })
    }

    fn sources(
        &self,
        filter: String,
        limit: usize,
        series: usize,
        visible: Identity,
    ) -> BoxFuture<'static, Result<(usize, Sources), AppError>> {
        self.serve("listing sources", move |store| async move {
            let readable = |source: &str| {
                source_room(source).is_ok_and(|room| visible.may_read(room.as_str()))
            };
            store.source_page(&filter, limit, series, readable).await
        })
    }

    fn rooms(
        &self,
        filter: String,
        limit: usize,
        visible: Identity,
    ) -> BoxFuture<'static, Result<(usize, Vec<RoomSummary>), AppError>> {
        self.serve("listing rooms", move |store| async move {
            store
                .room_page(&filter, limit, |room| visible.may_read(room))
                .await
        })
    }

    fn events(
        &self,
        query: Query,
        visible: Identity,
    ) -> BoxFuture<'static, Result<EventPage, AppError>> {
        self.serve("reading event history", move |store| async move {
            store.events(&query, &visible, Utc::now()).await
        })
    }

    fn event(
        &self,
        room: RoomName,
        seq: i64,
    ) -> BoxFuture<'static, Result<Option<EventDetail>, AppError>> {
        self.serve("reading an event", move |store| async move {
            store.event(&room, seq).await
        })
    }

    fn oldest(&self, visible: Identity) -> BoxFuture<'static, Result<Oldest, AppError>> {
        self.serve("reading the oldest event kept", move |store| async move {
            store.oldest(&visible).await
        })
    }

    fn storage(&self) -> BoxFuture<'static, Result<Storage, AppError>> {
        self.serve("reading the metrics storage", |store| async move {
            store.storage().await
        })
    }
}

impl DashboardStore for Pages {
    fn list(&self) -> BoxFuture<'static, Result<Vec<String>, AppError>> {
        self.serve("listing dashboards", |store| async move {
            store.dashboard_names().await
        })
    }

    fn get(&self, name: String) -> BoxFuture<'static, Result<Option<Dashboard>, AppError>> {
        self.serve("reading a dashboard", |store| async move {
            store.dashboard(&name).await
        })
    }

    fn create(&self, name: String) -> BoxFuture<'static, Result<(), AppError>> {
        self.serve("creating a dashboard", |store| async move {
            store.create_dashboard(&name).await
        })
    }

    fn update(&self, dashboard: Dashboard) -> BoxFuture<'static, Result<(), AppError>> {
        let work = self.serve("saving a dashboard", |store| async move {
            store.update_dashboard(&dashboard).await
        });
        Box::pin(async move {
            match work.await? {
                true => Ok(()),
                false => Err(app::dashboards::changed_since()),
            }
        })
    }

    fn delete(&self, name: String) -> BoxFuture<'static, Result<(), AppError>> {
        self.serve("deleting a dashboard", |store| async move {
            store.delete_dashboard(&name).await
        })
    }
}

impl AccountStore for Pages {
    fn sessions(&self, user: String) -> BoxFuture<'static, Result<Vec<SessionInfo>, AppError>> {
        self.serve("listing sessions", |store| async move {
            store.sessions_of(&user).await
        })
    }

    fn end_session(&self, user: String, id: String) -> BoxFuture<'static, Result<(), AppError>> {
        self.serve("ending a session", |store| async move {
            let hash = hex::decode(&id).map_err(|_| Error::bad_request("no such session"))?;
            store.end_session_of(&user, &hash).await
        })
    }

    fn tokens(&self, user: String) -> BoxFuture<'static, Result<Vec<TokenInfo>, AppError>> {
        self.serve("listing tokens", |store| async move {
            store.tokens_of(&user).await
        })
    }

    fn create_token(
        &self,
        user: String,
        name: String,
        scopes: Vec<Scope>,
        expires: Option<String>,
    ) -> BoxFuture<'static, Result<String, AppError>> {
        self.serve("creating a token", |store| async move {
            let expires = expires
                .map(|text| app::duration::parse(&text).map_err(Error::bad_request))
                .transpose()?;
            auth::create_token(&store, &user, &name, &scopes, expires).await
        })
    }

    fn revoke_token(&self, user: String, id: i32) -> BoxFuture<'static, Result<(), AppError>> {
        self.serve("revoking a token", |store| async move {
            store.revoke_token_of(&user, id).await
        })
    }
}

impl AlertBook for Pages {
    fn instances(&self) -> BoxFuture<'static, Result<Vec<Instance>, AppError>> {
        let alerts = self.alerts.clone();
        self.serve("reading alert instances", |_| async move {
            alerts.instances().await
        })
    }

    fn rules(&self) -> BoxFuture<'static, Result<Vec<StoredRule>, AppError>> {
        self.serve("listing alert rules", |store| async move {
            store.alert_rules().await
        })
    }

    fn silences(&self) -> BoxFuture<'static, Result<Vec<Silence>, AppError>> {
        self.serve("listing silences", |store| async move {
            store.alert_silences().await
        })
    }

    fn backtest(
        &self,
        rule: Rule,
        visible: Identity,
    ) -> BoxFuture<'static, Result<Backtest, AppError>> {
        /// Sources shown, and buckets of a day (two minutes each).
        const SOURCES: usize = 4;
        const BUCKETS: f64 = 720.0;
        // The evaluator sees one value per bucket: a window must hold two of them (`rate` needs
        // two samples), whatever the rule's own.
        let bucket = std::time::Duration::from_secs_f64(86_400.0 / BUCKETS);
        let rule = Rule {
            window: rule.window.max(app::duration::Span(bucket * 2)),
            ..rule
        };
        self.serve("backtesting a rule", move |store| async move {
            let to = Utc::now();
            let from = to - chrono::TimeDelta::days(1);
            let readable = |source: &String| {
                rule.source.matches(source)
                    && source_room(source).is_ok_and(|room| visible.may_read(room.as_str()))
            };
            let mut sources = Vec::new();
            for source in store.sources().await?.into_iter().filter(readable) {
                let buckets = store
                    .range(&source, &rule.series, from, to, 86_400.0 / BUCKETS)
                    .await?;
                if buckets.is_empty() {
                    continue;
                }
                let points: Vec<(DateTime<Utc>, f64)> = buckets
                    .iter()
                    .map(|b| match rule.reducer {
                        Reducer::Min => (b.t, b.min),
                        Reducer::Max => (b.t, b.max),
                        _ => (b.t, b.avg),
                    })
                    .collect();
                let firing = crate::alerts::backtest(&rule, &source, &points, to);
                sources.push(BacktestSource {
                    source,
                    points,
                    firing,
                });
                if sources.len() == SOURCES {
                    break;
                }
            }
            Ok(Backtest {
                from,
                to,
                threshold: rule.threshold,
                sources,
            })
        })
    }

    fn channels(&self) -> BoxFuture<'static, Result<Vec<StoredChannel>, AppError>> {
        self.serve("listing channels", |store| async move {
            store.alert_channels().await
        })
    }
}
