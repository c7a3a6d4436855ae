//! EventCounter: an EventBus subscriber that counts this instance's events
//! by kind, for `/metrics` and introspection (each instance counts its own:
//! a sum over the fleet's scrapes counts each event once).
//!
//! # Failure
//! The counts live in [`EventCounts`], shared through its arguments, so a
//! restart keeps them; the restarted actor registers with the bus again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::events::bus::Filter;
use crate::events::{Delivery, Registry};
use crate::supervision::stats::ActorStats;

/// Events seen, by kind.
#[derive(Clone, Default)]
pub struct EventCounts(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl EventCounts {
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().expect("event counts lock").clone()
    }
}

#[derive(Clone)]
pub struct CounterArgs {
    pub registry: Registry,
    pub counts: EventCounts,
    pub stats: Arc<ActorStats>,
}

#[derive(Clone, Copy, Default)]
pub struct EventCounter;

impl Actor for EventCounter {
    type Msg = Delivery;
    type State = CounterArgs;
    type Arguments = CounterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Delivery>,
        args: CounterArgs,
    ) -> Result<CounterArgs, ActorProcessingErr> {
        args.registry.subscribe_actor(
            "event-counter",
            Filter::local(),
            65_536,
            myself,
            Arc::clone(&args.stats),
        );
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut CounterArgs,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = state.stats.begin(&myself.get_cell()).await;
        let _span = delivery.span("event-counter").entered();
        *state
            .counts
            .0
            .lock()
            .expect("event counts lock")
            .entry(delivery.published.kind().as_str())
            .or_default() += 1;
        Ok(())
    }
}
