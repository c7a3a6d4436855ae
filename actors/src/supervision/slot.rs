//! [`ActorSlot`]: a stable handle to an actor that may be restarted.
//!
//! A supervised actor gets a new `ActorRef` every time it is restarted, so code
//! outside the tree (HTTP handlers, other actors) must never hold on to a raw
//! `ActorRef`. It holds the slot instead; the supervisor puts the live reference
//! in it after every (re)start and takes it out when the actor dies.
//!
//! We deliberately do not use ractor's global name registry: it is global to the
//! process, and tests run many independent applications in one process.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::supervision::mailbox::{message_kind, DeadLetter, DeadReason};
use crate::supervision::stats::ActorStats;

/// Why a call to an actor produced no answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The actor is not running (between a crash and its restart, or after the
    /// supervisor gave up), or it died while handling this very message.
    #[error("the {0} actor is unavailable")]
    Unavailable(&'static str),
    /// The actor did not answer within the call timeout.
    #[error("the {0} actor did not answer in time")]
    Timeout(&'static str),
}

/// A shared, swappable reference to the current incarnation of one actor.
pub struct ActorSlot<M: Message> {
    name: &'static str,
    current: Arc<RwLock<Option<ActorRef<M>>>>,
    stats: Arc<ActorStats>,
}

impl<M: Message> Clone for ActorSlot<M> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            current: Arc::clone(&self.current),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<M: Message> ActorSlot<M> {
    /// An empty slot for the actor called `name` (used in errors and logs).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            current: Arc::new(RwLock::new(None)),
            stats: Arc::default(),
        }
    }

    /// Counts and fault switch of this actor (shared by every incarnation).
    pub fn stats(&self) -> Arc<ActorStats> {
        Arc::clone(&self.stats)
    }

    /// The actor's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Called by the supervisor after (re)starting the actor. Messages sent
    /// to the last incarnation since it stopped are its dead letters.
    pub fn set(&self, actor: ActorRef<M>) {
        self.lost(DeadReason::LeftInMailbox, self.stats.restarted());
        *self.current.write().expect("actor slot lock poisoned") = Some(actor);
    }

    /// Called by the supervisor when the actor has stopped: what its
    /// mailbox held is lost (dead letters).
    pub fn clear(&self) {
        self.current
            .write()
            .expect("actor slot lock poisoned")
            .take();
        self.lost(DeadReason::LeftInMailbox, self.stats.restarted());
    }

    /// `n` messages for this actor never reached it.
    fn lost(&self, reason: DeadReason, n: u64) {
        let letter = DeadLetter {
            actor: self.name,
            message: message_kind::<M>(),
            reason,
            at: chrono::Utc::now(),
        };
        self.stats.dead_letter(letter, n);
    }

    /// The live reference, if the actor is running; a send to it when it
    /// is not is a dead letter.
    fn live(&self) -> Result<ActorRef<M>, CallError> {
        self.get()
            .inspect_err(|_| self.lost(DeadReason::NotRunning, 1))
    }

    /// The live reference, if the actor is running.
    pub fn get(&self) -> Result<ActorRef<M>, CallError> {
        self.current
            .read()
            .expect("actor slot lock poisoned")
            .clone()
            .ok_or(CallError::Unavailable(self.name))
    }

    /// Fire-and-forget send. Errors only if the actor is not running (a
    /// dead letter).
    pub fn cast(&self, message: M) -> Result<(), CallError> {
        let actor = self.live()?;
        self.stats.sent();
        actor
            .cast(message)
            .map_err(|_| CallError::Unavailable(self.name))
    }

    /// Request/response with a deadline. An actor that dies while holding the
    /// reply port drops it, which turns into a prompt `Unavailable` rather than
    /// a wait for the whole timeout. A call to an actor that is not
    /// running is a dead letter.
    pub async fn call<R, F>(&self, build: F, timeout: Duration) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(RpcReplyPort<R>) -> M,
    {
        let actor = self.live()?;
        self.stats.sent();
        match actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(CallError::Timeout(self.name)),
            Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable(self.name)),
        }
    }
}
