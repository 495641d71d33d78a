//! A dashboard played forward from a past moment (`/d/{name}?at=…`): stored buckets and markers
//! are read in chunks ahead of the play head and fed to the same panels pushes feed when live,
//! so a replay shows what the live dashboard showed then. A timeline of the alerts and notices
//! of the span lies under the panels, to scrub along and jump between.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::chart::SeriesData;
use crate::{error::AppError, history::Marker};

/// Play head steps: this often, by this much dashboard time per step at 1×.
#[cfg(feature = "hydrate")]
const TICK_MS: i64 = 250;
#[cfg(feature = "hydrate")]
const SPEEDS: [i64; 5] = [1, 5, 10, 30, 60];
/// How near the present a replay ends.
#[cfg(feature = "hydrate")]
const CAUGHT_UP_MS: i64 = 2_000;
/// The longest timeline: a week from the start of the replay's first window.
#[cfg(feature = "hydrate")]
const TIMELINE_MS: i64 = 7 * 86_400_000;

/// What a replay plays next: the panels' buckets and the markers of a span.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplayChunk {
    /// Per panel, per series: (bucket start, average), oldest first.
    pub panels: Vec<Vec<Vec<(i64, f64)>>>,
    pub markers: Vec<Marker>,
}

/// The span `[from_ms, to_ms)` of dashboard `name` in the buckets its range draws, for a replay
/// to play; `markers_only` for the timeline, which spans more than the panels do.
#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn read_replay(
    name: String,
    range: String,
    #[server(default)] vars: BTreeMap<String, String>,
    from_ms: i64,
    to_ms: i64,
    markers_only: bool,
) -> Result<ReplayChunk, AppError> {
    use crate::error::answer;

    /// The longest span one call reads: a week of markers, or a day of buckets.
    const LONGEST_MS: i64 = 7 * 86_400_000;

    answer(async move {
        let secs = super::board::range_secs(&range)?;
        let time = |ms| {
            crate::history::within_bounds(ms)
                .ok_or_else(|| AppError::Invalid(format!("{ms} is not a time kept")))
        };
        let (from, to) = (time(from_ms)?, time(to_ms)?);
        let longest = if markers_only {
            LONGEST_MS
        } else {
            LONGEST_MS / 7
        };
        if to_ms <= from_ms || to_ms - from_ms > longest {
            return Err(AppError::Invalid(format!(
                "a replay reads 1 ms to {} h at a time",
                longest / 3_600_000
            )));
        }
        let Some(super::board::Readable {
            resolved: dashboard,
            sources,
            identity,
            ..
        }) = super::board::readable_board(name, &vars).await?
        else {
            return Err(AppError::NotFound("dashboard".into()));
        };
        let panels = match markers_only {
            true => Vec::new(),
            false => super::board::read_panels(
                &dashboard,
                &sources,
                from,
                to,
                super::board::step_ms(secs),
            )
            .await?
            .into_iter()
            .map(|panel| panel.into_iter().map(|s| s.points).collect())
            .collect(),
        };
        let markers = super::board::read_markers(&sources, &identity, from, to).await?;
        Ok(ReplayChunk { panels, markers })
    })
    .await
}

/// The buckets and markers read ahead of the play head and not played yet.
#[cfg(feature = "hydrate")]
#[derive(Default)]
struct Ahead {
    /// Per panel, per series: (bucket start, average), oldest first.
    panels: Vec<Vec<std::collections::VecDeque<(i64, f64)>>>,
    markers: std::collections::VecDeque<Marker>,
    /// Everything before this is read.
    read_to: i64,
    reading: bool,
    /// Counts seeks: a chunk asked for before the latest seek is dropped when it comes.
    generation: u32,
}

/// What a replay plays, and the panels it plays into (read by the player, in the browser only).
#[derive(Clone)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct ReplayOf {
    pub name: String,
    pub range: String,
    /// The dashboard's variables as the page chose them.
    pub vars: BTreeMap<String, String>,
    /// Where the replay starts: the panels end here when the page opens.
    pub at_ms: i64,
    pub window_ms: i64,
    pub panels: Vec<RwSignal<Vec<SeriesData>>>,
    pub markers: RwSignal<Vec<Marker>>,
}

