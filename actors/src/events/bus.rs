//! The EventBus actor that carries domain events to their subscribers, the
//! publishing side ([`Events`]) and the subscriptions ([`Registry`]).
//!
//! # Contract
//! - Publishers call [`Events::publish`]: a non-blocking cast to the bus,
//!   whatever the subscribers are doing. If the bus is down the event is
//!   counted as dropped and the publisher carries on.
//! - Events published here reach the bus through [`Events::publish`]; events
//!   published on other instances of the fleet reach it through the relay
//!   ([`crate::events::relay`]), tagged with their instance. Each
//!   subscription chooses its [`Scope`]: this instance's events, the others', one
//!   instance's, or the whole fleet's.
//! - The bus hands each event to every subscription whose kinds and scope match, in
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

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::mpsc;

use super::event::{Event, EventKind, Published};
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;
use crate::trace::Parent;

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
    pub published: Arc<Published>,
    _ticket: Ticket,
}

impl Delivery {
    /// The span of `subscriber`'s handling of this event: a child of the
    /// publisher's span (the event's kind only, never its fields).
    pub fn span(&self, subscriber: &'static str) -> tracing::Span {
        tracing::info_span!(parent: &self.published.trace.0, "event.deliver",
            subscriber, event = self.published.kind().as_str())
    }
}

enum Sink {
    Actor {
        actor: ActorRef<Delivery>,
        backlog: Arc<AtomicUsize>,
        stats: Arc<ActorStats>,
    },
    Channel(mpsc::Sender<Arc<Published>>),
}

/// Whether a subscription's buffer took an event.
enum Handed {
    Accepted,
    /// The buffer was full (or the subscriber actor is down): dropped for
    /// this subscriber, and counted.
    Dropped,
    /// The channel's receiver is gone: the subscription ends.
    Closed,
}

impl Sink {
    /// Hand `published` over without waiting.
    fn hand(&self, published: &Arc<Published>, capacity: usize) -> Handed {
        match self {
            Sink::Actor {
                actor,
                backlog,
                stats,
            } => {
                if backlog.fetch_add(1, Ordering::AcqRel) >= capacity {
                    backlog.fetch_sub(1, Ordering::AcqRel);
                    return Handed::Dropped;
                }
                let delivery = Delivery {
                    published: Arc::clone(published),
                    _ticket: Ticket(Arc::clone(backlog)),
                };
                // A dead subscriber drops the delivery (and its ticket); its
                // supervisor restarts it and it registers again.
                stats.sent();
                match actor.cast(delivery) {
                    Ok(()) => Handed::Accepted,
                    Err(_) => Handed::Dropped,
                }
            }
            Sink::Channel(tx) => match tx.try_send(Arc::clone(published)) {
                Ok(()) => Handed::Accepted,
                Err(mpsc::error::TrySendError::Full(_)) => Handed::Dropped,
                Err(mpsc::error::TrySendError::Closed(_)) => Handed::Closed,
            },
        }
    }

    fn backlog(&self, capacity: usize) -> usize {
        match self {
            Sink::Actor { backlog, .. } => backlog.load(Ordering::Acquire),
            Sink::Channel(tx) => capacity - tx.capacity(),
        }
    }
}

/// Whose events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only events published on this instance (what an instance logs and
    /// counts as its own).
    Local,
    /// Every instance's: this one's, and those the relay brings in.
    Fleet,
    /// Only those published on the instance with this id (this one or another).
    Instance(Arc<str>),
    /// Only those the relay brings in: every instance's but this one's.
    Others,
}

impl Scope {
    /// Whether `published` (published here if `local`) is in scope.
    fn admits(&self, published: &Published, local: bool) -> bool {
        match self {
            Scope::Local => local,
            Scope::Fleet => true,
            Scope::Instance(id) => published.instance == *id,
            Scope::Others => !local,
        }
    }
}

struct Subscription {
    name: String,
    /// `None`: every kind.
    kinds: Option<HashSet<EventKind>>,
    scope: Scope,
    capacity: usize,
    sink: Sink,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Subscription {
    fn wants(&self, published: &Published, local: bool) -> bool {
        let kind = published.kind();
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&kind))
            && self.scope.admits(published, local)
    }
}

