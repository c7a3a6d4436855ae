//! EventRelay: carries domain events between the instances of a fleet
//! through a Redis Stream (`{prefix}{fleet}:events`).
//!
//! # Contract
//! - Outgoing: the relay subscribes to this instance's own events
//!   ([`Scope::Local`](crate::events::bus::Scope)) with a bounded buffer
//!   (`events.relay_buffer`); a task of its own writes them to the stream in
//!   pipelined batches, trimmed to about `events.fleet_stream_len` entries.
//!   Publishers never wait on Redis: local delivery happens first, in
//!   process, and a full buffer drops (and counts) the overflow for the
//!   fleet only.
//! - Incoming: another task reads the stream on a connection of its own
//!   (`XREAD BLOCK`), from where it ended when the relay started (no
//!   history), skips this instance's entries and sends the others' events
//!   here in batches; the relay hands each to the bus as
//!   [`BusMsg::Relayed`], tagged with the instance it came from.
//! - Redis slow or down: local events go on; both tasks retry by themselves
//!   (backoff up to `events.relay_retry_max`); [`RelayStatus`] says
//!   `degraded` (readiness lists `events-relay`) and counts failures and
//!   losses for `/metrics`.
//!
//! # Failure
//! The mailbox never awaits Redis: the tasks do, and they live in a
//! `JoinSet` in the state, so they die with the actor (aborted and awaited
//! in `post_stop`, dropped with the state after a panic). A task that ends
//! (a bug) makes the relay fail, and its supervisor restarts it: a restarted
//! relay subscribes again and reads from where the stream ends then.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;

use crate::events::bus::{BusMsg, Filter};
use crate::events::config::EventsConfig;
use crate::events::Registry;
use crate::store::RedisStore;
use crate::supervision::slot::ActorSlot;
use crate::supervision::stats::ActorStats;

use super::link::{Link, STREAM};
use super::msg::RelayMsg;
use super::status::RelayStatus;
use super::{incoming, outgoing};

/// The relay's name in the tree, and its subscription's with the bus (whose
/// `dropped` figure counts the events its full buffer lost).
pub const NAME: &str = "events-relay";

#[derive(Clone)]
pub struct RelayArgs {
    pub redis: RedisStore,
    pub registry: Registry,
    pub bus: ActorSlot<BusMsg>,
    /// This instance's id.
    pub instance: Arc<str>,
    pub config: EventsConfig,
    pub status: RelayStatus,
    pub stats: Arc<ActorStats>,
}

pub struct RelayState {
    args: RelayArgs,
    tasks: JoinSet<()>,
}

#[derive(Clone, Copy, Default)]
pub struct EventRelay;

impl Actor for EventRelay {
    type Msg = RelayMsg;
    type State = RelayState;
    type Arguments = RelayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RelayMsg>,
        args: RelayArgs,
    ) -> Result<RelayState, ActorProcessingErr> {
        let capacity = args.config.relay_buffer;
        let own = args
            .registry
            .subscribe_channel(NAME, Filter::local(), capacity);
        let link = Link {
            key: args.redis.key(STREAM),
            redis: args.redis.clone(),
            instance: Arc::clone(&args.instance),
            config: args.config.clone(),
            status: args.status.clone(),
        };
        let mut tasks = JoinSet::new();
        let writer = outgoing::write(own, link.clone());
        tasks.spawn(watched(myself.clone(), "writer", writer));
        let reader = incoming::read(link, myself.clone());
        tasks.spawn(watched(myself, "reader", reader));
        Ok(RelayState { args, tasks })
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        message: RelayMsg,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.args.stats.begin(&myself.get_cell()).await;
        match message {
            RelayMsg::Received(events) => {
                let status = &state.args.status;
                for published in events {
                    match state.args.bus.cast(BusMsg::Relayed(published)) {
                        Ok(()) => status.received(),
                        Err(_) => status.lost(1),
                    }
                }
                Ok(())
            }
            RelayMsg::Ended { task, reason } => {
                Err(format!("the relay's {task} ended: {reason}").into())
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RelayMsg>,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        // Aborted at their next await, and waited for: no write to Redis
        // after the relay has stopped.
        state.tasks.shutdown().await;
        Ok(())
    }
}

/// `work`, reporting to `relay` if it ever ends — returns or panics. (Aborted
/// with the relay, it reports nothing.)
async fn watched(
    relay: ActorRef<RelayMsg>,
    task: &'static str,
    work: impl std::future::Future<Output = ()>,
) {
    let reason = match AssertUnwindSafe(work).catch_unwind().await {
        Ok(()) => "it returned".to_string(),
        Err(panic) => format!("it panicked: {}", panic_message(&*panic)),
    };
    let _ = relay.cast(RelayMsg::Ended { task, reason });
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
