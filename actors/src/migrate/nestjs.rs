//! Migration 2, `adopt-nestjs`: the NestJS service's users and jobs, carried
//! over into Troupe's shapes (nothing to do on any other database).
//!
//! Recognised by shape: a NestJS user has a `hash` (Troupe's: a
//! `passwordHash`), a NestJS job has no `attempts` (the queue's store reads
//! and writes the jobs: [`crate::queue::store::adopt`]). Each document is
//! converted by one write guarded by that shape, so a run killed half-way
//! is finished by the next, and documents already converted are left alone.
//!
//! - users: `hash` becomes `passwordHash` (the `$2b$` bcrypt hashes verify
//!   as they are); `_id`, `name`, `age`, `createdAt`, `updatedAt` are kept;
//!   `hashedRt` and `__v` dropped (NestJS refresh tokens are signed with its
//!   hard-coded secrets: users log in once more); e-mails canonicalised with
//!   [`Email::parse`]; `emailVerified: false`.
//! - jobs: `pending` stays pending (ranked by `createdAt`, so in the old
//!   FIFO order, ahead of newer jobs); `processing` (the old worker died
//!   holding it) becomes pending with a `crashed` attempt record; `completed`
//!   and `failed` are kept as history (`result` as `{message}`, `error` as
//!   `lastError`), `completedAt` their `updatedAt`.
//!
//! # Conflicts (nothing changes until they are fixed)
//! E-mails that collide once canonicalised (the NestJS index is
//! case-sensitive), and documents Troupe's rules refuse: an e-mail or name
//! its validation rejects, an age outside 0–150, a hash that is not bcrypt,
//! a job whose status or payload it cannot read.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::{Collection, Database};

use super::ledger::MongoLedger;
use super::{Applying, MigrateError, Plan, Planned, Step};
use crate::queue::job::{Attempt, Job, JobStatus, Outcome};
use crate::queue::store::adopt::Adoption;
use crate::users::email::Email;
use crate::users::model::MAX_AGE;
use crate::users::name;

/// Attempts an adopted pending job gets (`queue.max_attempts`' default).
const MAX_ATTEMPTS: i32 = 5;
/// Its name in the messages.
pub(super) const NAME: &str = "adopt-nestjs";

/// A NestJS user: `hash` present.
fn nest_user() -> Document {
    doc! { "hash": { "$exists": true } }
}

/// A NestJS user as Troupe stores it: the `$set` and `$unset` of its update.
#[derive(Debug)]
struct Adopted {
    id: Bson,
    set: Document,
    unset: Document,
}

/// What the database holds that this migration adopts, and what stops it.
#[derive(Debug, Default)]
struct Survey {
    users: Vec<Adopted>,
    jobs: BTreeMap<String, u64>,
    conflicts: Vec<String>,
}

fn id_of(user: &Document) -> String {
    match user.get("_id") {
        Some(Bson::ObjectId(id)) => id.to_hex(),
        Some(other) => other.to_string(),
        None => "?".into(),
    }
}

fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    }
}

