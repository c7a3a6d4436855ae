//! Fault injection: an operator arms a [`Fault`] on an actor's place
//! (`POST /ops/actors/{name}/fault`), and the actor meets it when it takes
//! its next message ([`ActorStats::begin`](super::stats::ActorStats::begin)).
//!
//! The switch belongs to the place, like the stats, so a fault armed while
//! the actor is down waits for its next incarnation.

use std::sync::Mutex;
use std::time::Duration;

use ractor::ActorCell;
use serde::{Deserialize, Serialize};

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

impl Fault {
    /// How logs, events and the ops API name it: `panic`, `stop`,
    /// `delay { delay_ms: 300 }`.
    pub fn describe(&self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// Meet the fault in the actor `actor`, inside its `handle`: panic,
    /// ask it to stop once this message is done, or stall its mailbox.
    async fn apply(self, actor: &ActorCell) {
        match self {
            Self::Panic => panic!("injected fault: panic"),
            Self::Stop => actor.stop(Some("injected fault: stop".into())),
            Self::Delay { delay_ms } => tokio::time::sleep(Duration::from_millis(delay_ms)).await,
        }
    }
}

/// One place's armed fault, if any: armed by an operator, taken (once) by
/// the next message.
#[derive(Debug, Default)]
pub struct FaultSwitch(Mutex<Option<Fault>>);

impl FaultSwitch {
    /// Arm `fault` for the next message (replacing one not met yet).
    pub fn arm(&self, fault: Fault) {
        *self.0.lock().expect("fault switch lock") = Some(fault);
    }

    /// Disarm and return the armed fault.
    pub fn take(&self) -> Option<Fault> {
        self.0.lock().expect("fault switch lock").take()
    }

    /// Meet the armed fault, if any, in `actor`'s current message.
    pub async fn trip(&self, actor: &ActorCell) {
        // The guard is gone before the await: `take` returns an owned value.
        if let Some(fault) = self.take() {
            fault.apply(actor).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_met_once() {
        let switch = FaultSwitch::default();
        assert_eq!(switch.take(), None);
        switch.arm(Fault::Stop);
        switch.arm(Fault::Delay { delay_ms: 5 });
        assert_eq!(
            switch.take(),
            Some(Fault::Delay { delay_ms: 5 }),
            "the last armed wins"
        );
        assert_eq!(switch.take(), None);
    }

    #[test]
    fn descriptions_are_the_ones_the_ops_api_shows() {
        assert_eq!(Fault::Panic.describe(), "panic");
        assert_eq!(Fault::Stop.describe(), "stop");
        assert_eq!(
            Fault::Delay { delay_ms: 300 }.describe(),
            "delay { delay_ms: 300 }"
        );
    }
}
