//! Panels drawn as SVG: the server renders the recent past into the first HTML, and pushes move
//! the same elements along in the browser.

use std::fmt::Write as _;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::{axes, board::RuleLine, markup::Text, reactive};
use crate::{
    dashboards::{Thresholds, Unit},
    format,
    history::Marker,
};

/// Chart drawing area, in SVG user units; the element scales it to the panel's width.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;

/// One series as a chart holds it: buckets of `step_ms`, as history was read, that pushes extend.
/// Pushes fold into the bucket of their time, so a panel left open for a day holds about as many
/// points as its first paint did, not one per sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireSeries", from = "WireSeries")]
pub struct SeriesData {
    pub name: String,
    /// Bucket width in milliseconds, buckets aligned to multiples of it since the epoch (as the
    /// range query aligns them); 1 keeps every sample.
    pub step_ms: i64,
    /// (bucket start in milliseconds since the epoch, average), oldest first.
    pub points: Vec<(i64, f64)>,
    /// Samples averaged into the newest bucket.
    pub newest_count: i64,
    /// The newest sample (value, and its bucket's time until a push gives its own).
    pub newest: Option<(i64, f64)>,
}

impl SeriesData {
    /// A series drawn from a range query: each bucket's average at its start.
    #[cfg(feature = "ssr")]
    pub fn from_buckets(name: String, step_ms: i64, buckets: &[crate::metrics::Bucket]) -> Self {
        let points: Vec<(i64, f64)> = buckets
            .iter()
            .map(|b| (b.t.timestamp_millis(), b.avg))
            .collect();
        let newest = buckets
            .last()
            .map(|b| (b.t.timestamp_millis(), b.last.unwrap_or(b.avg)));
        Self {
            name,
            step_ms,
            newest,
            newest_count: buckets.last().map_or(0, |b| b.count),
            points,
        }
    }

    /// Takes in a pushed sample and forgets what scrolled out of `window_ms`.
    pub fn push(&mut self, t: i64, value: f64, window_ms: i64) {
        // Pushes arrive in seq order; a sample stamped before the newest one shown is history.
        if self.newest.is_some_and(|(newest, _)| newest > t) {
            return;
        }
        self.newest = Some((t, value));
        let start = t - t.rem_euclid(self.step_ms.max(1));
        match self.points.last_mut() {
            Some((last, avg)) if *last == start => {
                self.newest_count += 1;
                *avg += (value - *avg) / self.newest_count as f64;
            }
            _ => {
                self.points.push((start, value));
                self.newest_count = 1;
            }
        }
        let oldest = start - window_ms;
        let stale = self.points.partition_point(|(t, _)| *t < oldest);
        self.points.drain(..stale);
    }

    /// The newest value, as stat, gauge and legend show it.
    pub fn last(&self) -> Option<f64> {
        self.newest.map(|(_, v)| v)
    }
}

/// [`SeriesData`] as pages carry it to the browser: a page of hundreds of sparklines is mostly
/// their points, so times go as steps from the first one in their greatest common unit (usually
/// one bucket each), and values at the precision a chart can show.
#[derive(Serialize, Deserialize)]
struct WireSeries {
    name: String,
    step_ms: i64,
    /// The first point's time.
    t0: i64,
    /// The unit of `dt`, in milliseconds.
    unit: i64,
    /// Each point's time after the previous one (the first's after `t0`: 0), in `unit`s.
    dt: Vec<i64>,
    v: Vec<f64>,
    newest_count: i64,
    newest: Option<(i64, f64)>,
}

/// Significant digits a point's value keeps on the wire: far finer than a chart's pixels or its
/// labels.
const WIRE_DIGITS: i32 = 6;

fn to_wire_precision(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    // Powers of ten are exact up to 10^22: scale by one in the direction that keeps it so.
    let places = WIRE_DIGITS - 1 - v.abs().log10().floor() as i32;
    let scale = 10f64.powi(places.abs());
    let rounded = if places >= 0 {
        (v * scale).round() / scale
    } else {
        (v / scale).round() * scale
    };
    if rounded.is_finite() { rounded } else { v }
}