/// One NestJS user: its update, or why Troupe refuses it.
fn adopt_user(user: &Document) -> Result<Adopted, Vec<String>> {
    let id = id_of(user);
    let mut problems = Vec::new();
    let mut set = Document::new();
    let mut unset = doc! { "hash": "", "hashedRt": "", "__v": "" };
    match user.get_str("email").map(Email::parse) {
        Ok(Ok(email)) => {
            set.insert("email", email.as_str());
        }
        Ok(Err(err)) => problems.push(format!("user {id}: e-mail {err}")),
        Err(_) => problems.push(format!("user {id}: no e-mail")),
    }
    // The sign-up's own rule (users::name), so what is adopted is what
    // Troupe would accept.
    match user.get_str("name").map(name::parse) {
        Ok(Ok(name)) => {
            set.insert("name", name);
        }
        Ok(Err(errors)) => {
            for error in errors {
                problems.push(format!("user {id}: name {error}"));
            }
        }
        Err(_) => problems.push(format!("user {id}: no name")),
    }
    match user.get("age") {
        None | Some(Bson::Null) => {
            unset.insert("age", "");
        }
        // (mongoose stores a JS number: an int32, or a double if it must.)
        Some(age) => match number(age) {
            Some(a) if a.fract() == 0.0 && (0.0..=f64::from(MAX_AGE)).contains(&a) => {
                set.insert("age", a as i32);
            }
            _ => problems.push(format!(
                "user {id}: age {age} is not an integer from 0 to {MAX_AGE}"
            )),
        },
    }
    match user.get_str("hash") {
        Ok(hash) if hash.starts_with("$2") => {
            set.insert("passwordHash", hash);
        }
        _ => problems.push(format!("user {id}: password hash is not bcrypt")),
    }
    set.insert("emailVerified", false);
    if problems.is_empty() {
        Ok(Adopted {
            id: user.get("_id").cloned().unwrap_or(Bson::Null),
            set,
            unset,
        })
    } else {
        Err(problems)
    }
}

/// Read every user and NestJS job: the users to adopt, the jobs by status,
/// the conflicts.
async fn survey(db: &Database) -> Result<Survey, MigrateError> {
    let mut survey = Survey::default();
    let users: Collection<Document> = db.collection("users");
    let mut cursor = users
        .find(doc! {})
        .projection(doc! { "name": 1, "email": 1, "age": 1, "hash": 1 })
        .await?;
    // Canonical e-mail → the ids holding it (Troupe's users included).
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(user) = cursor.try_next().await? {
        let email = if user.contains_key("hash") {
            match adopt_user(&user) {
                Ok(adopted) => {
                    let email = adopted.set.get_str("email").unwrap_or_default().to_owned();
                    survey.users.push(adopted);
                    email
                }
                Err(problems) => {
                    survey.conflicts.extend(problems);
                    continue;
                }
            }
        } else {
            user.get_str("email").unwrap_or_default().to_owned()
        };
        holders.entry(email).or_default().push(id_of(&user));
    }
    for (email, ids) in holders.iter().filter(|(_, ids)| ids.len() > 1) {
        survey.conflicts.push(format!(
            "e-mail {email} is held by {} users once lower-cased: {}",
            ids.len(),
            ids.join(", ")
        ));
    }
    let mut jobs = Adoption::new(db).nest_jobs().await?;
    while let Some(job) = jobs.try_next().await? {
        match to_troupe(&job) {
            Ok((job, _)) => *survey.jobs.entry(status_label(&job)).or_default() += 1,
            Err(problem) => survey.conflicts.push(problem.to_string()),
        }
    }
    Ok(survey)
}

/// How the summary counts an adopted job: by its NestJS status.
fn status_label(job: &Job) -> String {
    match (job.status, job.attempts) {
        (JobStatus::Pending, 0) => "pending".into(),
        (JobStatus::Pending, _) => "processing".into(),
        (status, _) => status.as_str().into(),
    }
}

/// Why a NestJS job cannot be adopted (a conflict the dry run lists).
#[derive(Debug, thiserror::Error)]
enum JobConflict {
    #[error("job {0}: its _id is not an ObjectId")]
    Id(String),
    #[error("job {0}: no type")]
    Type(ObjectId),
    #[error("job {0}: payload is not an object")]
    Payload(ObjectId),
    #[error("job {0}: unknown status {1:?}")]
    Status(ObjectId, String),
}

