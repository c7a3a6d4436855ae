//! An attempt's lease renewer: the task its executor runs beside the
//! handler ([`crate::queue::executor`]), and waits for before the
//! attempt's end is written.
//!
//! # Contract
//! - Extends the attempt's lease (and its limit token's) every third of
//!   `queue.lease`, and looks
//!   for the job's cancellation marker after each renewal (firing the
//!   attempt's token when found).
//! - Writes the handler's latest progress report (fenced on the attempt) at
//!   most once per `queue.progress_interval`, then publishes `JobProgress`;
//!   once stopped, writes the last report not yet written. A report never
//!   waits for a write: the handler replaces it in a `watch` channel (see
//!   [`crate::queue::controls`]).
//!
//! # Failure
//! A failed renewal or progress write is logged and left: the next one
//! comes soon (a lease lost meanwhile is the executor's usual stale-runner
//! case, fenced by the attempt).
//!
//! # Shutdown
//! Stops when its executor says so (before the end is written: FerretDB
//! writes whole documents, so a renewal or progress write landing after the
//! end would undo it); aborted with its executor's JoinSet if the handler
//! panics.

use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Events};
use crate::queue::controls::{Progress, ProgressReports};
use crate::queue::store::JobStore;

/// What the lease renewer of one attempt needs.
pub(crate) struct Renewer {
    pub store: JobStore,
    pub events: Events,
    /// The job's id, the attempt's number, the job's type.
    pub job: (ObjectId, i32, String),
    /// The concurrency-limit token the attempt holds, renewed with its
    /// lease ([`crate::queue::limit`]).
    pub token: Option<String>,
    pub lease: Duration,
    /// At most one progress write per this long (`queue.progress_interval`).
    pub progress_interval: Duration,
}

impl Renewer {
    /// Extend the attempt's lease every third of `lease` until `stopped`,
    /// fire `cancellation` once the job's cancellation marker is found
    /// (looked for after each renewal), and write the handler's latest
    /// progress report at most once per `progress_interval` (the last one
    /// unwritten, if any, once stopped).
    pub async fn run(
        self,
        (mut stopped, cancellation): (oneshot::Receiver<()>, CancellationToken),
        mut reports: ProgressReports,
    ) {
        let (id, attempt) = (self.job.0, self.job.1);
        let mut every = tokio::time::interval(self.lease / 3);
        every.tick().await;
        let mut written: Option<Progress> = None;
        // A report waits for `next_write`; the channel closes when the
        // handler (and its job) is dropped.
        let (mut open, mut waiting) = (true, false);
        let mut next_write = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = every.tick() => {}
                changed = reports.changed(), if open && !waiting => {
                    match changed {
                        Ok(()) => waiting = true,
                        Err(_) => open = false,
                    }
                    continue;
                }
                () = tokio::time::sleep_until(next_write), if waiting => {
                    waiting = false;
                    next_write = tokio::time::Instant::now() + self.progress_interval;
                    self.write_progress(&reports, &mut written).await;
                    continue;
                }
            }
            if let Err(err) = self.store.renew(id, attempt, self.lease).await {
                tracing::warn!(target: "worker", job = %id, error = %err, "lease renewal failed");
            }
            if let Some(token) = &self.token {
                let until = self.store.clock().after(self.lease);
                if let Err(err) = self.store.limit_store().renew(token, id, until).await {
                    tracing::warn!(target: "worker", job = %id, error = %err, "limit token renewal failed");
                }
            }
            if !cancellation.is_cancelled()
                && self
                    .store
                    .cancel_requested(id, attempt)
                    .await
                    .unwrap_or(false)
            {
                tracing::info!(target: "worker", job = %id, attempt, "job cancelled by an operator; stopping it");
                cancellation.cancel();
            }
        }
        self.write_progress(&reports, &mut written).await;
    }

    /// Write the latest report unless it is `written` already, then
    /// publish it. A failed write is logged and left: the next report (or
    /// the job's end) comes soon enough.
    async fn write_progress(&self, reports: &ProgressReports, written: &mut Option<Progress>) {
        let latest = reports.borrow().clone();
        let Some(latest) = latest.filter(|latest| written.as_ref() != Some(latest)) else {
            return;
        };
        let (id, attempt, kind) = (self.job.0, self.job.1, &self.job.2);
        if let Err(err) = self.store.report_progress(id, attempt, &latest).await {
            tracing::warn!(target: "worker", job = %id, error = %err, "could not record the job's progress");
            return;
        }
        self.events.publish(Event::JobProgress {
            job_id: id.to_hex(),
            job_type: kind.clone(),
            attempt,
            percent: latest.percent,
            message: latest.message.clone(),
        });
        *written = Some(latest);
    }
}
