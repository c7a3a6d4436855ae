//! The EventBus on its own: no database needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use troupe_actors::events::bus::{BusArgs, BusMsg, EventBus};
use troupe_actors::events::{Delivery, Event, EventKind, Events, Filter, Published, Registry};
use troupe_actors::supervision::budget::RestartPolicy;
use troupe_actors::supervision::slot::ActorSlot;
use troupe_actors::supervision::supervisor::{ChildSpec, RootSupervisor, SupervisorArgs};

fn created(n: u64) -> Event {
    Event::UserCreated {
        user_id: format!("user-{n}"),
    }
}

fn n_of(event: &Event) -> u64 {
    match event {
        Event::UserCreated { user_id } => user_id.trim_start_matches("user-").parse().unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

/// A bus under a root supervisor, with `extra` children after it.
async fn start(extra: impl FnOnce(&Registry) -> Vec<ChildSpec>) -> (Events, Registry) {
    let registry = Registry::default();
    let bus = ActorSlot::<BusMsg>::new("event-bus");
    let events = Events::new(bus.clone(), "test-instance".into());
    let mut children = vec![ChildSpec::new(
        EventBus,
        BusArgs {
            registry: registry.clone(),
            stats: bus.stats(),
        },
        bus,
    )];
    children.extend(extra(&registry));
    let args = SupervisorArgs {
        children,
        policy: RestartPolicy {
            max_restarts: 10,
            within: Duration::from_secs(60),
        },
        // Restarts and escalations published as events, as the service does.
        health: troupe_actors::system::tree_health(&events),
    };
    Actor::spawn(None, RootSupervisor, args).await.unwrap();
    (events, registry)
}

async fn recv(rx: &mut tokio::sync::mpsc::Receiver<Arc<Published>>) -> Arc<Published> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event in time")
        .expect("open")
}

#[tokio::test]
async fn subscribers_get_only_the_kinds_they_asked_for() {
    let (events, registry) = start(|_| vec![]).await;
    let mut created_only = registry.subscribe_channel(
        "created-only",
        Filter::fleet().kinds(&[EventKind::UserCreated]),
        16,
    );
    let mut everything = registry.subscribe_channel("everything", Filter::fleet(), 16);
    events.publish(Event::UserLoggedIn {
        user_id: "u".into(),
        session_id: "s".into(),
    });
    events.publish(created(1));
    assert_eq!(recv(&mut created_only).await.event, created(1));
    assert_eq!(recv(&mut everything).await.kind().as_str(), "UserLoggedIn");
    assert_eq!(recv(&mut everything).await.event, created(1));
    assert!(
        created_only.try_recv().is_err(),
        "nothing else for the filtered subscriber"
    );
}

#[tokio::test]
async fn events_from_one_publisher_arrive_in_publish_order() {
    let (events, registry) = start(|_| vec![]).await;
    let mut rx = registry.subscribe_channel("ordered", Filter::fleet(), 2000);
    for n in 0..1000 {
        events.publish(created(n));
    }
    for n in 0..1000 {
        let event = recv(&mut rx).await;
        assert_eq!(n_of(&event.event), n);
    }
}

/// A subscriber actor that panics on the event it is told to.
#[derive(Clone)]
struct Fragile {
    panic_on: u64,
    seen: Arc<AtomicU64>,
}

impl Actor for Fragile {
    type Msg = Delivery;
    type State = ();
    type Arguments = Registry;

    async fn pre_start(
        &self,
        myself: ActorRef<Delivery>,
        registry: Registry,
    ) -> Result<(), ActorProcessingErr> {
        registry.subscribe_actor(
            "fragile",
            Filter::fleet().kinds(&[EventKind::UserCreated]),
            1024,
            myself,
            Default::default(),
        );
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Delivery>,
        delivery: Delivery,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let n = n_of(&delivery.published.event);
        if n == self.panic_on {
            panic!("subscriber bug on event {n}");
        }
        self.seen.store(n, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_subscriber_is_restarted_and_the_others_keep_receiving() {
    let seen = Arc::new(AtomicU64::new(0));
    let fragile = Fragile {
        panic_on: 5,
        seen: Arc::clone(&seen),
    };
    let (events, registry) = start(|registry| {
        vec![ChildSpec::new(
            fragile,
            registry.clone(),
            ActorSlot::new("fragile"),
        )]
    })
    .await;
    let mut steady = registry.subscribe_channel(
        "steady",
        Filter::fleet().kinds(&[EventKind::UserCreated]),
        100,
    );
    for n in 1..=5 {
        events.publish(created(n));
    }
    for n in 1..=5 {
        assert_eq!(n_of(&recv(&mut steady).await.event), n);
    }
    // The restarted subscriber receives what comes after its crash.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut n = 6;
    while seen.load(Ordering::SeqCst) < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fragile subscriber never came back"
        );
        events.publish(created(n));
        assert_eq!(n_of(&recv(&mut steady).await.event), n);
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = registry.stats();
    assert_eq!(
        stats.iter().filter(|s| s.name == "fragile").count(),
        1,
        "re-registered, not duplicated"
    );
    // The supervisor published the restart.
    let mut restarts = registry.subscribe_channel(
        "restarts",
        Filter::fleet().kinds(&[EventKind::ActorRestarted]),
        10,
    );
    events.publish(created(5)); // the fragile one panics again
    let restarted = recv(&mut restarts).await;
    assert!(
        matches!(&restarted.event, Event::ActorRestarted { actor, .. } if actor == "fragile"),
        "{restarted:?}"
    );
}

/// A subscriber that takes 50 ms per event.
#[derive(Clone, Copy)]
struct Sluggish;

impl Actor for Sluggish {
    type Msg = Delivery;
    type State = ();
    type Arguments = Registry;

    async fn pre_start(
        &self,
        myself: ActorRef<Delivery>,
        registry: Registry,
    ) -> Result<(), ActorProcessingErr> {
        registry.subscribe_actor("sluggish", Filter::fleet(), 8, myself, Default::default());
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Delivery>,
        _: Delivery,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }
}

#[tokio::test]
async fn a_slow_subscriber_neither_slows_the_publisher_nor_the_others() {
    let (events, registry) = start(|registry| {
        vec![ChildSpec::new(
            Sluggish,
            registry.clone(),
            ActorSlot::new("sluggish"),
        )]
    })
    .await;
    let mut fast = registry.subscribe_channel("fast", Filter::fleet(), 2000);
    for n in 0..1000 {
        events.publish(created(n));
    }
    // The fast subscriber gets all 1000 while the slow one has handled only a few.
    for n in 0..1000 {
        assert_eq!(n_of(&recv(&mut fast).await.event), n);
    }
    let sluggish = registry
        .stats()
        .into_iter()
        .find(|s| s.name == "sluggish")
        .unwrap();
    assert!(sluggish.delivered < 100, "{sluggish:?}");
    assert_eq!(
        sluggish.delivered + sluggish.dropped,
        1000,
        "every event accepted or counted as dropped"
    );
    assert!(sluggish.backlog <= 8);
    assert_eq!(events.published(), 1000);
}
