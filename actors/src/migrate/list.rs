//! The migrations, in order. Versions are never reused or reordered; a new
//! migration gets the next version (see `docs/migrations.md`).

use super::ledger::MongoLedger;
use super::nestjs::{AdoptNestjs, NAME};
use super::{Applying, Compat, Migration, Plan, Planned, Step};
use crate::queue::store::{JobStore, SlotStore};
use crate::users::UserService;

/// Every migration this binary knows, in order.
pub fn migrations() -> Vec<Migration<MongoLedger>> {
    vec![Migration {
        version: 1,
        name: "baseline-indexes",
        description: "the indexes of users, sessions, signup idempotency records, schedule slots, jobs and job attempts",
        compat: Compat::Additive,
        before_records: true,
        step: Box::new(Baseline),
    }, Migration {
        version: 2,
        name: NAME,
        description: "adopt the NestJS service's users and jobs (nothing to do on any other database)",
        // Binaries before it cannot run the adopted jobs (`userId` as a
        // string) nor serve adopted users.
        compat: Compat::Breaking,
        // (On a database Troupe wrote, there is nothing to adopt.)
        before_records: true,
        step: Box::new(AdoptNestjs),
    }]
}

/// Version 1: the indexes every Troupe binary before migrations created at
/// start (each created only if missing, so a database Troupe wrote before
/// migrations existed already has them).
struct Baseline;

impl Step<MongoLedger> for Baseline {
    fn plan<'a>(&'a self, _: &'a MongoLedger) -> Planned<'a> {
        Box::pin(async move {
            Ok(Plan {
                changes: vec![
                    "create the missing indexes of users, sessions, signup_idempotency, queue_slots, jobs, job_attempts".into(),
                ],
                conflicts: Vec::new(),
            })
        })
    }

    fn apply<'a>(&'a self, on: &'a MongoLedger) -> Applying<'a> {
        Box::pin(async move {
            let db = on.db();
            UserService::ensure_indexes(db).await?;
            SlotStore::ensure_indexes(db).await?;
            JobStore::ensure_indexes(db).await?;
            Ok(vec!["indexes created where missing".into()])
        })
    }
}
