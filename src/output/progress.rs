//! Progress of a run: a `progress` line every `PROGRESS_INTERVAL_SECS`
//! (done/total, outcomes, rate, ETA), or, for a person at a terminal with
//! `LOG_FORMAT=pretty`, an `indicatif` progress bar on stderr that log lines
//! print above.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::telemetry::print_above;
use super::{lock, nonzero};
use crate::domain::{Outcome, OutcomeCounts, Shard};

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// Nothing but the run summary.
    #[default]
    Off,
    /// A `progress` log line at this interval.
    Lines(Duration),
    /// A progress bar on stderr, for a person at a terminal.
    Bar,
}

/// The counts of finished groups, shared by the run, the reporting task and
/// the metrics pushes.
pub type Tally = Arc<Counts>;

/// The counts behind a [`Tally`], with what a progress line shows beside
/// them.
#[derive(Debug)]
pub struct Counts {
    total: u64,
    /// Named in every line when the list is split over shards.
    shard: Option<Shard>,
    started: Instant,
    /// One short lock per finished group.
    finished: Mutex<OutcomeCounts>,
    /// The nodes down now, named in every line while there are any.
    nodes_down: Mutex<Option<String>>,
}

impl Counts {
    /// The groups finished so far, by outcome.
    pub fn finished(&self) -> OutcomeCounts {
        *lock(&self.finished)
    }

    /// Names the nodes that are down now (none: `None`).
    pub fn set_nodes_down(&self, nodes: Option<String>) {
        *lock(&self.nodes_down) = nodes;
    }
}

/// Groups finished per second after `elapsed`, and the seconds until all
/// `total` are done at that rate (`None` before the first is done).
fn pace(done: u64, total: u64, elapsed: Duration) -> (f64, Option<u64>) {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta_secs = (rate > 0.0).then(|| (total.saturating_sub(done) as f64 / rate).ceil() as u64);
    (rate, eta_secs)
}

/// The progress of one run. Dropping it stops the reporting.
pub struct Progress {
    counts: Tally,
    bar: Option<ProgressBar>,
    reporter: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting the progress of `total` groups as `display` says.
    pub fn start(total: u64, display: ProgressDisplay, shard: Shard) -> Progress {
        let counts = Arc::new(Counts {
            total,
            shard: shard.is_split().then_some(shard),
            started: Instant::now(),
            finished: Mutex::default(),
            nodes_down: Mutex::default(),
        });
        let bar = (display == ProgressDisplay::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} groups, ETA {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            print_above(Some(bar.clone()));
            bar
        });
        let reporter = match display {
            ProgressDisplay::Lines(every) => {
                Some(tokio::spawn(report_every(counts.clone(), every)))
            }
            ProgressDisplay::Off | ProgressDisplay::Bar => None,
        };
        Progress {
            counts,
            bar,
            reporter,
        }
    }

    /// A handle on the counts of finished groups.
    pub fn tally(&self) -> Tally {
        self.counts.clone()
    }

    /// Counts one finished group.
    pub fn record(&self, outcome: Outcome) {
        let now = {
            let mut finished = lock(&self.counts.finished);
            finished.add(outcome);
            *finished
        };
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if outcome != Outcome::Committed {
                bar.set_message(format!(
                    "{} rolled back, {} inconsistent, {} not started",
                    now.rolled_back, now.inconsistent, now.not_started
                ));
            }
        }
    }

    /// Stops reporting; the bar is cleared so the summary follows it.
    pub fn finish(&self) {
        if let Some(reporter) = &self.reporter {
            reporter.abort();
        }
        if let Some(bar) = &self.bar {
            print_above(None);
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

async fn report_every(counts: Tally, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = counts.finished();
        let (rate, eta_secs) = pace(now.groups, counts.total, counts.started.elapsed());
        let nodes_down = lock(&counts.nodes_down).clone();
        tracing::info!(
            target: "api_consumer::progress",
            shard = counts.shard.map(|s| s.index()),
            done = now.groups, total = counts.total,
            committed = now.committed, rolled_back = now.rolled_back,
            inconsistent = now.inconsistent, not_started = now.not_started,
            consistent = nonzero(now.consistent_present + now.consistent_absent),
            unknown = nonzero(now.unknown), unchanged = nonzero(now.unchanged),
            would_change = nonzero(now.would_change),
            groups_per_sec = (rate * 10.0).round() / 10.0,
            eta_secs,
            nodes_down,
            "progress"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_follow_the_counts() {
        let counts = |committed, rolled_back, inconsistent, not_started| OutcomeCounts {
            groups: committed + rolled_back + inconsistent + not_started,
            committed,
            rolled_back,
            inconsistent,
            not_started,
            ..OutcomeCounts::default()
        };
        let now = counts(30, 8, 1, 1);
        assert_eq!(now.groups, 40);
        let (rate, eta_secs) = pace(now.groups, 200, Duration::from_secs(4));
        assert_eq!(rate, 10.0);
        assert_eq!(eta_secs, Some(16));
        let start = counts(0, 0, 0, 0);
        assert_eq!(pace(start.groups, 200, Duration::ZERO), (0.0, None));
        let over = counts(5, 0, 0, 0);
        assert_eq!(pace(over.groups, 5, Duration::from_millis(500)).1, Some(0));
    }
}
