//! Idle connections give way at the connection cap.
//!
//! While the accept loop waits for a free slot (`server.max_connections`
//! reached), every connection that has been idle for [`idle_at_cap`]'s
//! grace — never sent a request, or answered its last one that long ago —
//! is closed (hyper's graceful shutdown: an idle connection closes at once,
//! a busy one after its response). So idle sockets, however many addresses
//! hold them, cannot keep an active client waiting for a whole
//! `server.header_read_timeout`: under the cap the idle timeout is that
//! grace instead. A request in progress is never cut.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The idle timeout at the cap: [`IDLE_AT_CAP`], or the header-read timeout
/// if that is shorter. Legitimate clients send a head within milliseconds
/// of connecting; a keep-alive connection closed here is reopened by its
/// client when it needs one.
pub const IDLE_AT_CAP: Duration = Duration::from_secs(1);

/// When a connection last became idle (`None` while a request is handled).
#[derive(Debug)]
pub struct Activity(Mutex<Option<Instant>>);

impl Activity {
    /// A connection just accepted: idle from now.
    pub fn new() -> Self {
        Self(Mutex::new(Some(Instant::now())))
    }

    pub fn busy(&self) {
        *self.0.lock().expect("activity lock") = None;
    }

    pub fn idle(&self) {
        *self.0.lock().expect("activity lock") = Some(Instant::now());
    }

    fn idle_for(&self) -> Option<Duration> {
        self.0
            .lock()
            .expect("activity lock")
            .map(|since| since.elapsed())
    }
}

/// Resolves once the server is at its cap and this connection has been
/// idle for `grace` (checked again whenever it could have become so).
/// Never resolves if the accept loop is gone.
pub async fn idle_at_cap(mut at_cap: watch::Receiver<bool>, activity: &Activity, grace: Duration) {
    loop {
        if at_cap.wait_for(|at_cap| *at_cap).await.is_err() {
            return std::future::pending().await;
        }
        match still_to_idle(activity.idle_for(), grace) {
            None => return,
            Some(wait) => tokio::time::sleep(wait).await,
        }
    }
}

/// At the cap: `None` if a connection idle for `idle_for` (`None`: busy)
/// is to close now, else how long until it could be.
fn still_to_idle(idle_for: Option<Duration>, grace: Duration) -> Option<Duration> {
    match idle_for {
        Some(idle) if idle >= grace => None,
        Some(idle) => Some(grace - idle),
        None => Some(grace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_connection_idle_for_the_grace_closes_at_once() {
        assert_eq!(still_to_idle(Some(GRACE), GRACE), None);
        assert_eq!(still_to_idle(Some(GRACE * 60), GRACE), None);
    }

    #[test]
    fn a_connection_idle_for_less_is_checked_again_when_it_could_be() {
        assert_eq!(still_to_idle(Some(Duration::ZERO), GRACE), Some(GRACE));
        assert_eq!(still_to_idle(Some(GRACE - MS), GRACE), Some(MS));
    }

    #[test]
    fn a_busy_connection_is_checked_again_a_grace_later() {
        assert_eq!(still_to_idle(None, GRACE), Some(GRACE));
    }

    #[test]
    fn activity_is_idle_from_accept_busy_in_a_request_and_idle_after_it() {
        let activity = Activity::new();
        assert!(activity.idle_for().is_some());
        activity.busy();
        assert_eq!(activity.idle_for(), None);
        activity.idle();
        assert!(activity.idle_for().expect("idle") < GRACE);
    }

    #[tokio::test]
    async fn below_the_cap_nothing_closes() {
        let (at_cap, _) = watch::channel(false);
        let activity = Activity::new();
        let waited = tokio::time::timeout(
            GRACE / 10,
            idle_at_cap(at_cap.subscribe(), &activity, Duration::ZERO),
        )
        .await;
        assert!(waited.is_err(), "closed below the cap");
        // At the cap, the same idle connection goes at once.
        at_cap.send_replace(true);
        idle_at_cap(at_cap.subscribe(), &activity, Duration::ZERO).await;
    }
}