/// A replay's player. The panels are rendered at the replayed moment without it; its code comes
/// in a module of its own, which the browser loads once the page has hydrated, and it shows once
/// that has come (the server renders nothing of it: its controls need the browser anyway).
#[component]
pub fn Replay(replay: ReplayOf) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    move || hydrated.get().then(|| player(replay.clone()))
}

fn player(replay: ReplayOf) -> AnyView {
    #[cfg(feature = "hydrate")]
    return Suspend::new(async move {
        replay_player(replay).await.unwrap_or_else(|_| {
            view! { <p class="error" role="alert">"The replay's player did not load: reload the page."</p> }
                .into_any()
        })
    })
    .into_any();
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = replay;
        ().into_any()
    }
}

/// `fallible`: a module that does not come (the server restarting) is said, where Leptos'
/// `#[lazy]` would panic.
#[cfg(feature = "hydrate")]
#[leptos::wasm_split::wasm_split(replay_player, wasm_split_path = ::leptos::wasm_split, fallible)]
fn replay_player(replay: ReplayOf) -> Result<AnyView, leptos::wasm_split::SplitLoaderError> {
    Ok(view! { <ReplayPlayer replay/> }.into_any())
}

#[cfg(feature = "hydrate")]
#[component]
fn ReplayPlayer(replay: ReplayOf) -> impl IntoView {
    let ReplayOf {
        name,
        range,
        vars,
        at_ms,
        window_ms,
        panels,
        markers,
    } = replay;
    let head = RwSignal::new(at_ms);
    let playing = RwSignal::new(false);
    let speed = RwSignal::new(10i64);
    // Times the play head waited for data not read yet: a replay that keeps up never does.
    let stalls = RwSignal::new(0u32);
    // The timeline's span and markers: known once the player has read them.
    let span = RwSignal::new(None::<(i64, i64)>);
    let timeline = RwSignal::new(Vec::<Marker>::new());
    // Source names need no escaping in an address.
    let live = vars
        .iter()
        .fold(format!("/d/{name}?range={range}"), |url, (k, v)| {
            format!("{url}&{k}={v}")
        });

    let seek = {
        let player = Player {
            name: StoredValue::new(name.clone()),
            range: StoredValue::new(range.clone()),
            vars: StoredValue::new(vars),
            window_ms,
            panels: StoredValue::new(panels),
            markers,
            head,
            playing,
            speed,
            stalls,
            ahead: StoredValue::new(Ahead {
                read_to: at_ms,
                ..Ahead::default()
            }),
        };
        player.start(at_ms, span, timeline);
        move |t: i64| player.seek(t)
    };

    let next_alert = move |_| {
        let now = head.get_untracked();
        let next = timeline.with_untracked(|all| {
            all.iter()
                .find(|m| m.is_alert() && m.t_ms > now + 1000)
                .map(|m| m.t_ms)
        });
        // Just before it, so it passes across the panels as the replay plays.
        if let Some(t) = next {
            seek(t - window_ms / 5);
            playing.set(true);
        }
    };
    let shown = super::reactive(move || {
        chrono::DateTime::from_timestamp_millis(head.get())
            .map(|t| format!("{} UTC", crate::format::second(&t)))
            .unwrap_or_default()
    });
    let percent = move |t: i64| {
        span.get().map_or(0.0, |(from, to)| {
            ((t - from) as f64 / (to - from).max(1) as f64 * 100.0).clamp(0.0, 100.0)
        })
    };
    let ticks = super::reactive(move || {
        timeline
            .get()
            .into_iter()
            .map(|m| {
                let left = format!("left: {:.3}%", percent(m.t_ms));
                let label = m.text.clone();
                let t = m.t_ms;
                view! {
                    <button type="button" class=format!("tick tick-{}", m.level) style=left
                        title=label.clone() aria-label=label data-alert=m.is_alert().to_string()
                        on:click=move |_| seek(t - window_ms / 5)></button>
                }
            })
            .collect_view()
    });
    view! {
        <section class="replay panel" aria-label="Replay" data-testid="replay" data-stalls=move || stalls.get()>
            <div class="replay-controls">
                <button type="button" data-testid="play" on:click=move |_| playing.update(|p| *p = !*p)>
                    {move || if playing.get() { "Pause" } else { "Play" }}
                </button>
                <label>"Speed "
                    <select on:change=move |ev| speed.set(event_target_value(&ev).parse().unwrap_or(1))>
                        {SPEEDS.into_iter().map(|s| view! { <option value=s selected=move || speed.get() == s>{format!("{s}×")}</option> }).collect_view()}
                    </select>
                </label>
                <button type="button" data-testid="next-alert" on:click=next_alert>"Next alert"</button>
                <time data-testid="playhead" data-ms=move || head.get()>{shown}</time>
                <a href=live data-testid="back-to-live">"Back to live"</a>
            </div>
            // Once its span is known: a value set before its bounds would be clamped to them.
            {move || span.get().map(|(min, max)| view! {
                <input type="range" aria-label="Play head" min=min max=max step="1000"
                    prop:value=move || head.get()
                    on:change=move |ev| {
                        if let Ok(t) = event_target_value(&ev).parse::<i64>() {
                            seek(t);
                        }
                    }/>
            })}
            <div class="timeline" data-testid="timeline">
                {ticks}
                <span class="playhead" style=move || format!("left: {:.3}%", percent(head.get()))></span>
            </div>
        </section>
    }
    .into_any()
}