/// One subscription's figures, for introspection and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStats {
    pub name: String,
    /// The kinds' names, sorted; `None`: every kind.
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
    /// Register (or replace) the subscription `name`.
    fn add(&self, name: &str, filter: Filter<'_>, capacity: usize, sink: Sink) {
        let subscription = Subscription {
            name: name.into(),
            kinds: filter.kinds.map(|k| k.iter().copied().collect()),
            scope: filter.scope,
            capacity,
            sink,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        let mut subs = self.subscriptions.lock().expect("registry lock");
        subs.retain(|s| s.name != subscription.name);
        subs.push(Arc::new(subscription));
    }

    /// Register (or replace) the actor subscriber `name` for the events
    /// `filter` admits.
    pub fn subscribe_actor(
        &self,
        name: &str,
        filter: Filter<'_>,
        capacity: usize,
        actor: ActorRef<Delivery>,
        stats: Arc<ActorStats>,
    ) {
        let backlog = Arc::new(AtomicUsize::new(0));
        let sink = Sink::Actor {
            actor,
            backlog,
            stats,
        };
        self.add(name, filter, capacity, sink);
    }

    /// A channel subscription (e.g. a live stream); it ends when the receiver is dropped.
    pub fn subscribe_channel(
        &self,
        name: &str,
        filter: Filter<'_>,
        capacity: usize,
    ) -> mpsc::Receiver<Arc<Published>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.add(name, filter, capacity, Sink::Channel(tx));
        rx
    }

    pub fn stats(&self) -> Vec<SubscriptionStats> {
        let subs = self.subscriptions.lock().expect("registry lock");
        subs.iter()
            .map(|s| SubscriptionStats {
                name: s.name.clone(),
                kinds: s.kinds.as_ref().map(|kinds| {
                    let mut names: Vec<_> = kinds.iter().map(|k| k.as_str()).collect();
                    names.sort_unstable();
                    names
                }),
                capacity: s.capacity,
                backlog: s.sink.backlog(s.capacity),
                delivered: s.delivered.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Hand `published` (published on this instance if `local`) to every
    /// matching subscription without waiting; forget the channel
    /// subscriptions whose receiver is gone.
    fn dispatch(&self, published: &Arc<Published>, local: bool) {
        let subs: Vec<Arc<Subscription>> =
            self.subscriptions.lock().expect("registry lock").clone();
        let mut closed = Vec::new();
        for sub in subs.iter().filter(|s| s.wants(published, local)) {
            let count = match sub.sink.hand(published, sub.capacity) {
                Handed::Accepted => &sub.delivered,
                Handed::Dropped => &sub.dropped,
                Handed::Closed => {
                    closed.push(&sub.name);
                    continue;
                }
            };
            count.fetch_add(1, Ordering::Relaxed);
        }
        if !closed.is_empty() {
            self.subscriptions
                .lock()
                .expect("registry lock")
                .retain(|s| !closed.contains(&&s.name));
        }
    }
}

/// What a subscription receives: events of `kinds` (every kind if `None`)
/// within `scope`.
#[derive(Debug, Clone)]
pub struct Filter<'a> {
    pub kinds: Option<&'a [EventKind]>,
    pub scope: Scope,
}

impl<'a> Filter<'a> {
    /// Every event of the fleet.
    pub fn fleet() -> Self {
        Self {
            kinds: None,
            scope: Scope::Fleet,
        }
    }

    /// Every event published on this instance.
    pub fn local() -> Self {
        Self {
            kinds: None,
            scope: Scope::Local,
        }
    }

    /// Narrowed to `kinds`.
    pub fn kinds(self, kinds: &'a [EventKind]) -> Self {
        Self {
            kinds: Some(kinds),
            ..self
        }
    }
}

/// What the bus accepts.
pub enum BusMsg {
    /// Published on this instance.
    Publish(Published),
    /// Published on another instance, brought in by the relay.
    Relayed(Published),
}

/// The publishing side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Events {
    bus: ActorSlot<BusMsg>,
    /// This instance's id, stamped on every event published here.
    instance: Arc<str>,
    seq: Arc<AtomicU64>,
    /// Events that could not even reach the bus (it was down).
    pub unpublished: Arc<AtomicU64>,
    published: Arc<AtomicU64>,
}

impl Events {
    /// Publishing through `bus`, as instance `instance`.
    pub fn new(bus: ActorSlot<BusMsg>, instance: Arc<str>) -> Self {
        Self {
            bus,
            instance,
            seq: Arc::default(),
            unpublished: Arc::default(),
            published: Arc::default(),
        }
    }

