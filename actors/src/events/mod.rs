//! Domain events and the EventBus actor that carries them.
//!
//! # Contract
//! - Publishers call [`Events::publish`]: a non-blocking cast to the bus,
//!   whatever the subscribers are doing. If the bus is down the event is
//!   counted as dropped and the publisher carries on.
//! - The bus hands each event to every subscription whose kinds match, in
//!   publish order (one mailbox in, one mailbox or channel per subscriber out),
//!   so events from one publisher reach each subscriber in the order published.
//! - Each subscription has a bounded buffer. An actor subscriber's buffer is
//!   the number of its events not yet handled (ractor mailboxes are
//!   unbounded, so the bus counts with a [`Ticket`] per event that is released
//!   when the event is dropped after handling); a channel subscriber's is its
//!   channel. When a buffer is full the event is dropped *for that subscriber*
//!   and counted: a slow subscriber never slows the bus or the publishers.
//! - Subscriber actors are supervised like every other actor; one that panics
//!   is restarted and registers again (replacing its old registration), while
//!   the others and the publishers carry on.
//!
//! # Failure
//! The registry of subscriptions lives outside the bus actor (in its
//! arguments), so a restarted bus keeps delivering to the same subscribers.
//! Events in flight when the bus dies are lost: events are notifications, the
//! durable facts are in MongoDB.

pub mod audit;
pub mod counter;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;

/// What happened. Ids only: never a secret, a token or a hash.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind")]
pub enum EventKind {
    UserCreated {
        user_id: String,
    },
    UserLoggedIn {
        user_id: String,
        session_id: String,
    },
    UserLoggedOut {
        user_id: String,
        session_id: String,
    },
    TokensRefreshed {
        user_id: String,
        session_id: String,
    },
    RefreshTokenReuseDetected {
        user_id: String,
        session_id: String,
    },
    ProfileUpdated {
        user_id: String,
    },
    JobCompleted {
        job_id: String,
        job_type: String,
        attempt: i32,
    },
    JobFailed {
        job_id: String,
        job_type: String,
        attempt: i32,
        error: String,
    },
    ActorRestarted {
        actor: String,
        reason: String,
        restarts: u64,
    },
    /// A supervisor gave up on an actor (restart limit exceeded).
    ActorEscalated {
        actor: String,
        reason: String,
    },
    FaultInjected {
        actor: String,
        fault: String,
    },
}

impl EventKind {
    /// Every kind's name.
    pub const NAMES: &'static [&'static str] = &[
        "UserCreated",
        "UserLoggedIn",
        "UserLoggedOut",
        "TokensRefreshed",
        "RefreshTokenReuseDetected",
        "ProfileUpdated",
        "JobCompleted",
        "JobFailed",
        "ActorRestarted",
        "ActorEscalated",
        "FaultInjected",
    ];

    /// The kind's name, as subscribers filter on it and JSON shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UserCreated { .. } => "UserCreated",
            Self::UserLoggedIn { .. } => "UserLoggedIn",
            Self::UserLoggedOut { .. } => "UserLoggedOut",
            Self::TokensRefreshed { .. } => "TokensRefreshed",
            Self::RefreshTokenReuseDetected { .. } => "RefreshTokenReuseDetected",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::JobCompleted { .. } => "JobCompleted",
            Self::JobFailed { .. } => "JobFailed",
            Self::ActorRestarted { .. } => "ActorRestarted",
            Self::ActorEscalated { .. } => "ActorEscalated",
            Self::FaultInjected { .. } => "FaultInjected",
        }
    }
}

/// An event with its time and a per-process sequence number.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Released when the event it travels with is dropped (handled, or lost with
/// a dead subscriber's mailbox): the bus's count of a subscriber's backlog.
pub struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The message every subscriber actor receives.
pub struct Delivery {
    pub event: Arc<Event>,
    _ticket: Ticket,
}

enum Sink {
    Actor {
        actor: ActorRef<Delivery>,
        backlog: Arc<AtomicUsize>,
        stats: Arc<ActorStats>,
    },
    Channel(mpsc::Sender<Arc<Event>>),
}

struct Subscription {
    name: String,
    kinds: Option<HashSet<&'static str>>,
    capacity: usize,
    sink: Sink,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// One subscription's figures, for introspection and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStats {
    pub name: String,
    pub kinds: Option<Vec<&'static str>>,
    pub capacity: usize,
    pub backlog: usize,
    pub delivered: u64,
    pub dropped: u64,
}

/// The subscriptions, shared by the bus and the subscribers; survives restarts.
#[derive(Clone, Default)]
pub struct Registry {
    subscriptions: Arc<Mutex<Vec<Arc<Subscription>>>>,
}

