//! The job drain's store side: enqueueing a backlog, reading back what the
//! service made of it (enqueue→start latency, who ran what), and the raw
//! claim loops that give the store's ceiling for the same work.
//!
//! Every job this module writes carries `payload.bench = TAG`, so one
//! database can hold several scenarios' jobs and each is read back alone.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::options::{FindOneAndUpdateOptions, ReturnDocument};
use mongodb::Database;
use serde::Deserialize;
use serde_json::{json, Value};
use troupe_actors::queue::job::Job;

/// Jobs per `insert` command: large enough that 100,000 jobs take a hundred
/// commands, small enough that a job's `createdAt` (set as its chunk is
/// built) is at most one chunk's insert earlier than the job is visible.
const CHUNK: usize = 1000;

/// Insert `n` pending `noop` jobs tagged `tag`, due now, in bulk (direct
/// `insert` commands of [`CHUNK`] jobs: the service has no bulk enqueue).
/// `started_ms`: when the first insert was sent, the drain's start.
pub async fn enqueue(db: &Database, n: usize, tag: &str) -> anyhow::Result<Value> {
    let jobs = db.collection::<Job>("jobs");
    let started_ms = DateTime::now().timestamp_millis();
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let size = left.min(CHUNK);
        let chunk: Vec<Job> = (0..size)
            .map(|_| Job::new("noop", doc! { "bench": tag }, 5))
            .collect();
        jobs.insert_many(chunk).await?;
        left -= size;
    }
    Ok(json!({
        "jobs": n,
        "started_ms": started_ms,
        "enqueue_seconds": started.elapsed().as_secs_f64(),
    }))
}

/// How many of the jobs tagged `tag` exist, and how many are completed.
/// Each count reads the whole collection on FerretDB: callers poll gently.
pub async fn count(db: &Database, tag: &str) -> anyhow::Result<(u64, u64)> {
    let jobs = db.collection::<Document>("jobs");
    let total = jobs.count_documents(doc! { "payload.bench": tag }).await?;
    let completed = jobs
        .count_documents(doc! { "payload.bench": tag, "status": "completed" })
        .await?;
    Ok((total, completed))
}

/// Until `n` jobs tagged `tag` are completed, or `timeout` has passed.
async fn wait_completed(db: &Database, tag: &str, n: u64, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while count(db, tag).await?.1 < n && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// A job as read back: when it was enqueued and finished.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Written {
    #[serde(rename = "_id")]
    id: ObjectId,
    status: String,
    created_at: DateTime,
    completed_at: Option<DateTime>,
}

/// An attempt record as read back.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tried {
    job_id: ObjectId,
    attempt: i32,
    started_at: DateTime,
    instance: String,
    outcome: String,
}

/// What the service made of the jobs tagged `tag`, read from the store
/// after the drain: how many completed, enqueue→start latency (a job's
/// `createdAt` to its first attempt's `startedAt`) at p50/p99/max, attempts
/// beyond one per job, the completed jobs by the instance that ran them,
/// and, given `since_ms` (the drain's start), the drain's duration up to
/// the last `completedAt` and its rate.
pub async fn latency(db: &Database, tag: &str, since_ms: Option<i64>) -> anyhow::Result<Value> {
    let written: Vec<Written> = db
        .collection::<Written>("jobs")
        .find(doc! { "payload.bench": tag })
        .projection(doc! { "_id": 1, "status": 1, "createdAt": 1, "completedAt": 1 })
        .await?
        .try_collect()
        .await?;
    let ids: HashMap<ObjectId, &Written> = written.iter().map(|w| (w.id, w)).collect();
    let tried: Vec<Tried> = db
        .collection::<Tried>("job_attempts")
        .find(doc! {})
        .projection(
            doc! { "_id": 0, "jobId": 1, "attempt": 1, "startedAt": 1, "instance": 1, "outcome": 1 },
        )
        .await?
        .try_collect()
        .await?;
    let mut latencies = Vec::with_capacity(written.len());
    let mut by_instance: BTreeMap<&str, u64> = BTreeMap::new();
    let mut attempts = 0_u64;
    for t in tried.iter().filter(|t| ids.contains_key(&t.job_id)) {
        attempts += 1;
        if t.attempt == 1 {
            let job = ids[&t.job_id];
            latencies.push(t.started_at.timestamp_millis() - job.created_at.timestamp_millis());
        }
        if t.outcome == "completed" {
            *by_instance.entry(t.instance.as_str()).or_default() += 1;
        }
    }
    latencies.sort_unstable();
    let completed = written.iter().filter(|w| w.status == "completed").count();
    let last_ms = written
        .iter()
        .filter_map(|w| w.completed_at)
        .map(|at| at.timestamp_millis())
        .max();
    let drain_seconds = since_ms
        .zip(last_ms)
        .map(|(since, last)| (last - since) as f64 / 1000.0);
    Ok(json!({
        "jobs": written.len(),
        "completed": completed,
        "attempts": attempts,
        "started": latencies.len(),
        "latency_ms": {
            "p50": percentile(&latencies, 50.0),
            "p99": percentile(&latencies, 99.0),
            "max": latencies.last(),
        },
        "by_instance": by_instance,
        "drain_seconds": drain_seconds,
        "jobs_per_second": drain_seconds.filter(|s| *s > 0.0).map(|s| completed as f64 / s),
    }))
}