    /// Stamp `event` and hand it to the bus, without waiting.
    pub fn publish(&self, event: Event) {
        let published = Published {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at: Utc::now(),
            instance: Arc::clone(&self.instance),
            event,
            trace: Parent::current(),
        };
        match self.bus.cast(BusMsg::Publish(published)) {
            Ok(()) => self.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.unpublished.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Events handed to the bus.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The id of the instance these events are published on.
    pub fn instance(&self) -> &Arc<str> {
        &self.instance
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
        let (published, local) = match message {
            BusMsg::Publish(published) => (published, true),
            BusMsg::Relayed(published) => (published, false),
        };
        state.registry.dispatch(&Arc::new(published), local);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(n: u64) -> Arc<Published> {
        created_on(n, "here")
    }

    fn created_on(n: u64, instance: &str) -> Arc<Published> {
        Arc::new(Published {
            seq: n,
            at: Utc::now(),
            instance: instance.into(),
            event: Event::UserCreated {
                user_id: format!("user-{n}"),
            },
            trace: Default::default(),
        })
    }

    fn stats_of(registry: &Registry, name: &str) -> SubscriptionStats {
        let stats = registry.stats();
        stats.into_iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn dispatch_hands_each_event_to_the_kinds_asked_for() {
        let registry = Registry::default();
        let mut created_only = registry.subscribe_channel(
            "created",
            Filter::fleet().kinds(&[EventKind::UserCreated]),
            4,
        );
        let mut restarts = registry.subscribe_channel(
            "restarts",
            Filter::fleet().kinds(&[EventKind::ActorRestarted]),
            4,
        );
        let mut all = registry.subscribe_channel("all", Filter::fleet(), 4);
        registry.dispatch(&created(1), true);
        assert_eq!(created_only.try_recv().unwrap().seq, 1);
        assert_eq!(all.try_recv().unwrap().seq, 1);
        assert!(restarts.try_recv().is_err());
        let restarts = stats_of(&registry, "restarts");
        assert_eq!((restarts.delivered, restarts.dropped), (0, 0));
        assert_eq!(restarts.kinds, Some(vec!["ActorRestarted"]));
        assert_eq!(stats_of(&registry, "all").kinds, None);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_for_that_subscriber_only() {
        let registry = Registry::default();
        let mut small = registry.subscribe_channel("small", Filter::fleet(), 2);
        let mut large = registry.subscribe_channel("large", Filter::fleet(), 8);
        for n in 1..=5 {
            registry.dispatch(&created(n), true);
        }
        let small_stats = stats_of(&registry, "small");
        assert_eq!((small_stats.delivered, small_stats.dropped), (2, 3));
        assert_eq!(small_stats.backlog, 2);
        assert_eq!(stats_of(&registry, "large").delivered, 5);
        assert_eq!(small.try_recv().unwrap().seq, 1);
        assert_eq!(small.try_recv().unwrap().seq, 2);
        assert!(small.try_recv().is_err());
        assert_eq!(large.try_recv().unwrap().seq, 1);
    }

    #[test]
    fn each_subscription_gets_the_instances_its_scope_admits() {
        let registry = Registry::default();
        let mut local = registry.subscribe_channel("local", Filter::local(), 4);
        let mut fleet = registry.subscribe_channel("fleet", Filter::fleet(), 4);
        let only_b = Filter {
            kinds: None,
            scope: Scope::Instance("b".into()),
        };
        let mut from_b = registry.subscribe_channel("from-b", only_b, 4);
        let others = Filter {
            kinds: None,
            scope: Scope::Others,
        };
        let mut from_others = registry.subscribe_channel("others", others, 4);
        registry.dispatch(&created_on(1, "a"), true);
        registry.dispatch(&created_on(2, "b"), false);
        registry.dispatch(&created_on(3, "c"), false);
        let seqs = |rx: &mut mpsc::Receiver<Arc<Published>>| {
            std::iter::from_fn(|| rx.try_recv().ok().map(|p| p.seq)).collect::<Vec<_>>()
        };
        assert_eq!(seqs(&mut local), [1], "this instance's only");
        assert_eq!(seqs(&mut fleet), [1, 2, 3]);
        assert_eq!(seqs(&mut from_b), [2]);
        assert_eq!(seqs(&mut from_others), [2, 3], "the relayed ones only");
    }

    #[test]
    fn a_dropped_receiver_ends_its_subscription_and_a_name_is_registered_once() {
        let registry = Registry::default();
        drop(registry.subscribe_channel("gone", Filter::fleet(), 2));
        let _first = registry.subscribe_channel("twice", Filter::fleet(), 2);
        let mut second = registry.subscribe_channel("twice", Filter::fleet(), 2);
        assert_eq!(registry.stats().len(), 2);
        registry.dispatch(&created(1), true);
        let names: Vec<String> = registry.stats().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["twice"]);
        assert_eq!(second.try_recv().unwrap().seq, 1, "the newer registration");
    }
}
