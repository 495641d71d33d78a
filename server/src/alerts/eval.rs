//! Rule evaluation, without I/O or clock of its own: samples and ticks go in with the time they
//! are evaluated at, transitions come out.

use std::{collections::HashMap, sync::Arc};

use app::{
    alerts::{Instance, Key, NoDataMeans, Rule, State, StoredRule, Transition},
    metrics::{Labels, Point},
};
use chrono::{DateTime, Utc};

use super::window::Window;

/// One alert instance being followed.
struct Tracked {
    window: Window,
    state: State,
    since: DateTime<Utc>,
    value: Option<f64>,
    /// When a sample last arrived: the start of the no-data period.
    seen: DateTime<Utc>,
    /// When the condition last held: the start of the keep-firing period.
    held: Option<DateTime<Utc>>,
    /// Took samples since it was last evaluated.
    dirty: bool,
}

impl Tracked {
    fn new(rule: &Rule, now: DateTime<Utc>) -> Self {
        Self {
            window: Window::new(rule.reducer),
            state: State::Normal,
            since: now,
            value: None,
            seen: now,
            held: None,
            dirty: false,
        }
    }

    fn push(&mut self, ts: DateTime<Utc>, value: f64, now: DateTime<Utc>) {
        self.seen = now;
        self.dirty = true;
        self.window.push(ts, value);
    }

    /// The state the instance moves to now, given its window.
    fn next(&mut self, rule: &Rule, now: DateTime<Utc>) -> State {
        self.window.expire(now - rule.window.chrono());
        let Some(value) = self.window.value() else {
            // No value in the window: the state holds until the no-data period is over.
            if now - self.seen < rule.no_data.after.chrono() {
                return self.state;
            }
            self.value = None;
            return match (rule.no_data.means, self.state) {
                (NoDataMeans::Ok, State::Firing | State::NoData) => State::Resolved,
                (NoDataMeans::Ok, State::Pending) => State::Normal,
                (NoDataMeans::Ok, state) => state,
                (NoDataMeans::NoData, _) => State::NoData,
                (NoDataMeans::Firing, _) => State::Firing,
            };
        };
        self.value = Some(value);
        let holds = rule.op.holds(value, rule.threshold);
        if holds {
            self.held = Some(now);
        }
        match (self.state, holds) {
            (State::Pending, true) if now - self.since >= rule.pending_for.chrono() => {
                State::Firing
            }
            (State::Pending, true) => State::Pending,
            (State::Firing, _)
                if self
                    .held
                    .is_some_and(|held| now - held < rule.keep_firing_for.chrono())
                    || holds =>
            {
                State::Firing
            }
            (State::Firing, false) => State::Resolved,
            (_, true) if rule.pending_for.is_zero() => State::Firing,
            (_, true) => State::Pending,
            // The end of missing data is news to whoever was told of it.
            (State::NoData, false) => State::Resolved,
            (State::Pending, false) => State::Normal,
            (state, false) => state,
        }
    }
}

/// Every rule and the instances of each: rule id → source → label set.
#[derive(Default)]
pub struct Evaluator {
    rules: HashMap<i64, Arc<Rule>>,
    /// Rules by the series name they watch, so a sample finds its rules without a scan.
    by_series: HashMap<String, Vec<i64>>,
    instances: HashMap<i64, HashMap<String, HashMap<Labels, Tracked>>>,
}

impl Evaluator {
    fn index(&mut self) {
        self.by_series.clear();
        for (id, rule) in &self.rules {
            if !rule.paused {
                self.by_series
                    .entry(rule.series.name.clone())
                    .or_default()
                    .push(*id);
            }
        }
    }

    /// Adds or replaces a rule. A replaced rule's instances keep their states while they still
    /// stand for the same samples folded the same way; when its sources, series, reducer or window
    /// change they end (those in trouble resolve) and new ones begin. A rule resumed after a pause
    /// counts its no-data period from now, not from its last sample before the pause.
    pub fn set_rule(&mut self, stored: StoredRule, now: DateTime<Utc>) -> Vec<Transition> {
        let StoredRule { id, rule } = stored;
        let mut out = Vec::new();
        if let Some(old) = self.rules.get(&id) {
            let same_samples = old.source == rule.source
                && old.series == rule.series
                && old.reducer == rule.reducer
                && old.window == rule.window;
            if !same_samples {
                out = self.remove_rule(id, now);
            } else if old.paused && !rule.paused {
                let instances = self
                    .instances
                    .get_mut(&id)
                    .into_iter()
                    .flat_map(HashMap::values_mut);
                for tracked in instances.flat_map(HashMap::values_mut) {
                    tracked.seen = now;
                }
            }
        }
        self.rules.insert(id, Arc::new(rule));
        self.index();
        out
    }

