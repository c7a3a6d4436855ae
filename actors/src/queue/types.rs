//! [`JobTypes`]: the job types this instance runs, and those the fleet runs.
//!
//! # Contract
//! - An instance claims only the types it has a handler for (its *local*
//!   types): its listings and claims filter on `type: {$in: [...]}`, so a
//!   job of another type never reaches its executors. A job of a type that
//!   only a newer instance runs waits for it (a rolling deploy that adds a
//!   type loses nothing).
//! - Every instance publishes its local types with its heartbeat
//!   (`jobTypes`); the fleet's heartbeat task reads the live instances back
//!   every `fleet.heartbeat_interval` and sets their union here.
//! - *Registered* fleet-wide — what an enqueue or a pause accepts, what
//!   stats call handled — is this instance's local types plus the union
//!   last read. Lenient by design: the local types count before the first
//!   read and whatever the registry says, and a type stays registered until
//!   a read no longer finds it (a stale read can accept a type whose last
//!   instance just left: its jobs wait, nothing is lost).
//!
//! # Failure
//! A failed read of the registry keeps the union last read.

use std::collections::BTreeSet;
use std::sync::RwLock;

/// The job types of this instance and of the live fleet. Shared (behind an
/// `Arc`) by the producer, the poller and the fleet's heartbeat.
#[derive(Debug)]
pub struct JobTypes {
    local: BTreeSet<String>,
    /// The types the live instances published, as last read.
    fleet: RwLock<BTreeSet<String>>,
}

impl JobTypes {
    /// An instance that runs `local`; the fleet is not read yet.
    pub fn new<'a>(local: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            local: local.into_iter().map(str::to_owned).collect(),
            fleet: RwLock::default(),
        }
    }

    /// The types this instance has handlers for (the only ones it claims).
    pub fn local(&self) -> &BTreeSet<String> {
        &self.local
    }

    /// The live instances' types, as just read from the registry.
    pub fn set_fleet<'a>(&self, live: impl IntoIterator<Item = &'a String>) {
        let read: BTreeSet<String> = live.into_iter().cloned().collect();
        *self.fleet.write().unwrap_or_else(|e| e.into_inner()) = read;
    }

    /// Whether some live instance (this one included) handles `kind`.
    pub fn is_registered(&self, kind: &str) -> bool {
        self.local.contains(kind) || self.fleet_read().contains(kind)
    }

    /// Every type some live instance (this one included) handles, sorted.
    pub fn registered(&self) -> Vec<String> {
        let fleet = self.fleet_read();
        self.local.union(&fleet).cloned().collect()
    }

    /// Of `kinds`, those no live instance handles, sorted.
    pub fn unhandled<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let unhandled: BTreeSet<&str> = kinds
            .into_iter()
            .filter(|kind| !self.is_registered(kind))
            .collect();
        unhandled.into_iter().map(str::to_owned).collect()
    }

    fn fleet_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<String>> {
        self.fleet.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_local_types_are_registered_before_the_fleet_is_read() {
        let kinds = JobTypes::new(["noop", "a"]);
        assert!(kinds.is_registered("a") && !kinds.is_registered("b"));
        assert_eq!(kinds.registered(), types(&["a", "noop"]));
    }

    #[test]
    fn registered_is_the_union_of_the_local_types_and_the_fleets() {
        let kinds = JobTypes::new(["noop", "a"]);
        kinds.set_fleet(&types(&["noop", "b"]));
        assert!(kinds.is_registered("b"), "another instance runs it");
        assert!(
            kinds.is_registered("a"),
            "a read without it leaves it local"
        );
        assert_eq!(kinds.registered(), types(&["a", "b", "noop"]));
        assert_eq!(kinds.local().len(), 2, "claims stay local");
        kinds.set_fleet(&types(&["noop"]));
        assert!(!kinds.is_registered("b"), "its last instance left");
    }

    #[test]
    fn unhandled_types_are_those_no_live_instance_registers() {
        let kinds = JobTypes::new(["noop"]);
        kinds.set_fleet(&types(&["b"]));
        assert_eq!(
            kinds.unhandled(["z", "noop", "b", "c", "z"]),
            types(&["c", "z"])
        );
    }
}