impl From<SeriesData> for WireSeries {
    fn from(s: SeriesData) -> Self {
        let t0 = s.points.first().map_or(0, |(t, _)| *t);
        let mut previous = t0;
        let mut dt: Vec<i64> = s
            .points
            .iter()
            .map(|(t, _)| *t - std::mem::replace(&mut previous, *t))
            .collect();
        let unit = dt.iter().fold(0, |a, b| gcd(a, b.abs())).max(1);
        dt.iter_mut().for_each(|d| *d /= unit);
        Self {
            name: s.name,
            step_ms: s.step_ms,
            t0,
            unit,
            dt,
            v: s.points
                .iter()
                .map(|(_, v)| to_wire_precision(*v))
                .collect(),
            newest_count: s.newest_count,
            newest: s.newest,
        }
    }
}

impl From<WireSeries> for SeriesData {
    fn from(w: WireSeries) -> Self {
        let mut t = w.t0;
        let points =
            w.dt.iter()
                .zip(w.v)
                .map(|(d, v)| {
                    t += d * w.unit;
                    (t, v)
                })
                .collect();
        Self {
            name: w.name,
            step_ms: w.step_ms,
            points,
            newest_count: w.newest_count,
            newest: w.newest,
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// How a value stands against its thresholds, as a CSS class.
pub fn level(value: f64, thresholds: Option<Thresholds>) -> &'static str {
    match thresholds {
        Some(t) if value >= t.critical => "critical",
        Some(t) if value >= t.warn => "warn",
        _ => "ok",
    }
}

/// The values a chart spans: percentages always 0–100, other values from 0 (or their minimum,
/// when negative) to their maximum.
fn extent(series: &[SeriesData], unit: Unit) -> (f64, f64) {
    if unit == Unit::Percent {
        return (0.0, 100.0);
    }
    let values = series.iter().flat_map(|s| s.points.iter().map(|(_, v)| *v));
    let (min, max) = values.fold((0.0f64, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if max <= min {
        (min, min + 1.0)
    } else {
        (min, max)
    }
}

/// The SVG path of `points` in a `width`×`height` box covering `[end - window, end]` and the
/// values `[lo, hi]`. A silence much longer than the series' usual spacing (a source or the
/// server down) breaks the line rather than bridging it with a slope that never happened.
pub fn path(
    points: &[(i64, f64)],
    end: i64,
    window: i64,
    (lo, hi): (f64, f64),
    width: f64,
    height: f64,
) -> String {
    let start = end - window;
    let max_gap = usual_spacing(points) * GAP_FACTOR;
    let mut d = String::with_capacity(points.len() * 16);
    let mut previous: Option<i64> = None;
    for (t, v) in points {
        let x = (t - start) as f64 / window as f64 * width;
        let y = height - (v - lo) / (hi - lo) * height;
        d.push_str(match previous {
            None => "M",
            Some(p) if t - p > max_gap => " M",
            Some(_) => " L",
        });
        tenths(&mut d, x);
        d.push(' ');
        tenths(&mut d, y);
        previous = Some(*t);
    }
    d
}

/// Writes `v` to a tenth, without a trailing `.0`. A page of sparklines writes tens of
/// thousands of these, and the float formatter's exact rounding was a tenth of its time.
fn tenths(out: &mut String, v: f64) {
    let t = (v * 10.0).round() as i64;
    if t < 0 {
        out.push('-');
    }
    let (whole, tenth) = (t.unsigned_abs() / 10, t.unsigned_abs() % 10);
    let _ = if tenth == 0 {
        write!(out, "{whole}")
    } else {
        write!(out, "{whole}.{tenth}")
    };
}

/// How many times its usual spacing a pause between two points must last to break the line.
const GAP_FACTOR: i64 = 5;

/// The median time between consecutive points: the spacing the series is sent at.
fn usual_spacing(points: &[(i64, f64)]) -> i64 {
    let mut steps: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if steps.is_empty() {
        return i64::MAX / GAP_FACTOR;
    }
    let middle = steps.len() / 2;
    *steps.select_nth_unstable(middle).1
}

/// The newest time among `series`, or `fallback` when there is no point yet.
fn newest(series: &[SeriesData], fallback: i64) -> i64 {
    series
        .iter()
        .filter_map(|s| s.points.last().map(|(t, _)| *t))
        .max()
        .unwrap_or(fallback)
}

/// Gridlines a line chart aims for along each axis.
const TIME_TICKS: usize = 6;
const VALUE_TICKS: usize = 4;

/// The instant the pointer is over on any chart of a page, shared so that every chart shows its
/// cursor and values at that time (Grafana's shared crosshair).
#[derive(Clone, Copy)]
pub struct Crosshair(RwSignal<Option<i64>>);

impl Crosshair {
    pub fn provide() {
        provide_context(Self(RwSignal::new(None)));
    }

    /// The page's crosshair, or one of this chart's own where the page shares none.
    fn expect_or_own() -> RwSignal<Option<i64>> {
        use_context::<Self>().map_or_else(|| RwSignal::new(None), |c| c.0)
    }
}

/// A span a chart was asked to show: dragged across (zoom in) or double-clicked (zoom out, twice
/// the span). The page provides it where zooming makes sense, and takes it to the address.
#[derive(Clone, Copy)]
pub struct Zoom(RwSignal<Option<(i64, i64)>>);

impl Zoom {
    pub fn provide() -> RwSignal<Option<(i64, i64)>> {
        let asked = RwSignal::new(None);
        provide_context(Self(asked));
        asked
    }
}

/// What a legend says of a series over the range: the lowest, highest and mean of its buckets,
/// and the newest sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub last: f64,
}

impl SeriesData {
    pub fn summary(&self) -> Option<Summary> {
        if self.points.is_empty() {
            return None;
        }
        let values = self.points.iter().map(|(_, v)| *v);
        let (min, max, sum) = values.fold((f64::MAX, f64::MIN, 0.0), |(lo, hi, sum), v| {
            (lo.min(v), hi.max(v), sum + v)
        });
        Some(Summary {
            min,
            max,
            avg: sum / self.points.len() as f64,
            last: self.last()?,
        })
    }

    /// The value of the bucket nearest `t`.
    fn at(&self, t: i64) -> Option<f64> {
        let nearest = self.points.iter().min_by_key(|(pt, _)| (pt - t).abs())?;
        Some(nearest.1)
    }
}

/// A time-series line chart of one or more series, with time and value gridlines, threshold
/// bands, and a legend of each series' min, max, average and last value.
#[component]
pub fn LineChart(
    #[prop(into)] series: Signal<Vec<SeriesData>>,
    /// Notices and alerts drawn as lines at their time.
    #[prop(into)]
    markers: Signal<Vec<Marker>>,
    window_ms: i64,
    /// The chart's right edge before any point exists.
    now_ms: i64,
    unit: Unit,
    thresholds: Option<Thresholds>,
    /// Thresholds of the alert rules watching these series.
    #[prop(optional)]
    rules: Vec<RuleLine>,
) -> impl IntoView {
    let crosshair = Crosshair::expect_or_own();
    let zoom = use_context::<Zoom>();
    // Where a drag to zoom began.
    let dragged_from = RwSignal::new(None::<i64>);
    // The right edge, and the value ticks: the first is the chart's bottom, the last its top.
    let geometry = Memo::new(move |_| {
        series.with(|all| {
            let (lo, hi) = extent(all, unit);
            let ticks = axes::value_ticks(lo, hi, unit, VALUE_TICKS);
            let range = match (ticks.first(), ticks.last()) {
                (Some(bottom), Some(top)) => (bottom.at, top.at),
                _ => (lo, hi),
            };
            (newest(all, now_ms), range, ticks)
        })
    });
    let x = move |t: i64, end: i64| (t - (end - window_ms)) as f64 / window_ms as f64 * WIDTH;
    let y = move |v: f64, (lo, hi): (f64, f64)| {
        (HEIGHT - (v - lo) / (hi - lo) * HEIGHT).clamp(0.0, HEIGHT)
    };
    let rules = StoredValue::new(rules);
    // Each part is written as markup text (`markup`).
    let body = Memo::new(move |_| {
        let (end, range, ticks) = geometry.get();
        let mut svg = String::new();
        // From warn up to critical, and from critical up to the top.
        if let Some(t) = thresholds {
            for (class, from, to) in [
                ("warn", t.warn, t.critical),
                ("critical", t.critical, range.1.max(t.critical)),
            ] {
                let (top, bottom) = (y(to, range), y(from, range));
                let _ = write!(
                    svg,
                    r#"<rect class="band {class}" x="0" width="{WIDTH}" y="{top}" height="{}"/>"#,
                    bottom - top
                );
            }
        }
        for tick in axes::time_ticks(end - window_ms, end, TIME_TICKS) {
            let x = x(tick.at, end);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{x}" x2="{x}" y1="0" y2="{HEIGHT}"/>"#
            );
        }
        for tick in &ticks {
            let y = y(tick.at, range);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="0" x2="{WIDTH}" y1="{y}" y2="{y}"/>"#
            );
        }
        // A rule's threshold outside the values shown is not drawn: at the edge it would mislead.
        rules.with_value(|rules| {
            for r in rules.iter().filter(|r| (range.0..=range.1).contains(&r.threshold)) {
                let y = y(r.threshold, range);
                let title = format!("{}: {}", r.rule, format::value(r.threshold, unit));
                let _ = write!(
                    svg,
                    r#"<line class="rule rule-{}" x1="0" x2="{WIDTH}" y1="{y}" y2="{y}" data-rule="{}"><title>{}</title></line>"#,
                    r.severity,
                    Text(&r.rule),
                    Text(&title)
                );
            }
        });
        markers.with(|all| {
            for m in all.iter().filter(|m| (end - window_ms..=end).contains(&m.t_ms)) {
                let x = x(m.t_ms, end);
                let _ = write!(
                    svg,
                    r#"<line class="marker marker-{}" x1="{x}" x2="{x}" y1="0" y2="{HEIGHT}" data-seq="{}" data-alert="{}"><title>{}</title></line>"#,
                    Text(&m.level),
                    m.seq,
                    m.is_alert(),
                    Text(&m.text)
                );
            }
        });
        series.with(|all| {
            for (i, s) in all.iter().enumerate() {
                let d = path(&s.points, end, window_ms, range, WIDTH, HEIGHT);
                let _ = write!(
                    svg,
                    r#"<path class="line line-{i}" d="{d}" data-series="{}"/>"#,
                    Text(&s.name)
                );
            }
        });
        svg
    });
    let percent = |at: f64, of: f64| at / of * 100.0;
    let x_labels = Memo::new(move |_| {
        let (end, ..) = geometry.get();
        let mut html = String::new();
        for tick in axes::time_ticks(end - window_ms, end, TIME_TICKS) {
            let left = percent(x(tick.at, end), WIDTH);
            let _ = write!(
                html,
                r#"<span class="x-label" style="left: {left:.2}%;">{}</span>"#,
                Text(&tick.label)
            );
        }
        html
    });
    let y_labels = Memo::new(move |_| {
        let (_, range, ticks) = geometry.get();
        let mut html = String::new();
        for tick in ticks {
            let y = y(tick.at, range);
            // Under its line at the top, where above it would cover the panel's title.
            let class = if y < HEIGHT * 0.1 {
                "y-label top"
            } else {
                "y-label"
            };
            let _ = write!(
                html,
                r#"<span class="{class}" style="top: {:.2}%;">{}</span>"#,
                percent(y, HEIGHT),
                Text(&tick.label)
            );
        }
        html
    });
    let legend = Memo::new(move |_| {
        let mut html = String::new();
        series.with(|all| {
            for (i, s) in all.iter().enumerate() {
                let summary = s.summary();
                let cell = |pick: fn(Summary) -> f64| {
                    summary.map_or("–".into(), |summary| format::value(pick(summary), unit))
                };
                let _ = write!(
                    html,
                    r#"<tr class="legend-{i}"><th scope="row"><span class="swatch"></span>{}</th><td>{}</td><td>{}</td><td>{}</td><td class="last">{}</td></tr>"#,
                    Text(&s.name),
                    cell(|s| s.min),
                    cell(|s| s.max),
                    cell(|s| s.avg),
                    cell(|s| s.last)
                );
            }
        });
        html
    });
    // The crosshair's instant, when it falls on this chart.
    let hovered = move || {
        let t = crosshair.get()?;
        let (end, ..) = geometry.get();
        (end - window_ms..=end).contains(&t).then_some((t, end))
    };
    let readout = reactive(move || {
        let (t, _) = hovered()?;
        let time = format!(
            "{} UTC",
            crate::format::clock(&chrono::DateTime::from_timestamp_millis(t)?)
        );
        let values = series.with(|all| {
            all.iter()
                .filter_map(|s| Some(format!("{} {}", s.name, format::value(s.at(t)?, unit))))
                .collect::<Vec<_>>()
                .join(" · ")
        });
        Some(format!("{time} — {values}"))
    });
    // The drag's selection, and the cursor.
    let overlay = Memo::new(move |_| {
        let mut svg = String::new();
        if let Some((t, end)) = hovered() {
            if let Some(from) = dragged_from.get() {
                let (left, right) = (x(from.min(t), end), x(from.max(t), end));
                let _ = write!(
                    svg,
                    r#"<rect class="selection" x="{left}" width="{}" y="0" height="{HEIGHT}"/>"#,
                    right - left
                );
            }
            let x = x(t, end);
            let _ = write!(
                svg,
                r#"<line class="cursor" x1="{x}" x2="{x}" y1="0" y2="{HEIGHT}"/>"#
            );
        }
        svg
    });
    // The time under the pointer.
    let time_at = move |ev: &leptos::ev::MouseEvent| -> Option<i64> {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let svg = ev.current_target()?.dyn_into::<web_sys::Element>().ok()?;
            let rect = svg.get_bounding_client_rect();
            let fraction = (f64::from(ev.client_x()) - rect.left()) / rect.width();
            let (end, ..) = geometry.get_untracked();
            Some(end - window_ms + (fraction.clamp(0.0, 1.0) * window_ms as f64) as i64)
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = ev;
            None
        }
    };
    let on_move = move |ev: leptos::ev::MouseEvent| crosshair.set(time_at(&ev));
    let on_down = move |ev: leptos::ev::MouseEvent| {
        if zoom.is_some() && ev.button() == 0 {
            ev.prevent_default();
            dragged_from.set(time_at(&ev));
        }
    };
    let on_up = move |ev: leptos::ev::MouseEvent| {
        let (Some(Zoom(asked)), Some(from), Some(to)) = (zoom, dragged_from.get(), time_at(&ev))
        else {
            return;
        };
        dragged_from.set(None);
        let (from, to) = (from.min(to), from.max(to));
        // A click, or a drag too short to read, is not a zoom.
        if to - from >= (window_ms / 100).max(super::board::MIN_ZOOM_MS) {
            asked.set(Some((from, to)));
        }
    };
    let on_double_click = move |_| {
        if let Some(Zoom(asked)) = zoom {
            let (end, ..) = geometry.get_untracked();
            let middle = end - window_ms / 2;
            asked.set(Some((middle - window_ms, middle + window_ms)));
        }
    };