    /// Removes a rule; instances in trouble resolve, so whoever was told of them hears the end.
    pub fn remove_rule(&mut self, id: i64, now: DateTime<Utc>) -> Vec<Transition> {
        let rule = self.rules.remove(&id);
        let sources = self.instances.remove(&id);
        self.index();
        let (Some(rule), Some(sources)) = (rule, sources) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (source, labels) in sources {
            for (labels, mut tracked) in labels {
                let next = match tracked.state {
                    State::Firing | State::NoData => State::Resolved,
                    State::Pending => State::Normal,
                    _ => continue,
                };
                out.push(change(id, &rule, &source, &labels, &mut tracked, next, now));
            }
        }
        out
    }

    /// Puts an instance back where its newest stored transition left it, as of `now`.
    pub fn restore(&mut self, t: Transition, now: DateTime<Utc>) {
        if !self.rules.contains_key(&t.key.rule) {
            return;
        }
        let mut tracked = Tracked::new(&self.rules[&t.key.rule], now);
        tracked.state = t.state;
        tracked.since = t.since;
        tracked.value = t.value;
        tracked.held = (t.state == State::Firing).then_some(now);
        self.instances
            .entry(t.key.rule)
            .or_default()
            .entry(t.key.source)
            .or_default()
            .insert(t.key.labels, tracked);
    }

    /// Takes committed samples of `source` and evaluates each instance they touched once.
    pub fn observe(
        &mut self,
        source: &str,
        points: &[Point],
        now: DateTime<Utc>,
    ) -> Vec<Transition> {
        let mut touched: Vec<(i64, Labels)> = Vec::new();
        for point in points {
            let Some(ids) = self.by_series.get(&point.series) else {
                continue;
            };
            for id in ids {
                let rule = &self.rules[id];
                if !rule.watches_labels(&point.labels) {
                    continue;
                }
                let sources = self.instances.entry(*id).or_default();
                // A source seen before matched the rule's pattern: it need not be matched again.
                let labels = match sources.get_mut(source) {
                    Some(labels) => labels,
                    None if rule.source.matches(source) => {
                        sources.entry(source.to_owned()).or_default()
                    }
                    None => continue,
                };
                let tracked = match labels.get_mut(&point.labels) {
                    Some(tracked) => tracked,
                    None => labels
                        .entry(point.labels.clone())
                        .or_insert_with(|| Tracked::new(rule, now)),
                };
                if !tracked.dirty {
                    touched.push((*id, point.labels.clone()));
                }
                tracked.push(point.ts, point.value, now);
            }
        }
        let mut out = Vec::new();
        for (id, labels) in touched {
            let rule = self.rules[&id].clone();
            let tracked = self
                .instances
                .get_mut(&id)
                .and_then(|s| s.get_mut(source))
                .and_then(|l| l.get_mut(&labels))
                .expect("a touched instance exists");
            tracked.dirty = false;
            let next = tracked.next(&rule, now);
            if next != tracked.state {
                out.push(change(id, &rule, source, &labels, tracked, next, now));
            }
        }
        out
    }

    /// Evaluates every instance as of `now`: pending periods end, windows empty, data goes missing.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Transition> {
        let mut out = Vec::new();
        for (id, sources) in &mut self.instances {
            let rule = &self.rules[id];
            if rule.paused {
                continue;
            }
            for (source, labels) in sources {
                for (labels, tracked) in labels {
                    let next = tracked.next(rule, now);
                    if next != tracked.state {
                        out.push(change(*id, rule, source, labels, tracked, next, now));
                    }
                }
            }
        }
        out
    }

    /// Every instance followed, in no particular order.
    pub fn instances(&self) -> Vec<Instance> {
        let mut list = Vec::new();
        for (id, sources) in &self.instances {
            let rule = &self.rules[id];
            for (source, labels) in sources {
                for (labels, tracked) in labels {
                    list.push(Instance {
                        key: Key {
                            rule: *id,
                            source: source.clone(),
                            labels: labels.clone(),
                        },
                        name: rule.name.clone(),
                        state: tracked.state,
                        value: tracked.value,
                        threshold: rule.threshold,
                        since: tracked.since,
                        severity: rule.severity,
                        summary: rule.summarise(source, labels, tracked.value),
                        rule_labels: rule.labels.clone(),
                        ack: None,
                        silenced: false,
                    });
                }
            }
        }
        list
    }

    #[cfg(test)]
    fn instance_count(&self) -> usize {
        self.instances
            .values()
            .flat_map(HashMap::values)
            .map(HashMap::len)
            .sum()
    }
}