/// The replay's moving parts, all `Copy` handles so the timer and the reads can share them.
#[cfg(feature = "hydrate")]
#[derive(Clone, Copy)]
struct Player {
    name: StoredValue<String>,
    range: StoredValue<String>,
    vars: StoredValue<BTreeMap<String, String>>,
    window_ms: i64,
    panels: StoredValue<Vec<RwSignal<Vec<SeriesData>>>>,
    markers: RwSignal<Vec<Marker>>,
    head: RwSignal<i64>,
    playing: RwSignal<bool>,
    speed: RwSignal<i64>,
    stalls: RwSignal<u32>,
    ahead: StoredValue<Ahead>,
}

#[cfg(feature = "hydrate")]
impl Player {
    fn now() -> i64 {
        js_sys::Date::now() as i64
    }

    /// Dashboard time read per chunk: a minute of play at the current speed, and at least a
    /// quarter of the window.
    fn chunk_ms(self) -> i64 {
        (60_000 * self.speed.get_untracked()).max(self.window_ms / 4)
    }

    /// Reads the timeline and starts the clock.
    fn start(
        self,
        at_ms: i64,
        span: RwSignal<Option<(i64, i64)>>,
        timeline: RwSignal<Vec<Marker>>,
    ) {
        let from = at_ms - self.window_ms;
        let to = (from + TIMELINE_MS).min(Self::now());
        let (name, range, vars) = (
            self.name.get_value(),
            self.range.get_value(),
            self.vars.get_value(),
        );
        leptos::task::spawn_local(async move {
            // Once hydrated: the server rendered the player without its span.
            span.set(Some((from, to.max(at_ms))));
            if let Ok(chunk) = read_replay(name, range, vars, from, to.max(from + 1), true).await {
                timeline.set(chunk.markers);
            }
        });
        // The first chunk is read before play is pressed.
        self.read_ahead();
        if let Ok(handle) = set_interval_with_handle(
            move || self.tick(),
            std::time::Duration::from_millis(TICK_MS as u64),
        ) {
            on_cleanup(move || handle.clear());
        }
    }

    /// Moves the play head on by one tick of dashboard time, playing what it passes.
    fn tick(self) {
        if !self.playing.get_untracked() {
            return;
        }
        let now = Self::now();
        let from = self.head.get_untracked();
        let read_to = self.ahead.with_value(|a| a.read_to);
        let mut to = from + TICK_MS * self.speed.get_untracked();
        // Within moments of the present the replay ends on what is read: the present itself
        // moves on, and the live dashboard is one click away.
        let caught_up = to >= now - CAUGHT_UP_MS;
        if caught_up {
            to = to.min(read_to);
        }
        if to > read_to {
            // Not read yet: wait for it rather than play a gap.
            self.stalls.update(|n| *n += 1);
            self.read_ahead();
            return;
        }
        let (points, markers) = self
            .ahead
            .try_update_value(|ahead| {
                let points: Vec<Vec<Vec<(i64, f64)>>> = ahead
                    .panels
                    .iter_mut()
                    .map(|panel| {
                        panel
                            .iter_mut()
                            .map(|series| {
                                let due = series.partition_point(|(t, _)| *t <= to);
                                series.drain(..due).collect()
                            })
                            .collect()
                    })
                    .collect();
                let due = ahead.markers.partition_point(|m| m.t_ms <= to);
                (points, ahead.markers.drain(..due).collect::<Vec<_>>())
            })
            .unwrap_or_default();
        self.play(points, markers);
        self.head.set(to);
        if caught_up {
            self.playing.set(false);
        }
        self.read_ahead();
    }

