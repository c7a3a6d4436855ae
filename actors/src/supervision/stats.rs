//! [`ActorStats`]: what ractor does not tell us about an actor — its mailbox
//! backlog, messages handled, handling time — plus the fault-injection switch.
//!
//! ractor exposes no mailbox length, so we count: every send through an
//! [`ActorSlot`](crate::supervision::slot::ActorSlot) (or an explicit [`ActorStats::sent`]
//! for self-sends) adds one, every handled message takes one off. The stats
//! belong to the actor's *place* in the tree, not its incarnation, so counts
//! survive restarts (the backlog of a dead incarnation is reset).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorCell;
use serde::{Deserialize, Serialize};

/// How many recent handling times the percentiles are computed over.
const WINDOW: usize = 1024;

/// A fault to inject into an actor's next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fault {
    /// Panic while handling the next message.
    Panic,
    /// Stop (cleanly) after the next message.
    Stop,
    /// Stall the next message for this long.
    Delay { delay_ms: u64 },
}

#[derive(Default)]
pub struct ActorStats {
    sent: AtomicU64,
    handled: AtomicU64,
    /// `handled` when the current incarnation started.
    handled_at_start: AtomicU64,
    recent: Mutex<VecDeque<u32>>,
    fault: Mutex<Option<Fault>>,
    restarts: AtomicU64,
}

/// Handling-time percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timings {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl ActorStats {
    /// One message was sent to the actor.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A new incarnation starts with an empty mailbox.
    pub fn restarted(&self) {
        let handled = self.handled.load(Ordering::Relaxed);
        self.handled_at_start.store(handled, Ordering::Relaxed);
        self.sent.store(handled, Ordering::Relaxed);
    }

    /// Count a restart of this place's actor; returns the total.
    pub fn note_restart(&self) -> u64 {
        self.restarts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Restarts of this place's actor since the service started.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Messages handled since the service started.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Messages sent but not handled yet.
    pub fn backlog(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.handled.load(Ordering::Relaxed))
    }

    pub fn timings(&self) -> Option<Timings> {
        let mut recent: Vec<u32> = self
            .recent
            .lock()
            .expect("stats lock")
            .iter()
            .copied()
            .collect();
        if recent.is_empty() {
            return None;
        }
        recent.sort_unstable();
        let at = |q: f64| recent[((recent.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Some(Timings {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        })
    }

    /// Arm a fault for the next message.
    pub fn inject(&self, fault: Fault) {
        *self.fault.lock().expect("stats lock") = Some(fault);
    }

    /// Call first thing in `handle`: applies an armed fault, then times the
    /// message until the returned guard drops.
    pub async fn begin(self: &Arc<Self>, actor: &ActorCell) -> Handling {
        let started = Instant::now();
        let fault = self.fault.lock().expect("stats lock").take();
        match fault {
            Some(Fault::Panic) => panic!("injected fault: panic"),
            Some(Fault::Stop) => actor.stop(Some("injected fault: stop".into())),
            Some(Fault::Delay { delay_ms }) => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await
            }
            None => {}
        }
        Handling {
            stats: Arc::clone(self),
            started,
        }
    }
}

/// Times one message; counts it as handled when dropped (also when the
/// handler panics, so the backlog stays true).
pub struct Handling {
    stats: Arc<ActorStats>,
    started: Instant,
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.stats.handled.fetch_add(1, Ordering::Relaxed);
        let micros = self.started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let mut recent = self.stats.recent.lock().expect("stats lock");
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(micros);
    }
}