    view! {
        <div class="chart">
            <div class="plot">
                <svg
                    viewBox=format!("0 0 {WIDTH} {HEIGHT}")
                    preserveAspectRatio="none"
                    role="img"
                    aria-label="line chart"
                    on:mousemove=on_move
                    on:mouseleave=move |_| {
                        crosshair.set(None);
                        dragged_from.set(None);
                    }
                    on:mousedown=on_down
                    on:mouseup=on_up
                    on:dblclick=on_double_click
                >
                    <g inner_html=body></g>
                    <g inner_html=overlay></g>
                </svg>
                <div class="y-labels" aria-hidden="true" inner_html=y_labels></div>
            </div>
            <div class="x-labels" aria-hidden="true" data-testid="time-axis" inner_html=x_labels></div>
            <p class="readout" aria-live="off">{readout}</p>
            <table class="legend">
                <thead><tr><th scope="col">"series"</th><th scope="col">"min"</th><th scope="col">"max"</th><th scope="col">"avg"</th><th scope="col">"last"</th></tr></thead>
                <tbody inner_html=legend></tbody>
            </table>
        </div>
    }
}

/// The newest value, big, with its change over the window.
#[component]
pub fn Stat(
    #[prop(into)] series: Signal<Vec<SeriesData>>,
    unit: Unit,
    thresholds: Option<Thresholds>,
) -> impl IntoView {
    let values = move || {
        series.with(|all| {
            let series = all.first()?;
            Some((series.points.first()?.1, series.last()?))
        })
    };
    let class = reactive(move || {
        let state = values().map_or("ok", |(_, last)| level(last, thresholds));
        format!("stat {state}")
    });
    // Written as markup text (`markup`).
    let value = Memo::new(move |_| {
        let Some((first, last)) = values() else {
            return r#"<span class="value" data-testid="stat-value">–</span>"#.to_owned();
        };
        let (arrow, word) = if last > first {
            ("▲", "up")
        } else if last < first {
            ("▼", "down")
        } else {
            ("▶", "steady")
        };
        format!(
            r#"<span class="value" data-testid="stat-value">{}</span><span class="trend {word}" title="{word} from {}">{arrow}</span>"#,
            format::value(last, unit),
            format::value(first, unit)
        )
    });
    // The thresholds as a bar under the value, with where the value stands on it.
    let bands = thresholds.map(|t| {
        let full = full_scale(unit, Some(t));
        let share = move |v: f64| (v / full * 100.0).clamp(0.0, 100.0);
        let (warn, critical) = (share(t.warn), share(t.critical));
        let bar = Memo::new(move |_| {
            let at = values().map_or("display: none".into(), |(_, last)| {
                format!("left: {:.1}%", share(last))
            });
            format!(
                r#"<span class="ok" style="width: {warn:.1}%"></span><span class="warn" style="width: {:.1}%"></span><span class="critical" style="width: {:.1}%"></span><span class="at" style="{at}"></span>"#,
                critical - warn,
                100.0 - critical
            )
        });
        let title = format!(
            "warning from {}, critical from {}",
            format::value(t.warn, unit),
            format::value(t.critical, unit)
        );
        view! { <div class="stat-bands" title=title data-testid="stat-bands" inner_html=bar></div> }
    });
    view! {
        <p class=class inner_html=value></p>
        {bands}
    }
}

