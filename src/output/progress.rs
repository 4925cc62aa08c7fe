//! Progress of a run: a `progress` line every `PROGRESS_INTERVAL_SECS`
//! (done/total, outcomes, rate, ETA), or, for a person at a terminal with
//! `LOG_FORMAT=pretty`, an `indicatif` progress bar on stderr that log lines
//! print above.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::nonzero;
use super::telemetry::print_above;
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

/// Counts of finished groups, shared with the reporting task.
#[derive(Debug)]
struct Counts {
    total: u64,
    /// Named in every line when the list is split over shards.
    shard: Option<Shard>,
    started: Instant,
    /// One short lock per finished group.
    finished: Mutex<OutcomeCounts>,
}

/// A snapshot of the counts and what follows from them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub done: u64,
    pub total: u64,
    pub committed: u64,
    pub rolled_back: u64,
    pub inconsistent: u64,
    pub not_started: u64,
    /// Every count, those of verify and dry runs included.
    pub counts: OutcomeCounts,
    /// Groups finished per second since the run started.
    pub rate: f64,
    /// Seconds until every group is done at that rate; `None` before the
    /// first group is done.
    pub eta_secs: Option<u64>,
}

impl Counts {
    fn record(&self, outcome: Outcome) -> OutcomeCounts {
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        finished.add(outcome);
        *finished
    }

    fn snapshot(&self) -> Snapshot {
        snapshot(self.finished(), self.total, self.started.elapsed())
    }

    fn finished(&self) -> OutcomeCounts {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The counts of finished groups, for a reader outside the run (the
/// metrics pushes).
#[derive(Debug, Clone)]
pub struct Tally(Arc<Counts>);

impl Tally {
    /// The groups finished so far, by outcome.
    pub fn finished(&self) -> OutcomeCounts {
        self.0.finished()
    }
}

/// The snapshot for `finished` groups of `total` after `elapsed`.
pub fn snapshot(finished: OutcomeCounts, total: u64, elapsed: Duration) -> Snapshot {
    let OutcomeCounts {
        groups: done,
        committed,
        rolled_back,
        inconsistent,
        not_started,
        ..
    } = finished;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta_secs = (rate > 0.0).then(|| (total.saturating_sub(done) as f64 / rate).ceil() as u64);
    Snapshot {
        done,
        total,
        committed,
        rolled_back,
        inconsistent,
        not_started,
        counts: finished,
        rate,
        eta_secs,
    }
}

/// The progress of one run. Dropping it stops the reporting.
pub struct Progress {
    counts: Arc<Counts>,
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
            finished: Mutex::new(OutcomeCounts::default()),
        });
        if display == ProgressDisplay::Bar {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} groups, ETA {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            print_above(Some(bar.clone()));
            return Progress {
                counts,
                bar: Some(bar),
                reporter: None,
            };
        }
        let reporter = match display {
            ProgressDisplay::Lines(interval) => {
                Some(tokio::spawn(report_every(counts.clone(), interval)))
            }
            ProgressDisplay::Off | ProgressDisplay::Bar => None,
        };
        Progress {
            counts,
            bar: None,
            reporter,
        }
    }

    /// Counts one finished group.
    /// A handle on the counts of finished groups.
    pub fn tally(&self) -> Tally {
        Tally(self.counts.clone())
    }

    pub fn record(&self, outcome: Outcome) {
        let now = self.counts.record(outcome);
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

async fn report_every(counts: Arc<Counts>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = counts.snapshot();
        tracing::info!(
            target: "api_consumer::progress",
            shard = counts.shard.map(|s| s.index()),
            done = now.done,
            total = now.total,
            committed = now.committed,
            rolled_back = now.rolled_back,
            inconsistent = now.inconsistent,
            not_started = now.not_started,
            consistent = nonzero(now.counts.consistent_present + now.counts.consistent_absent),
            unknown = nonzero(now.counts.unknown),
            unchanged = nonzero(now.counts.unchanged),
            would_change = nonzero(now.counts.would_change),
            groups_per_sec = (now.rate * 10.0).round() / 10.0,
            eta_secs = now.eta_secs,
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
        let now = snapshot(counts(30, 8, 1, 1), 200, Duration::from_secs(4));
        assert_eq!(now.done, 40);
        assert_eq!(now.rate, 10.0);
        assert_eq!(now.eta_secs, Some(16));
        let start = snapshot(counts(0, 0, 0, 0), 200, Duration::ZERO);
        assert_eq!((start.rate, start.eta_secs), (0.0, None));
        let over = snapshot(counts(5, 0, 0, 0), 5, Duration::from_millis(500));
        assert_eq!(over.eta_secs, Some(0));
    }
}
