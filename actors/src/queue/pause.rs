//! Pausing a job type, or the whole queue, across every instance.
//!
//! A pause is a document of `queue_pauses` ([`crate::queue::store::pauses`]): `{_id: "queue"}` for the whole
//! queue, `{_id: "type:<type>"}` for one type; resuming deletes it. Both are
//! idempotent single-document writes, so two operators pausing at once on
//! two instances cannot undo each other (FerretDB's read-modify-write of a
//! shared document could).
//!
//! Every poller reads the (few) documents once per tick (at most every
//! 200 ms however short the tick), not per claim, and
//! applies what it read to its listings and claims (a listing leaves paused
//! types out; a claim's conditional update excludes them, so a job claimed
//! by id after an enqueue is held back too; nothing is claimed while the
//! whole queue is paused). Running jobs finish. So a pause stored at `t` is
//! honoured by every instance by `t + max(queue.poll_interval, 200 ms)`
//! plus one read, except by claims already in flight then (at most one per
//! executor).
//! The instance that stores a pause applies it at once.

use std::collections::BTreeSet;

/// What is paused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    /// The whole queue: nothing is claimed.
    pub queue: bool,
    /// These types are not claimed.
    pub types: BTreeSet<String>,
}

impl Pauses {
    /// Whether a job of type `kind` may not be claimed now.
    pub fn blocks(&self, kind: &str) -> bool {
        self.queue || self.types.contains(kind)
    }
}

/// What a pause or resume is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseTarget {
    Queue,
    Type(String),
}