    /// Hands `points` and `markers` to the panels, as pushes would have.
    fn play(self, points: Vec<Vec<Vec<(i64, f64)>>>, markers: Vec<Marker>) {
        let window_ms = self.window_ms;
        self.panels.with_value(|panels| {
            for (signal, panel) in panels.iter().zip(points) {
                if panel.iter().all(Vec::is_empty) {
                    continue;
                }
                signal.update(|series| {
                    for (series, points) in series.iter_mut().zip(panel) {
                        for (t, v) in points {
                            series.push(t, v, window_ms);
                        }
                    }
                });
            }
        });
        if !markers.is_empty() {
            self.markers.update(|all| {
                all.extend(markers);
                let extra = all.len().saturating_sub(super::board::MARKERS_KEPT);
                all.drain(..extra);
            });
        }
    }

    /// Reads the next chunk when less than two are left ahead of the play head.
    fn read_ahead(self) {
        let chunk = self.chunk_ms();
        let now = Self::now();
        let (from, generation, wanted) = self.ahead.with_value(|a| {
            let wanted =
                !a.reading && a.read_to < now && a.read_to - self.head.get_untracked() < 2 * chunk;
            (a.read_to, a.generation, wanted)
        });
        if !wanted {
            return;
        }
        let to = (from + chunk).min(now);
        self.ahead.update_value(|a| a.reading = true);
        let (name, range, vars) = (
            self.name.get_value(),
            self.range.get_value(),
            self.vars.get_value(),
        );
        leptos::task::spawn_local(async move {
            let chunk = read_replay(name, range, vars, from, to, false).await;
            self.ahead.update_value(|ahead| {
                if ahead.generation != generation {
                    return;
                }
                ahead.reading = false;
                let Ok(chunk) = chunk else { return };
                ahead.read_to = to;
                ahead.panels.resize_with(chunk.panels.len(), Vec::new);
                for (panel, read) in ahead.panels.iter_mut().zip(chunk.panels) {
                    panel.resize_with(read.len(), Default::default);
                    for (series, points) in panel.iter_mut().zip(read) {
                        series.extend(points);
                    }
                }
                ahead.markers.extend(chunk.markers);
            });
        });
    }

    /// Moves the play head to `t`: the panels show the window ending there, and play goes on
    /// from it.
    fn seek(self, t: i64) {
        let generation = self.ahead.with_value(|a| a.generation) + 1;
        self.ahead.set_value(Ahead {
            read_to: t,
            reading: true,
            generation,
            ..Ahead::default()
        });
        self.head.set(t);
        let (name, range, vars) = (
            self.name.get_value(),
            self.range.get_value(),
            self.vars.get_value(),
        );
        let window_ms = self.window_ms;
        leptos::task::spawn_local(async move {
            let Ok(chunk) = read_replay(name, range, vars, t - window_ms, t, false).await else {
                // Reading ahead tries again from here on the next tick.
                self.ahead.update_value(|a| {
                    if a.generation == generation {
                        a.reading = false;
                    }
                });
                return;
            };
            if self.ahead.with_value(|a| a.generation) != generation {
                return;
            }
            self.panels.with_value(|panels| {
                for (signal, panel) in panels.iter().zip(&chunk.panels) {
                    signal.update(|series| {
                        for (series, points) in series.iter_mut().zip(panel) {
                            series.points.clear();
                            series.newest = None;
                            series.newest_count = 0;
                            for (t, v) in points {
                                series.push(*t, *v, window_ms);
                            }
                        }
                    });
                }
            });
            self.markers.set(chunk.markers);
            self.ahead.update_value(|a| a.reading = false);
            self.read_ahead();
        });
    }
}
