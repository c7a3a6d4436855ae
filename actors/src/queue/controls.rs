//! Handler controls: what a running handler can do besides returning —
//! report its progress (`job.progress(..)`) and snooze (`job.snooze(..)`,
//! bounded by [`MAX_SNOOZE`]). How its result is stored is
//! [`crate::queue::result`]'s.
//!
//! Progress: each report replaces the last in a `watch` channel (last
//! value wins, a report never waits and never fails). The attempt's lease
//! renewer ([`crate::queue::renewer`]) writes the latest report to the
//! job at most once per `queue.progress_interval` and publishes
//! `JobProgress` once it is written, so a handler reporting in a tight
//! loop costs the store one write per interval. The renewer writes the
//! last unwritten report before the attempt's end is written (FerretDB
//! writes whole documents: a progress write after the end would undo it).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::queue::clock::Clock;

/// The longest snooze: a week. A longer one fails the attempt for good
/// (a handler asking for more is mistaken; a delayed job is what it wants).
pub const MAX_SNOOZE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest progress message kept, in characters (longer ones are cut).
pub const MAX_PROGRESS_MESSAGE_CHARS: usize = 200;

/// A handler's latest progress report, as stored on its job (`progress`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// 0 to 100.
    pub percent: i32,
    /// At most [`MAX_PROGRESS_MESSAGE_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the handler reported it (the queue's clock).
    pub at: DateTime,
}

impl Progress {
    /// `percent` capped at 100, `message` cut to its first
    /// [`MAX_PROGRESS_MESSAGE_CHARS`] characters (NUL removed: no store
    /// keeps it); an empty message is none.
    pub fn new(percent: u8, message: &str, at: DateTime) -> Self {
        let message: String = (message.chars())
            .filter(|c| *c != '\0')
            .take(MAX_PROGRESS_MESSAGE_CHARS)
            .collect();
        Self {
            percent: i32::from(percent.min(100)),
            message: (!message.is_empty()).then_some(message),
            at,
        }
    }
}

/// The controls of one running attempt, carried by its job (not stored). A job read from the store, or run outside an executor,
/// has none: its reports go nowhere.
#[derive(Clone, Default)]
pub struct Controls {
    progress: Option<(Arc<watch::Sender<Option<Progress>>>, Clock)>,
}

/// The reports of one attempt, read by its lease renewer.
pub(crate) type ProgressReports = watch::Receiver<Option<Progress>>;

impl Controls {
    /// Controls whose reports the returned receiver reads, stamped by `clock`.
    pub(crate) fn new(clock: Clock) -> (Self, ProgressReports) {
        let (sender, receiver) = watch::channel(None);
        let controls = Self {
            progress: Some((Arc::new(sender), clock)),
        };
        (controls, receiver)
    }

    /// Replace the latest report (see [`Progress::new`]).
    pub(crate) fn report(&self, percent: u8, message: &str) {
        if let Some((sender, clock)) = &self.progress {
            sender.send_replace(Some(Progress::new(percent, message, clock.now())));
        }
    }
}

impl fmt::Debug for Controls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controls")
            .field("attached", &self.progress.is_some())
            .finish()
    }
}

/// Controls are no part of a job's value: two jobs alike in what is
/// stored are equal whatever their controls.
impl PartialEq for Controls {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_bounded_percent_and_message() {
        let at = DateTime::from_millis(0);
        let long = "é".repeat(MAX_PROGRESS_MESSAGE_CHARS + 50);
        let progress = Progress::new(250, &long, at);
        assert_eq!(progress.percent, 100);
        let kept = progress.message.unwrap();
        assert_eq!(kept.chars().count(), MAX_PROGRESS_MESSAGE_CHARS);
        assert_eq!(Progress::new(40, "", at).message, None);
        assert_eq!(Progress::new(40, "a\0b", at).message.as_deref(), Some("ab"));
    }

    #[test]
    fn the_latest_report_wins_and_controls_without_a_reader_ignore_reports() {
        let (controls, reports) = Controls::new(Clock::manual_from_now());
        controls.report(10, "first");
        controls.report(20, "second");
        let latest = reports.borrow().clone().unwrap();
        assert_eq!(
            (latest.percent, latest.message.as_deref()),
            (20, Some("second"))
        );
        Controls::default().report(50, "nowhere");
    }
}