/// The nearest-rank `p`th percentile of `sorted`; `None` if it is empty.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// The store's ceiling for claiming, two ways, each one claim after another
/// for up to `limit`, over `n` pending documents in a scratch collection:
/// - sorted: the textbook claim, `findOneAndUpdate` of the oldest pending
///   document (on FerretDB every call reads and sorts all pending documents,
///   so it slows down as the queue grows);
/// - by id: the same update addressed by `_id`, the cheapest claim write
///   the store offers.
pub async fn claim_loops(db: &Database, n: usize, limit: Duration) -> anyhow::Result<Value> {
    let scratch = db.collection::<Document>("bench_claims");
    let now = DateTime::now();
    let docs: Vec<Document> = (0..n)
        .map(|i| doc! { "status": "pending", "runAt": now, "createdAt": now, "n": i as i64 })
        .collect();
    for chunk in docs.chunks(CHUNK) {
        scratch.insert_many(chunk).await?;
    }
    let options = FindOneAndUpdateOptions::builder()
        .sort(doc! { "createdAt": 1, "_id": 1 })
        .return_document(ReturnDocument::After)
        .build();
    let claim = doc! { "$set": { "status": "processing" } };
    let started = Instant::now();
    let mut sorted = 0;
    while started.elapsed() < limit
        && scratch
            .find_one_and_update(doc! { "status": "pending" }, claim.clone())
            .with_options(options.clone())
            .await?
            .is_some()
    {
        sorted += 1;
    }
    let sorted_rate = sorted as f64 / started.elapsed().as_secs_f64();
    // The by-id loop gets the whole backlog again, however far the sorted
    // loop went (it may have claimed every document within its limit).
    scratch
        .update_many(doc! {}, doc! { "$set": { "status": "pending" } })
        .await?;
    let ids: Vec<Document> = scratch
        .find(doc! { "status": "pending" })
        .projection(doc! { "_id": 1 })
        .await?
        .try_collect()
        .await?;
    let started = Instant::now();
    let mut by_id = 0;
    for id in ids.iter().filter_map(|d| d.get_object_id("_id").ok()) {
        if started.elapsed() >= limit {
            break;
        }
        scratch
            .find_one_and_update(doc! { "_id": id, "status": "pending" }, claim.clone())
            .await?;
        by_id += 1;
    }
    let by_id_rate = by_id as f64 / started.elapsed().as_secs_f64();
    scratch.drop().await?;
    Ok(json!({
        "pending": n,
        "sorted_claims": sorted,
        "claims_per_second": sorted_rate,
        "by_id_claims": by_id,
        "by_id_claims_per_second": by_id_rate,
    }))
}

/// The full suite's drain (`scripts/bench`, `--smoke`): `n` jobs enqueued
/// while the service runs, timed until all are completed (a count every
/// 250 ms), then the claim loops over as many documents.
pub async fn drain(db: &Database, n: usize, limit: Duration) -> anyhow::Result<Value> {
    let tag = "drain";
    let started = Instant::now();
    let enqueued = enqueue(db, n, tag).await?;
    wait_completed(db, tag, n as u64, Duration::from_secs(3600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut out = claim_loops(db, n, limit).await?;
    out["jobs"] = json!(n);
    out["enqueue_seconds"] = enqueued["enqueue_seconds"].clone();
    out["drain_seconds"] = json!(seconds);
    out["jobs_per_second"] = json!(n as f64 / seconds);
    Ok(out)
}

/// Delete every job and attempt record (between scenarios: on FerretDB
/// every read scans, so a drained backlog left behind slows the next one).
pub async fn clear(db: &Database) -> anyhow::Result<()> {
    db.collection::<Document>("jobs")
        .delete_many(doc! {})
        .await?;
    db.collection::<Document>("job_attempts")
        .delete_many(doc! {})
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