impl Registry {
    fn add(&self, subscription: Subscription) {
        let mut subs = self.subscriptions.lock().expect("registry lock");
        subs.retain(|s| s.name != subscription.name);
        subs.push(Arc::new(subscription));
    }

    /// Register (or replace) the actor subscriber `name` for `kinds` (all if `None`).
    pub fn subscribe_actor(
        &self,
        name: &str,
        kinds: Option<&[&'static str]>,
        capacity: usize,
        actor: ActorRef<Delivery>,
        stats: Arc<ActorStats>,
    ) {
        self.add(Subscription {
            name: name.into(),
            kinds: kinds.map(|k| k.iter().copied().collect()),
            capacity,
            sink: Sink::Actor {
                actor,
                backlog: Arc::new(AtomicUsize::new(0)),
                stats,
            },
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
    }

    /// A channel subscription (e.g. a live stream); it ends when the receiver is dropped.
    pub fn subscribe_channel(
        &self,
        name: &str,
        kinds: Option<&[&'static str]>,
        capacity: usize,
    ) -> mpsc::Receiver<Arc<Event>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.add(Subscription {
            name: name.into(),
            kinds: kinds.map(|k| k.iter().copied().collect()),
            capacity,
            sink: Sink::Channel(tx),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        rx
    }

    pub fn stats(&self) -> Vec<SubscriptionStats> {
        self.subscriptions
            .lock()
            .expect("registry lock")
            .iter()
            .map(|s| SubscriptionStats {
                name: s.name.clone(),
                kinds: s.kinds.as_ref().map(|k| {
                    let mut k: Vec<_> = k.iter().copied().collect();
                    k.sort_unstable();
                    k
                }),
                capacity: s.capacity,
                backlog: match &s.sink {
                    Sink::Actor { backlog, .. } => backlog.load(Ordering::Acquire),
                    Sink::Channel(tx) => s.capacity - tx.capacity(),
                },
                delivered: s.delivered.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Hand `event` to every matching subscription without waiting.
    fn dispatch(&self, event: &Arc<Event>) {
        let subs: Vec<Arc<Subscription>> =
            self.subscriptions.lock().expect("registry lock").clone();
        let mut closed = Vec::new();
        for sub in subs {
            if sub
                .kinds
                .as_ref()
                .is_some_and(|k| !k.contains(event.kind.name()))
            {
                continue;
            }
            let accepted = match &sub.sink {
                Sink::Actor {
                    actor,
                    backlog,
                    stats,
                } => {
                    if backlog.fetch_add(1, Ordering::AcqRel) >= sub.capacity {
                        backlog.fetch_sub(1, Ordering::AcqRel);
                        false
                    } else {
                        let delivery = Delivery {
                            event: Arc::clone(event),
                            _ticket: Ticket(Arc::clone(backlog)),
                        };
                        // A dead subscriber drops the delivery (and its ticket); its
                        // supervisor restarts it and it registers again.
                        stats.sent();
                        actor.cast(delivery).is_ok()
                    }
                }
                Sink::Channel(tx) => match tx.try_send(Arc::clone(event)) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => false,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        closed.push(sub.name.clone());
                        continue;
                    }
                },
            };
            if accepted {
                sub.delivered.fetch_add(1, Ordering::Relaxed);
            } else {
                sub.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !closed.is_empty() {
            self.subscriptions
                .lock()
                .expect("registry lock")
                .retain(|s| !closed.contains(&s.name));
        }
    }
}

/// What the bus accepts.
pub enum BusMsg {
    Publish(Event),
}

/// The publishing side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Events {
    bus: ActorSlot<BusMsg>,
    seq: Arc<AtomicU64>,
    /// Events that could not even reach the bus (it was down).
    pub unpublished: Arc<AtomicU64>,
    published: Arc<AtomicU64>,
}

impl Events {
    pub fn new(bus: ActorSlot<BusMsg>) -> Self {
        Self {
            bus,
            seq: Arc::default(),
            unpublished: Arc::default(),
            published: Arc::default(),
        }
    }

    pub fn publish(&self, kind: EventKind) {
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at: Utc::now(),
            kind,
        };
        match self.bus.cast(BusMsg::Publish(event)) {
            Ok(()) => self.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.unpublished.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Events handed to the bus.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
pub struct BusArgs {
    pub registry: Registry,
    pub stats: Arc<ActorStats>,
}

#[derive(Clone, Copy, Default)]
pub struct EventBus;

impl Actor for EventBus {
    type Msg = BusMsg;
    type State = BusArgs;
    type Arguments = BusArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<BusMsg>,
        args: BusArgs,
    ) -> Result<BusArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<BusMsg>,
        message: BusMsg,
        state: &mut BusArgs,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.stats.begin(&myself.get_cell()).await;
        let BusMsg::Publish(event) = message;
        state.registry.dispatch(&Arc::new(event));
        Ok(())
    }
}