/// The value a stat's bar or a gauge's dial ends at: percentages fill to 100, other values to a
/// quarter past the critical threshold.
fn full_scale(unit: Unit, thresholds: Option<Thresholds>) -> f64 {
    match (unit, thresholds) {
        (Unit::Percent, _) => 100.0,
        (_, Some(t)) => t.critical * 1.25,
        _ => 1.0,
    }
}

/// The newest value on a half-circle dial coloured by its thresholds.
#[component]
pub fn Gauge(
    #[prop(into)] series: Signal<Vec<SeriesData>>,
    unit: Unit,
    thresholds: Option<Thresholds>,
) -> impl IntoView {
    let last = move || series.with(|all| all.first().and_then(SeriesData::last));
    let full = full_scale(unit, thresholds);
    // The thresholds as bands just outside the dial: warn up to critical, critical to the end.
    let bands = thresholds.map_or(String::new(), |t| {
        let (warn, critical) = (t.warn / full, t.critical / full);
        format!(
            r#"<path class="gauge-band warn" d="{}"/><path class="gauge-band critical" d="{}"/>"#,
            arc(warn, critical, 94.0),
            arc(critical, 1.0, 94.0)
        )
    });
    // Written as markup text (`markup`).
    let dial = Memo::new(move |_| {
        let last = last();
        format!(
            r#"{bands}<path class="gauge-track" d="{}"/><path class="gauge-fill {}" d="{}"/><text x="100" y="95" text-anchor="middle" class="gauge-value" data-testid="gauge-value">{}</text>"#,
            arc(0.0, 1.0, 80.0),
            last.map_or("ok", |v| level(v, thresholds)),
            arc(0.0, last.map_or(0.0, |v| v / full), 80.0),
            last.map_or("–".into(), |v| format::value(v, unit))
        )
    });
    view! {
        <svg class="gauge" viewBox="0 0 200 120" role="img" aria-label="gauge" inner_html=dial></svg>
    }
}

