//! The runner on an in-memory [`Ledger`]: ordering, the lock, resuming after
//! a kill, refusing databases newer than the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use mongodb::bson::DateTime;

use super::ledger::{LockEnd, LockRecord, Shape};
use super::*;
use crate::store::StoreError;

#[derive(Default)]
struct State {
    applied: Vec<Applied>,
    locks: BTreeMap<i64, LockRecord>,
    shape: Option<Shape>,
    /// The steps' effects: `(version, part)` done, in order.
    effects: Vec<(i32, u32)>,
}

/// The fake database: the ledger's collections, the steps' effects and a
/// clock tests move forward.
#[derive(Default, Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    skew_ms: Arc<AtomicI64>,
}

impl Fake {
    fn advance(&self, by: Duration) {
        self.skew_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
    fn versions(&self) -> Vec<i32> {
        self.state().applied.iter().map(|a| a.version).collect()
    }
}

type Fut<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

impl Ledger for Fake {
    fn applied(&self) -> Fut<'_, Vec<Applied>> {
        let mut all = self.state().applied.clone();
        all.sort_by_key(|a| a.version);
        Box::pin(async move { Ok(all) })
    }
    fn record<'a>(&'a self, record: &'a Applied) -> Fut<'a, ()> {
        let mut state = self.state();
        if !state.applied.iter().any(|a| a.version == record.version) {
            state.applied.push(record.clone());
        }
        Box::pin(async { Ok(()) })
    }
    fn shape(&self) -> Fut<'_, Shape> {
        let shape = self.state().shape.unwrap_or(Shape::Empty);
        Box::pin(async move { Ok(shape) })
    }
    fn latest_lock(&self) -> Fut<'_, Option<LockRecord>> {
        let latest = self.state().locks.values().next_back().cloned();
        Box::pin(async move { Ok(latest) })
    }
    fn insert_lock<'a>(&'a self, lock: &'a LockRecord) -> Fut<'a, bool> {
        let mut state = self.state();
        let inserted = !state.locks.contains_key(&lock.generation);
        if inserted {
            state.locks.insert(lock.generation, lock.clone());
        }
        Box::pin(async move { Ok(inserted) })
    }
    fn update_lock<'a>(&'a self, generation: i64, holder: &'a str, end: LockEnd) -> Fut<'a, bool> {
        let mut state = self.state();
        let matched = match state.locks.get_mut(&generation) {
            Some(lock) if lock.holder == holder && !lock.released => {
                lock.expires_at = end.expires_at;
                lock.released = end.released;
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(matched) })
    }
    fn now(&self) -> DateTime {
        DateTime::from_millis(
            DateTime::now().timestamp_millis() + self.skew_ms.load(Ordering::SeqCst),
        )
    }
}

