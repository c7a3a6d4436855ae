//! The children of the root supervisor, one builder each, and the identity
//! this instance publishes (its id, its heartbeat).

use crate::cache::{
    CacheArgs, CacheClient, CacheMsg, CacheStats, Invalidator, LocalTier, ProfileSource,
};
use crate::events::audit::{AuditLog, SubscriberArgs};
use crate::events::bus::{BusArgs, BusMsg, EventBus};
use crate::events::counter::{CounterArgs, EventCounter, EventCounts};
use crate::events::relay::{self, EventRelay, RelayArgs};
use crate::events::Registry;
use crate::fleet::actor::{FleetActor, FleetArgs, FleetMsg};
use crate::fleet::beat::{Beat, Identity};
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::registry::FleetStore;
use crate::limits::AddressLimit;
use crate::queue::poller::{PollerArgs, QueuePollerActor};
use crate::queue::producer::JobQueue;
use crate::queue::schedule::Schedule;
use crate::queue::scheduler::{QueueSchedulerActor, SchedulerArgs, SchedulerMsg};
use crate::queue::shared::Queue;
use crate::queue::store::JobStore;
use crate::queue::store::SlotStore;
use crate::queue::types::JobTypes;
use crate::queue::QueueHandle;
use crate::store::RedisStore;
use crate::supervision::slot::ActorSlot;
use crate::supervision::supervisor::ChildSpec;
use crate::users::idempotency::RequestScope;
use crate::users::keys::KeyRing;
use crate::users::mail_tokens::MailTokens;
use crate::users::strength::PasswordPolicy;
use crate::users::throttle::Throttle;
use crate::users::tokens::Tokens;
use crate::users::UserMsg;
use crate::users::{
    Collaborators, MailTuning, RequestTasks, Tuning, UserActor, UserArgs, UserCalls, UserService,
    Users,
};
use std::sync::Arc;

use super::{Handles, Stores, SystemConfig};

/// The QueueSchedulerActor, firing `schedules` (ticking with the poller).
pub(super) fn scheduler_child(
    settings: &SystemConfig,
    (jobs, slots): (JobStore, SlotStore),
    queue: JobQueue,
    schedules: Arc<[Schedule]>,
) -> ChildSpec {
    let slot: ActorSlot<SchedulerMsg> = ActorSlot::new("queue-scheduler");
    let args = SchedulerArgs {
        schedules,
        jobs,
        slots,
        queue,
        tick: settings.queue.poll_interval,
        retention: settings.queue.retention,
        stats: slot.stats(),
    };
    ChildSpec::new(QueueSchedulerActor, args, slot)
}