/// Where `rule` would have fired over `samples` of `source` (in time order), each evaluated at its
/// own time: from each `firing` to the transition that ended it, the last one open until `end`.
pub fn backtest(
    rule: &Rule,
    source: &str,
    samples: &[(DateTime<Utc>, f64)],
    end: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut eval = Evaluator::default();
    let rule = Rule {
        paused: false,
        ..rule.clone()
    };
    let start = samples.first().map_or(end, |(ts, _)| *ts);
    eval.set_rule(
        StoredRule {
            id: 0,
            rule: rule.clone(),
        },
        start,
    );
    let (mut spans, mut open) = (Vec::new(), None);
    for (ts, value) in samples {
        let point = Point {
            series: rule.series.name.clone(),
            value: *value,
            ts: *ts,
            labels: rule.series.labels.clone(),
        };
        let mut changes = eval.tick(*ts);
        changes.extend(eval.observe(source, &[point], *ts));
        for t in changes {
            match (t.state, open) {
                (State::Firing, None) => open = Some(t.since),
                (State::Firing, Some(_)) | (_, None) => {}
                (_, Some(start)) => {
                    spans.push((start, t.since));
                    open = None;
                }
            }
        }
    }
    spans.extend(open.map(|start| (start, end)));
    spans
}

fn change(
    id: i64,
    rule: &Rule,
    source: &str,
    labels: &Labels,
    tracked: &mut Tracked,
    next: State,
    now: DateTime<Utc>,
) -> Transition {
    let previous = std::mem::replace(&mut tracked.state, next);
    let began = std::mem::replace(&mut tracked.since, now);
    Transition {
        key: Key {
            rule: id,
            source: source.to_owned(),
            labels: labels.clone(),
        },
        name: rule.name.clone(),
        state: next,
        previous,
        value: tracked.value,
        threshold: rule.threshold,
        severity: rule.severity,
        summary: rule.summarise(source, labels, tracked.value),
        since: now,
        began: Some(began),
        rule_labels: rule.labels.clone(),
        silenced: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn rule(extra: serde_json::Value) -> StoredRule {
        let mut rule =
            json!({"name": "hot", "source": "host:*", "series": "cpu", "op": ">", "threshold": 90});
        for (k, v) in extra.as_object().unwrap() {
            rule[k] = v.clone();
        }
        StoredRule {
            id: 1,
            rule: Rule::read(&rule).unwrap(),
        }
    }

    fn sample(value: f64, ts: i64) -> Point {
        labelled(value, ts, &[])
    }

    fn labelled(value: f64, ts: i64, labels: &[(&str, &str)]) -> Point {
        Point {
            series: "cpu".into(),
            value,
            ts: at(ts),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    fn evaluator(extra: serde_json::Value) -> Evaluator {
        let mut e = Evaluator::default();
        e.set_rule(rule(extra), at(0));
        e
    }

    /// Feeds one sample at `t` (sample time = evaluation time) and returns the new states.
    fn feed(e: &mut Evaluator, value: f64, t: i64) -> Vec<State> {
        states(e.observe("host:a", &[sample(value, t)], at(t)))
    }

    fn states(transitions: Vec<Transition>) -> Vec<State> {
        transitions.into_iter().map(|t| t.state).collect()
    }

    #[test]
    fn crossing_the_threshold_fires_at_once_without_a_pending_period_and_resolves_below_it() {
        let mut e = evaluator(json!({}));
        assert_eq!(feed(&mut e, 50.0, 0), []);
        let fired = e.observe("host:a", &[sample(95.0, 1)], at(1));
        assert_eq!(fired.len(), 1);
        let t = &fired[0];
        assert_eq!(
            (t.state, t.previous, t.value),
            (State::Firing, State::Normal, Some(95.0))
        );
        assert_eq!(
            (t.key.source.as_str(), t.since, t.threshold),
            ("host:a", at(1), 90.0)
        );
        assert_eq!(feed(&mut e, 96.0, 2), []);
        assert_eq!(feed(&mut e, 10.0, 3), [State::Resolved]);
        assert_eq!(feed(&mut e, 20.0, 4), []);
        assert_eq!(feed(&mut e, 99.0, 5), [State::Firing]);
    }

    #[test]
    fn a_pending_period_must_pass_with_the_condition_holding_before_firing() {
        let mut e = evaluator(json!({"for": "30s"}));
        assert_eq!(feed(&mut e, 95.0, 0), [State::Pending]);
        assert_eq!(feed(&mut e, 95.0, 29), []);
        assert_eq!(states(e.tick(at(30))), [State::Firing]);
        // Dropping below while pending goes back to normal, and the period starts over.
        let mut e = evaluator(json!({"for": "30s"}));
        feed(&mut e, 95.0, 0);
        assert_eq!(feed(&mut e, 50.0, 10), [State::Normal]);
        assert_eq!(feed(&mut e, 95.0, 20), [State::Pending]);
        assert_eq!(states(e.tick(at(45))), []);
        assert_eq!(states(e.tick(at(50))), [State::Firing]);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert_through_a_short_dip() {
        let mut e = evaluator(json!({"keep_firing_for": "20s"}));
        assert_eq!(feed(&mut e, 95.0, 0), [State::Firing]);
        assert_eq!(feed(&mut e, 50.0, 10), []);
        assert_eq!(feed(&mut e, 95.0, 15), []);
        assert_eq!(feed(&mut e, 50.0, 20), []);
        assert_eq!(feed(&mut e, 50.0, 34), []);
        assert_eq!(feed(&mut e, 50.0, 35), [State::Resolved]);
    }

    #[test]
    fn a_flapping_series_changes_state_once_per_crossing_and_a_batch_once_in_all() {
        let mut e = evaluator(json!({}));
        let mut seen = Vec::new();
        for (i, v) in [95.0, 50.0, 95.0, 50.0].into_iter().enumerate() {
            seen.extend(feed(&mut e, v, i as i64));
        }
        assert_eq!(
            seen,
            [
                State::Firing,
                State::Resolved,
                State::Firing,
                State::Resolved
            ]
        );
        // One batch holding the same flapping is evaluated once, on its newest sample.
        let batch: Vec<Point> = [95.0, 50.0, 95.0]
            .iter()
            .enumerate()
            .map(|(i, v)| sample(*v, 10 + i as i64))
            .collect();
        assert_eq!(states(e.observe("host:a", &batch, at(12))), [State::Firing]);
    }

    #[test]
    fn the_window_reducer_decides_and_old_samples_leave_the_window() {
        let mut e = evaluator(json!({"reducer": "avg", "window": "10s"}));
        assert_eq!(feed(&mut e, 100.0, 0), [State::Firing]);
        // avg(100, 70) = 85: no longer above.
        assert_eq!(feed(&mut e, 70.0, 5), [State::Resolved]);
        // avg(100, 70, 110) = 93.3.
        assert_eq!(feed(&mut e, 110.0, 8), [State::Firing]);
        // At 12 s the 100 has left the window: avg(70, 110) = 90, not above.
        assert_eq!(states(e.tick(at(12))), [State::Resolved]);

        let mut e = evaluator(json!({"reducer": "max", "window": "10s"}));
        feed(&mut e, 95.0, 0);
        assert_eq!(feed(&mut e, 10.0, 5), []);
        assert_eq!(states(e.tick(at(11))), [State::Resolved]);

        let mut e = evaluator(json!({"reducer": "rate", "window": "1m", "threshold": 1.5}));
        assert_eq!(feed(&mut e, 0.0, 0), []);
        assert_eq!(feed(&mut e, 10.0, 10), []);
        assert_eq!(feed(&mut e, 40.0, 20), [State::Firing]);
    }

    #[test]
    fn a_late_sample_takes_its_place_in_the_window() {
        let mut e = evaluator(json!({"reducer": "min", "window": "1m"}));
        assert_eq!(feed(&mut e, 95.0, 10), [State::Firing]);
        // Older than the newest, still in the window: the minimum drops to 50.
        assert_eq!(
            states(e.observe("host:a", &[sample(50.0, 5)], at(11))),
            [State::Resolved]
        );
    }

    #[test]
    fn no_data_means_what_the_rule_says_once_its_period_is_over() {
        for (means, expect) in [
            ("nodata", vec![State::NoData]),
            ("ok", vec![State::Resolved]),
            ("firing", vec![]),
        ] {
            let mut e =
                evaluator(json!({"window": "10s", "no_data": {"after": "1m", "means": means}}));
            assert_eq!(feed(&mut e, 95.0, 0), [State::Firing]);
            assert_eq!(states(e.tick(at(59))), [], "{means}");
            assert_eq!(states(e.tick(at(60))), expect, "{means}");
        }
        // Data coming back under the threshold resolves `nodata`.
        let mut e = evaluator(json!({"window": "10s", "no_data": {"after": "1m"}}));
        feed(&mut e, 50.0, 0);
        assert_eq!(states(e.tick(at(60))), [State::NoData]);
        assert_eq!(feed(&mut e, 50.0, 61), [State::Resolved]);
        let mut e =
            evaluator(json!({"window": "10s", "no_data": {"after": "1m", "means": "firing"}}));
        feed(&mut e, 50.0, 0);
        assert_eq!(states(e.tick(at(60))), [State::Firing]);
    }

    #[test]
    fn each_source_and_label_set_is_its_own_instance() {
        let mut e = evaluator(json!({}));
        let batch = [
            labelled(95.0, 0, &[("core", "0")]),
            labelled(10.0, 0, &[("core", "1")]),
        ];
        let fired = e.observe("host:a", &batch, at(0));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].key.labels["core"], "0");
        assert_eq!(
            states(e.observe("host:b", &[sample(99.0, 0)], at(0))),
            [State::Firing]
        );
        // Not the rule's source pattern: no instance at all.
        assert_eq!(states(e.observe("db-1", &[sample(99.0, 0)], at(0))), []);
        assert_eq!(e.instance_count(), 3);
    }

    #[test]
    fn a_restored_firing_instance_does_not_fire_again_and_still_resolves() {
        let mut e = evaluator(json!({}));
        let fired = e.observe("host:a", &[sample(95.0, 0)], at(0)).remove(0);
        let mut after = evaluator(json!({}));
        after.restore(fired, at(100));
        assert_eq!(feed(&mut after, 97.0, 101), []);
        let resolved = after.observe("host:a", &[sample(5.0, 102)], at(102));
        assert_eq!(states(resolved.clone()), [State::Resolved]);
        assert_eq!(resolved[0].previous, State::Firing);
    }

    #[test]
    fn a_backtest_finds_each_span_the_rule_would_have_fired() {
        let rule = rule(json!({"for": "20s"})).rule;
        let samples: Vec<(DateTime<Utc>, f64)> = [50.0, 95.0, 95.0, 95.0, 40.0, 99.0, 99.0, 99.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (at(i as i64 * 10), *v))
            .collect();
        // Over 90 from 10 s: pending, firing at 30 s, resolved at 40 s; over again from 50 s,
        // firing at 70 s until the end.
        assert_eq!(
            backtest(&rule, "host:a", &samples, at(100)),
            [(at(30), at(40)), (at(70), at(100))]
        );
        assert_eq!(
            backtest(&rule, "db-1", &samples, at(100)),
            [],
            "not the rule's source"
        );
    }

    #[test]
    fn a_rule_changed_to_watch_other_samples_ends_its_instances_and_one_resumed_waits_for_data() {
        let mut e = evaluator(json!({}));
        feed(&mut e, 95.0, 0);
        // A new threshold: the same samples, the same instance, evaluated anew on the next one.
        assert_eq!(
            states(e.set_rule(rule(json!({"threshold": 99})), at(1))),
            []
        );
        assert_eq!(feed(&mut e, 96.0, 2), [State::Resolved]);
        feed(&mut e, 100.0, 3);
        // Another reducer: the instance resolves and a new one starts from nothing.
        let changed = e.set_rule(rule(json!({"threshold": 99, "reducer": "max"})), at(4));
        assert_eq!(states(changed), [State::Resolved]);
        assert_eq!(e.instance_count(), 0);

        let mut e = evaluator(json!({"window": "10s", "no_data": {"after": "1m"}}));
        feed(&mut e, 50.0, 0);
        e.set_rule(
            rule(json!({"window": "10s", "no_data": {"after": "1m"}, "paused": true})),
            at(1),
        );
        e.set_rule(
            rule(json!({"window": "10s", "no_data": {"after": "1m"}})),
            at(300),
        );
        assert_eq!(
            states(e.tick(at(301))),
            [],
            "the no-data period starts at the resume"
        );
        assert_eq!(states(e.tick(at(360))), [State::NoData]);
    }

    #[test]
    fn a_rule_removed_before_it_saw_a_sample_is_gone_for_good() {
        let mut e = evaluator(json!({}));
        assert_eq!(e.remove_rule(1, at(0)), []);
        assert_eq!(feed(&mut e, 95.0, 1), []);
    }

    #[test]
    fn a_removed_rule_resolves_its_firing_instances_and_a_paused_one_is_not_evaluated() {
        let mut e = evaluator(json!({}));
        feed(&mut e, 95.0, 0);
        assert_eq!(states(e.remove_rule(1, at(1))), [State::Resolved]);
        assert_eq!(e.instance_count(), 0);
        let mut e = evaluator(json!({"paused": true}));
        assert_eq!(feed(&mut e, 95.0, 0), []);
    }
}