/// The SVG path of a gauge's dial from `from` to `to` (fractions of a half circle, drawn from the
/// left) at `radius` around (100, 100).
fn arc(from: f64, to: f64, radius: f64) -> String {
    let point = |fraction: f64| {
        let angle = std::f64::consts::PI * (1.0 - fraction.clamp(0.0, 1.0));
        let (sin, cos) = sin_cos(angle);
        (100.0 + radius * cos, 100.0 - radius * sin)
    };
    let ((x0, y0), (x1, y1)) = (point(from), point(to));
    format!("M{x0:.2} {y0:.2} A{radius} {radius} 0 0 1 {x1:.2} {y1:.2}")
}

/// The browser's own sine and cosine: Rust's bring their argument reduction (~5 KB of wasm) for
/// this one dial.
fn sin_cos(angle: f64) -> (f64, f64) {
    #[cfg(feature = "hydrate")]
    return (js_sys::Math::sin(angle), js_sys::Math::cos(angle));
    #[cfg(not(feature = "hydrate"))]
    angle.sin_cos()
}

/// The newest value of each series, in a table sorted by name or by value (click a heading; again
/// to reverse).
#[component]
pub fn ValueTable(
    #[prop(into)] series: Signal<Vec<SeriesData>>,
    unit: Unit,
    thresholds: Option<Thresholds>,
) -> impl IntoView {
    // (by value, descending)
    let order = RwSignal::new((false, false));
    let rows = reactive(move || {
        let (by_value, descending) = order.get();
        let mut rows: Vec<(String, Option<f64>)> =
            series.with(|all| all.iter().map(|s| (s.name.clone(), s.last())).collect());
        // One comparator for both orders: each closure given to a sort brings its own copy of
        // the sort's code into the wasm.
        rows.sort_by(|a, b| {
            if by_value {
                a.1.unwrap_or(f64::MIN).total_cmp(&b.1.unwrap_or(f64::MIN))
            } else {
                a.0.cmp(&b.0)
            }
        });
        if descending {
            rows.reverse();
        }
        rows.into_iter()
            .map(|(name, value)| {
                let class = value.map_or("ok", |v| level(v, thresholds));
                let text = value.map_or("–".into(), |v| format::value(v, unit));
                view! { <tr><th scope="row">{name}</th><td class=class>{text}</td></tr> }
            })
            .collect_view()
    });
    let heading = move |label: &'static str, by_value: bool| {
        let sorted = reactive(move || {
            let (by, descending) = order.get();
            match (by == by_value, descending) {
                (false, _) => "none",
                (true, false) => "ascending",
                (true, true) => "descending",
            }
        });
        view! {
            <th scope="col" aria-sort=sorted>
                <button type="button" on:click=move |_| order.update(|(by, descending)| {
                    *descending = *by == by_value && !*descending;
                    *by = by_value;
                })>{label}</button>
            </th>
        }
    };
    view! {
        <table class="value-table">
            <thead><tr>{heading("Series", false)}{heading("Value", true)}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// Most lines a logs panel lists.
const LOG_LINES: usize = 20;

/// The newest notices of `source`'s room and alerts of `source`, newest first.
#[component]
pub fn Logs(#[prop(into)] markers: Signal<Vec<Marker>>, source: String) -> impl IntoView {
    let room = crate::metrics::source_room(&source).ok();
    let lines = reactive(move || {
        markers.with(|all| {
            all.iter()
                .rev()
                .filter(|m| Some(&m.room) == room.as_ref() || m.source.as_ref() == Some(&source))
                .take(LOG_LINES)
                .map(|m| {
                    let time = chrono::DateTime::from_timestamp_millis(m.t_ms)
                        .map(|t| crate::format::clock(&t))
                        .unwrap_or_default();
                    view! {
                        <li class=format!("log marker-{}", m.level)>
                            <time>{time}</time> " " <span class="level">{m.level.clone()}</span> " " {m.text.clone()}
                        </li>
                    }
                })
                .collect_view()
        })
    });
    view! {
        <ol class="logs" data-testid="logs">{lines}</ol>
    }
}

/// A small line of the recent past, for lists.
#[component]
pub fn Sparkline(series: RwSignal<SeriesData>, window_ms: i64, now_ms: i64) -> impl IntoView {
    let d = reactive(move || {
        series.with(|s| {
            let all = std::slice::from_ref(s);
            let end = newest(all, now_ms);
            path(
                &s.points,
                end,
                window_ms,
                extent(all, Unit::None),
                120.0,
                28.0,
            )
        })
    });
    view! {
        <svg class="sparkline" viewBox="0 0 120 28" preserveAspectRatio="none" aria-hidden="true">
            <path d=d/>
        </svg>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_span_the_window_and_the_extent() {
        let d = path(
            &[(0, 0.0), (50, 5.0), (100, 10.0)],
            100,
            100,
            (0.0, 10.0),
            200.0,
            20.0,
        );
        assert_eq!(d, "M0 20 L100 10 L200 0");
        let d = path(&[(0, -0.26), (10, 2.25)], 10, 10, (-1.0, 3.0), 100.0, 4.0);
        assert_eq!(d, "M0 3.3 L100 0.8", "tenths, rounded");
        let d = path(&[(0, 4.0)], 10, 10, (0.0, 2.0), 100.0, 4.0);
        assert_eq!(d, "M0 -4", "above the extent: negative");
    }

    #[test]
    fn a_silence_far_longer_than_the_usual_spacing_breaks_the_line() {
        let mut points: Vec<(i64, f64)> = (0..10).map(|t| (t, 1.0)).collect();
        points.extend((60..65).map(|t| (t, 1.0)));
        let d = path(&points, 100, 100, (0.0, 2.0), 100.0, 10.0);
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert!(d.contains("L9 5 M60 5"), "{d}");
        // A series sent once a minute is not broken by its own rhythm.
        let sparse: Vec<(i64, f64)> = (0..5).map(|i| (i * 60, 1.0)).collect();
        assert_eq!(
            path(&sparse, 300, 300, (0.0, 2.0), 100.0, 10.0)
                .matches('M')
                .count(),
            1
        );
    }

    #[test]
    fn the_wire_form_keeps_times_exactly_and_values_to_six_digits() {
        let s = SeriesData {
            name: "cpu".into(),
            step_ms: 60_000,
            points: vec![
                (1_764_000_000_000, 24.516_666_666_666_666),
                (1_764_000_060_000, -0.001_234_567_8),
                (1_764_000_240_000, 0.0),
                (1_764_000_300_000, 123_456_789.0),
            ],
            newest_count: 3,
            newest: Some((1_764_000_312_345, 0.123_456_789)),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""unit":60000,"dt":[0,1,3,1]"#), "{json}");
        let back: SeriesData = serde_json::from_str(&json).unwrap();
        let times = |s: &SeriesData| s.points.iter().map(|(t, _)| *t).collect::<Vec<_>>();
        assert_eq!(times(&back), times(&s));
        let values: Vec<f64> = back.points.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, vec![24.5167, -0.00123457, 0.0, 123_457_000.0]);
        assert_eq!(back.newest, s.newest, "the newest sample goes as it is");
        assert_eq!(back.newest_count, 3);
        let empty: SeriesData =
            serde_json::from_str(&serde_json::to_string(&SeriesData::default()).unwrap()).unwrap();
        assert_eq!(empty, SeriesData::default());
    }

    #[test]
    fn pushed_points_scroll_old_ones_out_and_skip_older_stamps() {
        let mut s = SeriesData::default();
        for t in [0, 10, 20, 15, 30] {
            s.push(t, t as f64, 15);
        }
        assert_eq!(s.points, vec![(20, 20.0), (30, 30.0)]);
        assert_eq!(s.last(), Some(30.0));
    }

    #[test]
    fn pushes_fold_into_the_bucket_of_their_time() {
        // As drawn from history: two buckets of 10 ms, the newest averaging 2 samples.
        let mut s = SeriesData {
            step_ms: 10,
            points: vec![(0, 1.0), (10, 4.0)],
            newest_count: 2,
            newest: Some((10, 4.0)),
            ..SeriesData::default()
        };
        s.push(17, 7.0, 1000);
        assert_eq!(s.points, vec![(0, 1.0), (10, 5.0)]);
        assert_eq!(
            s.last(),
            Some(7.0),
            "the newest sample, not its bucket's average"
        );
        s.push(23, 2.0, 1000);
        s.push(29, 4.0, 1000);
        assert_eq!(s.points, vec![(0, 1.0), (10, 5.0), (20, 3.0)]);
        s.push(25, 100.0, 1000);
        assert_eq!(s.last(), Some(4.0), "older than the newest sample: ignored");
        for t in (30..10_000).step_by(3) {
            s.push(t, 1.0, 1000);
        }
        assert_eq!(
            s.points.len(),
            101,
            "a window of 1000 ms holds 100 buckets, and the edge"
        );
    }

    #[test]
    fn a_summary_spans_the_buckets_and_ends_on_the_newest_sample() {
        let mut s = SeriesData {
            step_ms: 10,
            points: vec![(0, 4.0), (10, 1.0), (20, 7.0)],
            newest_count: 1,
            newest: Some((20, 7.0)),
            ..SeriesData::default()
        };
        s.push(25, 9.0, 1000);
        let summary = s.summary().unwrap();
        assert_eq!((summary.min, summary.max, summary.last), (1.0, 8.0, 9.0));
        assert!((summary.avg - 13.0 / 3.0).abs() < 1e-9, "{summary:?}");
        assert_eq!(SeriesData::default().summary(), None);
    }

    #[test]
    fn a_gauge_arc_runs_clockwise_from_the_left_within_the_half_circle() {
        assert_eq!(
            arc(0.0, 1.0, 80.0),
            "M20.00 100.00 A80 80 0 0 1 180.00 100.00"
        );
        assert_eq!(
            arc(0.0, 0.5, 80.0),
            "M20.00 100.00 A80 80 0 0 1 100.00 20.00"
        );
        assert_eq!(
            arc(0.5, 7.0, 10.0),
            "M100.00 90.00 A10 10 0 0 1 110.00 100.00",
            "clamped"
        );
    }

    #[test]
    fn levels_follow_thresholds() {
        let t = Some(Thresholds {
            warn: 70.0,
            critical: 90.0,
        });
        assert_eq!(level(50.0, t), "ok");
        assert_eq!(level(70.0, t), "warn");
        assert_eq!(level(95.0, t), "critical");
        assert_eq!(level(95.0, None), "ok");
    }
}