/// This instance's id, as written to jobs it holds (`lockedBy`): host,
/// process and a random suffix, so a restarted process is a new instance.
pub fn instance_id() -> String {
    format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "troupe".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

/// The host's name: `HOSTNAME`, else the kernel's, else `unknown`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// What the FleetActor's heartbeats use (and [`Fleet`] shares): this
/// instance, its pool through the queue's handle, and the `local` hook the
/// HTTP layer fills with its tree.
pub(super) fn beat(
    settings: &SystemConfig,
    redis: &RedisStore,
    instance: &Arc<str>,
    queue: (&QueueHandle, &Arc<JobTypes>),
    metrics: FleetMetrics,
) -> Beat {
    let me = Identity {
        id: Arc::clone(instance),
        host: host_name(),
        started_at: chrono::Utc::now(),
    };
    let store = FleetStore::new(redis.clone());
    let (queue, types) = (queue.0.clone(), Arc::clone(queue.1));
    Beat::new(store, me, (queue, types), settings.fleet.clone(), metrics)
}

/// The FleetActor, heartbeating this instance.
pub(super) fn fleet_child(beat: Arc<Beat>, slot: ActorSlot<FleetMsg>) -> ChildSpec {
    let args = FleetArgs {
        beat,
        stats: slot.stats(),
    };
    ChildSpec::new(FleetActor, args, slot)
}

/// The users' handle and the CacheActor's arguments. The cache loads
/// misses through the UserActor; the handle reads public profiles through
/// the cache, limited by `lookups`.
pub(super) fn users_and_cache(
    settings: &SystemConfig,
    redis: &RedisStore,
    (user_slot, cache_slot): (&ActorSlot<UserMsg>, &ActorSlot<CacheMsg>),
    cache_stats: &Arc<CacheStats>,
    (lookups, ring): (AddressLimit, KeyRing),
) -> (Users, CacheArgs) {
    let calls = UserCalls::new(user_slot.clone(), settings.call_timeout);
    let source: Arc<dyn ProfileSource> = Arc::new(calls.clone());
    let cache_args = CacheArgs {
        redis: redis.clone(),
        source,
        config: settings.cache.clone(),
        stats: Arc::clone(cache_stats),
        local: LocalTier::shared(&settings.cache, redis, cache_stats),
        call_timeout: settings.call_timeout,
        actor_stats: cache_slot.stats(),
        grace: settings.shutdown_grace,
    };
    let profiles = CacheClient::new(&cache_args, cache_slot.clone());
    let tokens = Arc::new(Tokens::new(&settings.auth, ring));
    (Users::new(calls, tokens, profiles, lookups), cache_args)
}

/// The UserActor: its service, wired to the job queue, the events, the
/// login throttle and the cache's invalidator.
pub(super) fn user_child(
    settings: &SystemConfig,
    stores: &Stores,
    a: &Handles,
    jobs: JobQueue,
) -> ChildSpec {
    let auth = &settings.auth;
    let with = Collaborators {
        db: stores.db.clone(),
        jobs,
        events: a.events.clone(),
        throttle: Throttle::new(
            stores.redis.clone(),
            auth.throttle.clone(),
            &a.limit_metrics,
        ),
        tokens: a.users.tokens(),
        cache: Invalidator::new(a.cache.clone(), settings.call_timeout),
        mail_tokens: MailTokens::new(&stores.db, &auth.refresh_secret),
    };
    let tuning = Tuning {
        bcrypt_cost: auth.bcrypt_cost,
        idempotency: auth.idempotency.clone(),
        scope: RequestScope::new(&auth.refresh_secret),
        refresh_reuse_grace: auth.refresh_reuse_grace,
        call_timeout: settings.call_timeout,
        passwords: PasswordPolicy {
            reject_guessable: auth.reject_common_passwords,
        },
        max_sessions: auth.max_sessions,
        mail: MailTuning {
            reset_ttl: auth.reset_ttl,
            verify_ttl: auth.verify_ttl,
            quota: auth.account_mails,
            clock: auth.token_clock.clone(),
        },
        require_verified_email: auth.require_verified_email,
    };
    let args = UserArgs {
        service: Arc::new(UserService::new(with, tuning)),
        stats: a.user_actor.stats(),
        tasks: RequestTasks::default(),
        grace: settings.shutdown_grace,
    };
    ChildSpec::new(UserActor, args, a.user_actor.clone())
}

/// The EventBus (publishing through `bus`) and its two subscribers, in
/// start order: the bus first, so it outlives everything that publishes.
pub(super) fn event_children(
    bus: ActorSlot<BusMsg>,
    registry: &Registry,
    counts: &EventCounts,
) -> [ChildSpec; 3] {
    let (audit, counter) = (ActorSlot::new("audit-log"), ActorSlot::new("event-counter"));
    let bus_args = BusArgs {
        registry: registry.clone(),
        stats: bus.stats(),
    };
    let audit_args = SubscriberArgs {
        registry: registry.clone(),
        stats: audit.stats(),
    };
    let counter_args = CounterArgs {
        registry: registry.clone(),
        counts: counts.clone(),
        stats: counter.stats(),
    };
    [
        ChildSpec::new(EventBus, bus_args, bus),
        ChildSpec::new(AuditLog, audit_args, audit),
        ChildSpec::new(EventCounter, counter_args, counter),
    ]
}

/// The EventRelay: this instance's events to the fleet's stream, the other
/// instances' to `bus`. Started right after the bus, before anything that
/// publishes, so it relays every event; stopped after them.
pub(super) fn relay_child(
    settings: &SystemConfig,
    redis: &RedisStore,
    bus: ActorSlot<BusMsg>,
    a: &Handles,
) -> ChildSpec {
    let slot = ActorSlot::new(relay::NAME);
    let args = RelayArgs {
        redis: redis.clone(),
        registry: a.registry.clone(),
        bus,
        instance: Arc::clone(&a.instance),
        config: settings.events.clone(),
        status: a.relay.clone(),
        stats: slot.stats(),
    };
    ChildSpec::new(EventRelay, args, slot)
}

/// The QueuePollerActor (and through it the executor pool), running the
/// job types of `queue`'s handlers from its store (the [`QueueHandle`]
/// shares the same `queue`).
pub(super) fn queue_poller(
    settings: &SystemConfig,
    queue: Arc<Queue>,
    handles: &Handles,
) -> ChildSpec {
    let args = PollerArgs {
        queue,
        grace: settings.shutdown_grace,
        policy: settings.restart,
        health: handles.tree.clone(),
        stats: handles.poller.stats(),
        executor_stats: handles.executor_stats.clone(),
        registry: handles.registry.clone(),
    };
    ChildSpec::new(QueuePollerActor, args, handles.poller.clone())
}