/// A step of `parts` parts, each done once however often it runs
/// (idempotent); it waits on `gate` before each part after the first, if
/// given (a test holds the gate to "kill" it half-way), and reports
/// `conflicts`.
struct Parts {
    version: i32,
    parts: u32,
    conflicts: Vec<String>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Step<Fake> for Parts {
    fn plan<'a>(&'a self, _: &'a Fake) -> Planned<'a> {
        Box::pin(async move {
            Ok(Plan {
                changes: vec![format!("{} parts", self.parts)],
                conflicts: self.conflicts.clone(),
            })
        })
    }
    fn apply<'a>(&'a self, on: &'a Fake) -> Applying<'a> {
        Box::pin(async move {
            for part in 0..self.parts {
                if let (Some(gate), true) = (&self.gate, part > 0) {
                    gate.acquire().await.unwrap().forget();
                }
                {
                    let mut state = on.state();
                    if !state.effects.contains(&(self.version, part)) {
                        state.effects.push((self.version, part));
                    }
                }
                tokio::task::yield_now().await;
            }
            Ok(vec![format!("did {} parts", self.parts)])
        })
    }
}

fn migration(version: i32, compat: Compat, step: Parts) -> Migration<Fake> {
    Migration {
        version,
        name: ["zero", "one", "two", "three", "four"][version as usize],
        description: "a test migration",
        compat,
        before_records: true,
        step: Box::new(step),
    }
}

fn plain(version: i32) -> Migration<Fake> {
    migration(
        version,
        Compat::Additive,
        Parts {
            version,
            parts: 2,
            conflicts: Vec::new(),
            gate: None,
        },
    )
}

fn options(instance: &str) -> ApplyOptions {
    let mut options = ApplyOptions::new(instance);
    options.wait = Duration::ZERO;
    options.poll = Duration::from_millis(5);
    options
}

fn applied(version: i32, compat: Compat) -> Applied {
    Applied {
        version,
        name: format!("v{version}"),
        description: String::new(),
        compat,
        applied_at: DateTime::now(),
        by: "a-newer-binary".into(),
        summary: Vec::new(),
    }
}

#[tokio::test]
async fn pending_migrations_apply_in_version_order_each_recorded_once() {
    let fake = Fake::default();
    // Listed out of order: the version decides.
    let list = vec![plain(3), plain(1), plain(2)];
    let report = apply(&fake, &list, &options("me")).await.unwrap();
    let order: Vec<i32> = report.migrations.iter().map(|m| m.version).collect();
    assert_eq!(order, [1, 2, 3]);
    let effects: Vec<i32> = fake.state().effects.iter().map(|e| e.0).collect();
    assert_eq!(effects, [1, 1, 2, 2, 3, 3]);
    assert_eq!(fake.versions(), [1, 2, 3]);
    assert!(fake.state().applied.iter().all(|a| a.by == "me"));
    assert!(report.to_string().contains("applied 2 two (additive)"));
    // The lock was released: another migrator need not wait for the lease.
    assert!(fake.state().locks.values().all(|l| l.released));
    // A second run changes nothing and says so.
    let again = apply(&fake, &list, &options("me")).await.unwrap();
    assert!(again.migrations.is_empty());
    assert!(again.to_string().contains("up to date"));
    assert_eq!(fake.state().effects.len(), 6);
}

#[tokio::test]
async fn a_dry_run_lists_changes_and_conflicts_and_writes_nothing() {
    let fake = Fake::default();
    let conflicting = Parts {
        version: 2,
        parts: 1,
        conflicts: vec!["users 1, 2 share a@x.com".into()],
        gate: None,
    };
    let list = vec![plain(1), migration(2, Compat::Breaking, conflicting)];
    let report = apply(&fake, &list, &options("me").dry_run(true))
        .await
        .unwrap();
    assert!(report.has_conflicts());
    let text = report.to_string();
    assert!(text.contains("would apply 1 one"), "{text}");
    assert!(text.contains("CONFLICT users 1, 2 share a@x.com"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    let state = fake.state();
    assert!(state.applied.is_empty() && state.effects.is_empty() && state.locks.is_empty());
}

#[tokio::test]
async fn conflicts_in_any_pending_migration_stop_the_run_before_any_change() {
    let fake = Fake::default();
    let conflicting = Parts {
        version: 2,
        parts: 1,
        conflicts: vec!["a conflict".into()],
        gate: None,
    };
    let list = vec![plain(1), migration(2, Compat::Additive, conflicting)];
    let err = apply(&fake, &list, &options("me")).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::Conflicts { version: 2, conflicts, .. } if conflicts == &["a conflict"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("nothing was changed"));
    assert!(fake.state().effects.is_empty() && fake.versions().is_empty());
    // ... and the lock is given back.
    assert!(fake.state().locks.values().all(|l| l.released));
}

#[tokio::test]
async fn a_held_lock_makes_another_migrator_exit_naming_its_holder() {
    let fake = Fake::default();
    let now = fake.now();
    let until = DateTime::from_millis(now.timestamp_millis() + 30_000);
    fake.state().locks.insert(
        1,
        LockRecord {
            generation: 1,
            holder: "other-host-1".into(),
            acquired_at: now,
            expires_at: until,
            released: false,
        },
    );
    let err = apply(&fake, &[plain(1)], &options("me")).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::Locked { holder, .. } if holder == "other-host-1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("other-host-1"));
    assert!(fake.state().effects.is_empty());
    // Its lease expires (it crashed): the next run takes generation 2.
    fake.advance(lock::LEASE);
    apply(&fake, &[plain(1)], &options("me")).await.unwrap();
    assert_eq!(fake.versions(), [1]);
    let gens: Vec<i64> = fake.state().locks.keys().copied().collect();
    assert_eq!(gens, [1, 2]);
}

#[tokio::test]
async fn two_migrators_at_once_one_applies_the_other_waits_and_finds_nothing_left() {
    let fake = Fake::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = Parts {
        version: 1,
        parts: 2,
        conflicts: Vec::new(),
        gate: Some(Arc::clone(&gate)),
    };
    let list = vec![migration(1, Compat::Additive, slow)];
    let mut waiting = options("b");
    waiting.wait = Duration::from_secs(30);
    let a = options("a");
    let first = apply(&fake, &list, &a);
    let second = async {
        // b starts while a holds the lock mid-migration, then a finishes.
        while fake.state().effects.is_empty() {
            tokio::task::yield_now().await;
        }
        let b = apply(&fake, &list, &waiting);
        let open = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            gate.add_permits(1);
        };
        tokio::join!(b, open).0
    };
    let (a, b) = tokio::join!(first, second);
    assert_eq!(a.unwrap().migrations.len(), 1);
    assert!(b.unwrap().migrations.is_empty(), "b found it applied");
    assert_eq!(fake.state().effects, [(1, 0), (1, 1)]);
    assert_eq!(fake.versions(), [1]);
}

#[tokio::test]
async fn a_migrator_killed_half_way_is_finished_by_the_next_run_after_its_lease() {
    let fake = Fake::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let list = vec![
        plain(1),
        migration(
            2,
            Compat::Additive,
            Parts {
                version: 2,
                parts: 3,
                conflicts: Vec::new(),
                gate: Some(Arc::clone(&gate)),
            },
        ),
    ];
    // "Killed": dropped while migration 2 waits after its first part. It
    // never releases the lock and never records migration 2.
    let a = options("a");
    let killed = tokio::time::timeout(Duration::from_millis(100), apply(&fake, &list, &a));
    assert!(killed.await.is_err());
    assert_eq!(fake.versions(), [1]);
    assert_eq!(fake.state().effects.last(), Some(&(2, 0)));
    // Until its lease runs out, the lock is its.
    let err = apply(&fake, &list, &options("b")).await.unwrap_err();
    assert!(matches!(err, MigrateError::Locked { .. }), "{err:?}");
    fake.advance(lock::LEASE);
    gate.add_permits(10);
    let report = apply(&fake, &list, &options("b")).await.unwrap();
    assert_eq!(report.migrations.len(), 1);
    assert_eq!(report.migrations[0].version, 2);
    assert_eq!(
        fake.state().effects,
        [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    );
    assert_eq!(fake.versions(), [1, 2]);
}

#[tokio::test]
async fn a_migrator_that_lost_its_lease_to_another_records_nothing() {
    let fake = Fake::default();
    /// Stalls past its lease while another migrator takes generation 2.
    struct Stall;
    impl Step<Fake> for Stall {
        fn plan<'a>(&'a self, _: &'a Fake) -> Planned<'a> {
            Box::pin(async { Ok(Plan::default()) })
        }
        fn apply<'a>(&'a self, on: &'a Fake) -> Applying<'a> {
            Box::pin(async move {
                on.advance(lock::LEASE * 2);
                let taken = lock::try_acquire(on, "other", lock::LEASE).await?;
                assert!(taken.is_ok(), "the expired lease is free");
                Ok(Vec::new())
            })
        }
    }
    let list = vec![Migration {
        version: 1,
        name: "stall",
        description: "",
        compat: Compat::Additive,
        before_records: true,
        step: Box::new(Stall) as Box<dyn Step<Fake>>,
    }];
    let err = apply(&fake, &list, &options("me")).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::LockLost { generation: 1 }),
        "{err:?}"
    );
    assert!(fake.versions().is_empty());
}

#[tokio::test]
async fn readiness_initialises_empty_databases_and_refuses_ones_with_data_and_pending() {
    let fake = Fake::default();
    let list = vec![plain(1), plain(2)];
    assert_eq!(
        readiness(&fake, &list).await.unwrap(),
        Readiness::Initialise
    );
    fake.state().shape = Some(Shape::Nestjs);
    let Readiness::Refused(refusal) = readiness(&fake, &list).await.unwrap() else {
        panic!("data and pending migrations must be refused");
    };
    assert_eq!(
        refusal,
        Refusal::Pending(vec![(1, "one".into()), (2, "two".into())])
    );
    let text = refusal.to_string();
    assert!(
        text.contains("1 one, 2 two") && text.contains("`troupe migrate`"),
        "{text}"
    );
    // Initialising a database with data is refused too, and changes nothing.
    let err = initialise(&fake, &list, &options("me")).await.unwrap_err();
    assert!(matches!(err, MigrateError::Refused(Refusal::Pending(_))));
    assert!(fake.state().effects.is_empty());
    // Once migrated, it is served.
    apply(&fake, &list, &options("me")).await.unwrap();
    assert_eq!(readiness(&fake, &list).await.unwrap(), Readiness::Ready);
}

#[tokio::test]
async fn an_empty_database_is_initialised_once_by_many_instances_starting_together() {
    let fake = Fake::default();
    let list = vec![plain(1), plain(2)];
    let mut waiting = options("x");
    waiting.wait = Duration::from_secs(5);
    let runs = (0..4).map(|_| initialise(&fake, &list, &waiting));
    let results = futures::future::join_all(runs).await;
    let applied_by = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(applied_by, 1);
    assert_eq!(fake.state().effects.len(), 4);
    assert_eq!(fake.versions(), [1, 2]);
}

#[tokio::test]
async fn a_breaking_migration_unknown_to_the_binary_is_refused_an_additive_one_is_not() {
    let fake = Fake::default();
    fake.state().shape = Some(Shape::Nestjs);
    let list = vec![plain(1)];
    apply(&fake, &list, &options("me")).await.unwrap();
    // A newer binary added an additive migration 2: this one keeps serving.
    fake.state().applied.push(applied(2, Compat::Additive));
    assert_eq!(readiness(&fake, &list).await.unwrap(), Readiness::Ready);
    // ... and a breaking 3: refused, naming it; `migrate` refuses too.
    fake.state().applied.push(applied(3, Compat::Breaking));
    let refused = Readiness::Refused(Refusal::NewerBreaking(vec![(3, "v3".into())]));
    assert_eq!(readiness(&fake, &list).await.unwrap(), refused);
    let err = apply(&fake, &list, &options("me")).await.unwrap_err();
    assert!(err.to_string().contains("newer Troupe"), "{err}");
    let status = status(&fake, &list).await.unwrap();
    let unknown: BTreeSet<i32> = status.unknown.iter().map(|a| a.version).collect();
    assert_eq!(unknown, BTreeSet::from([2, 3]));
    assert!(status.to_string().contains("unknown  3 v3 (breaking)"));
}

#[tokio::test]
async fn status_lists_pending_migrations_and_a_held_lock() {
    let fake = Fake::default();
    let list = vec![plain(1), plain(2)];
    apply(&fake, &list[..1], &options("me")).await.unwrap();
    let held = lock::try_acquire(&fake, "busy-host", lock::LEASE)
        .await
        .unwrap()
        .unwrap();
    let status = status(&fake, &list).await.unwrap();
    assert_eq!(status.pending, [(2, "two", Compat::Additive)]);
    let text = status.to_string();
    assert!(
        text.contains("applied  1 one") && text.contains("pending  2 two"),
        "{text}"
    );
    assert!(text.contains("locked   by busy-host"), "{text}");
    lock::release(&fake, &held).await.unwrap();
    assert!(super::status(&fake, &list).await.unwrap().lock.is_none());
}

#[tokio::test]
async fn troupe_data_without_records_is_initialised_only_with_migrations_it_predates() {
    let fake = Fake::default();
    fake.state().shape = Some(Shape::Troupe);
    let mut list = vec![plain(1), plain(2)];
    assert_eq!(
        readiness(&fake, &list).await.unwrap(),
        Readiness::Initialise
    );
    // A later migration, not what such a database already is: refused.
    let mut later = plain(3);
    later.before_records = false;
    list.push(later);
    let refused = readiness(&fake, &list).await.unwrap();
    assert!(matches!(refused, Readiness::Refused(Refusal::Pending(ref p)) if p.len() == 3));
    // Once it has records, Troupe data with anything pending is refused.
    apply(&fake, &list[..2], &options("me")).await.unwrap();
    let refused = readiness(&fake, &list).await.unwrap();
    assert_eq!(
        refused,
        Readiness::Refused(Refusal::Pending(vec![(3, "three".into())]))
    );
    let err = initialise(&fake, &list, &options("me")).await.unwrap_err();
    assert!(matches!(err, MigrateError::Refused(_)), "{err:?}");
    assert_eq!(fake.versions(), [1, 2]);
}