/// One NestJS job in Troupe's shape, and for a `processing` one the record
/// of its interrupted attempt.
fn to_troupe(nest: &Document) -> Result<(Job, Option<Attempt>), JobConflict> {
    let Some(Bson::ObjectId(id)) = nest.get("_id").cloned() else {
        return Err(JobConflict::Id(id_of(nest)));
    };
    let kind = nest.get_str("type").map_err(|_| JobConflict::Type(id))?;
    let payload = nest
        .get_document("payload")
        .map_err(|_| JobConflict::Payload(id))?;
    let created = nest
        .get_datetime("createdAt")
        .copied()
        .unwrap_or_else(|_| id.timestamp());
    let updated = nest.get_datetime("updatedAt").copied().unwrap_or(created);
    let mut job = Job::new(kind, payload.clone(), MAX_ATTEMPTS);
    (job.id, job.created_at, job.updated_at, job.run_at) = (id, created, updated, created);
    job.rank = Some(created);
    let mut attempt = None;
    match nest.get_str("status").unwrap_or("pending") {
        "pending" => {}
        "processing" => {
            job.attempts = 1;
            attempt = Some(Attempt {
                id: format!("{id}:1"),
                job_id: id,
                attempt: 1,
                instance: "nestjs".into(),
                executor: "nestjs-worker".into(),
                started_at: updated,
                finished_at: Some(DateTime::now()),
                outcome: Outcome::Crashed,
                error: Some(format!(
                    "the NestJS worker stopped while running it; pending again ({NAME})"
                )),
            });
        }
        done @ ("completed" | "failed") => {
            job.status = JobStatus::parse(done).unwrap_or(JobStatus::Failed);
            job.attempts = 1;
            job.completed_at = Some(updated);
            job.result = nest.get_str("result").ok().map(|r| doc! { "message": r });
            job.last_error = nest.get_str("error").ok().map(str::to_owned);
        }
        other => return Err(JobConflict::Status(id, other.to_owned())),
    }
    Ok((job, attempt))
}

fn counts(survey: &Survey) -> String {
    ["pending", "processing", "completed", "failed"]
        .iter()
        .map(|s| format!("{s} {}", survey.jobs.get(*s).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines a dry run and a real run print.
fn lines(survey: &Survey, verb: &str) -> Vec<String> {
    vec![
        format!(
            "users {verb}: {} (NestJS refresh tokens cannot be honoured: each user logs in once more; e-mails start unverified)",
            survey.users.len()
        ),
        format!(
            "jobs {verb} by NestJS status: {} (processing ones are pending again, the interruption recorded in their attempts)",
            counts(survey)
        ),
        "finished jobs are history under Troupe's retention: completed ones are deleted by queue.prune once older than queue.retention (from their NestJS updatedAt); failed ones are kept until retried".into(),
        "everything else in the database is left untouched".into(),
    ]
}

pub(super) struct AdoptNestjs;

impl Step<MongoLedger> for AdoptNestjs {
    fn plan<'a>(&'a self, on: &'a MongoLedger) -> Planned<'a> {
        Box::pin(async move {
            let survey = survey(on.db()).await?;
            Ok(Plan {
                changes: lines(&survey, "to adopt"),
                conflicts: survey.conflicts,
            })
        })
    }

    fn apply<'a>(&'a self, on: &'a MongoLedger) -> Applying<'a> {
        Box::pin(async move {
            let db = on.db();
            // Surveyed again under the lock: the runner's plan came first,
            // but a document may have changed since.
            let survey = survey(db).await?;
            if !survey.conflicts.is_empty() {
                return Err(MigrateError::Conflicts {
                    version: 2,
                    name: NAME.into(),
                    conflicts: survey.conflicts,
                });
            }
            let users: Collection<Document> = db.collection("users");
            for user in &survey.users {
                let mut filter = nest_user();
                filter.insert("_id", user.id.clone());
                users
                    .update_one(filter, doc! { "$set": &user.set, "$unset": &user.unset })
                    .await?;
            }
            let adoption = Adoption::new(db);
            let mut jobs = adoption.nest_jobs().await?;
            while let Some(nest) = jobs.try_next().await? {
                let Ok((job, attempt)) = to_troupe(&nest) else {
                    continue; // (surveyed: cannot happen unless changed since)
                };
                adoption.adopt(&job, attempt.as_ref()).await?;
            }
            Ok(lines(&survey, "adopted"))
        })
    }
}
