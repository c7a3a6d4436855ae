//! `queue_limits` (the limits operators set) and `queue_tokens` (what a
//! limited job holds while it runs). The protocol is
//! [`crate::queue::limit`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

use super::JobStore;
use crate::queue::error::QueueError;
use crate::queue::job::Candidate;
use crate::queue::limit::{group, Limit, Limits};
use crate::store::is_duplicate_key;

/// The limits operators set at run time.
pub const LIMITS: &str = "queue_limits";
/// The tokens limited jobs hold while they run.
pub const TOKENS: &str = "queue_tokens";

/// A stored limit.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LimitDoc {
    /// The job type.
    #[serde(rename = "_id")]
    kind: String,
    #[serde(flatten)]
    limit: Limit,
    updated_at: DateTime,
}

/// A token, held by one attempt of one job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDoc {
    /// `<group>#<n>`.
    #[serde(rename = "_id")]
    pub id: String,
    pub group: String,
    /// The job's type, and the partition's value (absent: no partition or
    /// no value): what a listing leaves out while the group is full.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Bson>,
    /// A rate token (held for the rate's period from the start), not a
    /// concurrency one (held while the job runs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rate: bool,
    pub job: ObjectId,
    pub attempt: i32,
    pub instance: String,
    pub locked_until: DateTime,
}

/// The tokens as read at one moment: which are live, and which expired
/// (their holder's lease ran out).
#[derive(Debug, Default)]
pub struct Tokens {
    live: BTreeMap<String, TokenDoc>,
    expired: BTreeSet<String>,
}

impl Tokens {
    /// How many live tokens of each kind (concurrency, rate) each group
    /// holds, with one of them (for its type and value).
    fn live_by_group(&self) -> BTreeMap<(&str, bool), (u32, &TokenDoc)> {
        let mut counts: BTreeMap<(&str, bool), (u32, &TokenDoc)> = BTreeMap::new();
        for token in self.live.values() {
            let key = (token.group.as_str(), token.rate);
            counts.entry(key).or_insert((0, token)).0 += 1;
        }
        counts
    }

    /// The `$nor` clauses that leave out the jobs of every group holding
    /// all its tokens under `limits`: `{type}` for a type limited as a
    /// whole, `{type, payload.<field>: {$in: values}}` for full partitions.
    pub fn full_groups(&self, limits: &Limits) -> Vec<Document> {
        let mut whole = Vec::new();
        let mut partitions: BTreeMap<&str, (&str, Vec<Bson>)> = BTreeMap::new();
        for ((_, rate), (held, token)) in self.live_by_group() {
            let Some(limit) = limits.get(&token.kind) else {
                continue;
            };
            let cap = match rate {
                false => limit.concurrency,
                true => limit.rate.map(|rate| rate.limit),
            };
            if cap.is_none_or(|cap| held < cap) {
                continue;
            }
            match &limit.partition_by {
                None if !whole.contains(&doc! { "type": &token.kind }) => {
                    whole.push(doc! { "type": &token.kind })
                }
                None => {}
                Some(field) => {
                    let value = token.value.clone().unwrap_or(Bson::Null);
                    let entry = partitions.entry(&token.kind).or_insert((field, Vec::new()));
                    if !entry.1.contains(&value) {
                        entry.1.push(value);
                    }
                }
            }
        }
        for (kind, (field, values)) in partitions {
            whole.push(doc! { "type": kind, format!("payload.{field}"): { "$in": values } });
        }
        whole
    }
}

/// The limit store: both collections.
#[derive(Clone)]
pub struct LimitStore {
    limits: Collection<LimitDoc>,
    tokens: Collection<TokenDoc>,
}

impl LimitStore {
    pub fn new(db: &Database) -> Self {
        Self {
            limits: db.collection(LIMITS),
            tokens: db.collection(TOKENS),
        }
    }

    /// The limits operators stored.
    pub async fn read(&self) -> Result<Limits, QueueError> {
        let docs: Vec<LimitDoc> = self.limits.find(doc! {}).await?.try_collect().await?;
        Ok(docs.into_iter().map(|d| (d.kind, d.limit)).collect())
    }

    /// Store `kind`'s limit (replacing the one stored before).
    pub async fn set(&self, kind: &str, limit: &Limit) -> Result<(), QueueError> {
        let stored = LimitDoc {
            kind: kind.to_owned(),
            limit: limit.clone(),
            updated_at: DateTime::now(),
        };
        // Two operators storing at once may both try the upsert's insert
        // (FerretDB reads, then writes): the loser's second try replaces.
        for tried in 0..2 {
            let replaced = (self.limits)
                .replace_one(doc! { "_id": kind }, &stored)
                .upsert(true)
                .await;
            match replaced {
                Err(err) if tried == 0 && is_duplicate_key(&err) => continue,
                other => return other.map(|_| ()).map_err(Into::into),
            }
        }
        Ok(())
    }

    /// Remove `kind`'s stored limit; whether there was one.
    pub async fn remove(&self, kind: &str) -> Result<bool, QueueError> {
        let deleted = self.limits.delete_one(doc! { "_id": kind }).await?;
        Ok(deleted.deleted_count > 0)
    }

    /// Every token, sorted into live and expired as of `now`.
    pub async fn tokens(&self, now: DateTime) -> Result<Tokens, QueueError> {
        let docs: Vec<TokenDoc> = self.tokens.find(doc! {}).await?.try_collect().await?;
        let mut tokens = Tokens::default();
        for token in docs {
            if token.locked_until < now {
                tokens.expired.insert(token.id);
            } else {
                tokens.live.insert(token.id.clone(), token);
            }
        }
        Ok(tokens)
    }

    /// Take a free token of `token`'s group, trying `<group>#0` up to
    /// `#concurrency-1`: the id taken, or `None` if all are held. An
    /// expired one is deleted first (only while still expired: the filter
    /// says so, so a token renewed meanwhile stays). What it learns is
    /// written into `seen`, for the next take of the same claim.
    async fn take(
        &self,
        mut token: TokenDoc,
        count: u32,
        now: DateTime,
        seen: &mut Tokens,
    ) -> Result<Option<String>, QueueError> {
        let kind = if token.rate { "@rate#" } else { "#" };
        for n in 0..count {
            let id = format!("{}{kind}{n}", token.group);
            if seen.live.contains_key(&id) {
                continue;
            }
            if seen.expired.remove(&id) {
                let stale = doc! { "_id": &id, "lockedUntil": { "$lt": now } };
                self.tokens.delete_one(stale).await?;
            }
            token.id = id;
            match self.tokens.insert_one(&token).await {
                Ok(_) => {
                    seen.live.insert(token.id.clone(), token.clone());
                    return Ok(Some(token.id));
                }
                Err(err) if is_duplicate_key(&err) => {
                    seen.live.insert(token.id.clone(), token.clone());
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(None)
    }

    /// Give back `token`, held by `job` (a token another attempt took over
    /// after this one's lease ran out is left alone).
    pub async fn give_back(&self, token: &str, job: ObjectId) -> Result<(), QueueError> {
        (self.tokens)
            .delete_one(doc! { "_id": token, "job": job })
            .await?;
        Ok(())
    }

    /// Extend `token`'s lease, while `job` holds it.
    pub async fn renew(
        &self,
        token: &str,
        job: ObjectId,
        until: DateTime,
    ) -> Result<(), QueueError> {
        (self.tokens)
            .update_one(
                doc! { "_id": token, "job": job },
                doc! { "$set": { "lockedUntil": until } },
            )
            .await?;
        Ok(())
    }
}

/// What a claim may do with one candidate under the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Claim it, holding these tokens (none: its type is not limited). If
    /// the claim does not get the job, both go back; if it does, the
    /// concurrency token goes back when the handler returns and the rate
    /// token expires with its period.
    Go {
        token: Option<String>,
        rate: Option<String>,
    },
    /// Its group is full (or its partition unknown): leave it for now.
    Closed,
}

impl Gate {
    /// No limit applies.
    pub const OPEN: Gate = Gate::Go {
        token: None,
        rate: None,
    };

    /// The tokens to give back if the claim does not get `job`.
    pub fn unused(&self, job: ObjectId) -> Vec<(String, ObjectId)> {
        match self {
            Gate::Go { token, rate } => (token.iter().chain(rate))
                .map(|id| (id.clone(), job))
                .collect(),
            Gate::Closed => Vec::new(),
        }
    }
}

impl JobStore {
    /// Take, for each candidate of `batch` of a limited type, a token of
    /// its group (see [`crate::queue::limit`]): one read of the tokens, then
    /// an insert per limited candidate. A candidate whose payload was not
    /// listed (claimed by id after its enqueue) while its type is limited
    /// per partition stays closed: the next listing reads its partition.
    pub(crate) async fn gates(
        &self,
        batch: &[&Candidate],
        lease: Duration,
    ) -> Result<Vec<Gate>, QueueError> {
        if !self.limits.any() {
            return Ok(vec![Gate::OPEN; batch.len()]);
        }
        let limits = self.limits.current();
        let now = self.clock.now();
        let until = self.clock.after(lease);
        let mut seen: Option<Tokens> = None;
        let mut gates = Vec::with_capacity(batch.len());
        for candidate in batch {
            let Some(kind) = &candidate.kind else {
                gates.push(Gate::Closed);
                continue;
            };
            let Some(limit) = limits.get(kind) else {
                gates.push(Gate::OPEN);
                continue;
            };
            if limit.partition_by.is_some() && candidate.payload.is_none() {
                gates.push(Gate::Closed);
                continue;
            }
            let seen = match &mut seen {
                Some(seen) => seen,
                None => seen.insert(self.limit_store.tokens(now).await?),
            };
            let value = (limit.partition_by.as_ref())
                .and_then(|field| candidate.payload.as_ref()?.get(field).cloned());
            let token = TokenDoc {
                id: String::new(),
                group: group(kind, limit, candidate.payload.as_ref()),
                kind: kind.clone(),
                value,
                rate: false,
                job: candidate.id,
                attempt: candidate.attempts + 1,
                instance: self.instance.clone(),
                locked_until: until,
            };
            gates.push(self.gate(limit, token, now, seen).await?);
        }
        Ok(gates)
    }

    /// The tokens `limit` asks of one candidate (`token` made out for
    /// it), the concurrency one first; if the rate's are all held, the
    /// concurrency token goes back at once.
    async fn gate(
        &self,
        limit: &Limit,
        token: TokenDoc,
        now: DateTime,
        seen: &mut Tokens,
    ) -> Result<Gate, QueueError> {
        let (job, store) = (token.job, &self.limit_store);
        let mut taken = None;
        if let Some(concurrency) = limit.concurrency {
            match store.take(token.clone(), concurrency, now, seen).await? {
                Some(id) => taken = Some(id),
                None => return Ok(Gate::Closed),
            }
        }
        let mut rate = None;
        if let Some(limit) = limit.rate {
            let held_until = DateTime::from_millis(
                now.timestamp_millis()
                    .saturating_add(limit.period.as_millis() as i64),
            );
            let token = TokenDoc {
                rate: true,
                locked_until: held_until,
                ..token
            };
            match store.take(token, limit.limit, now, seen).await? {
                Some(id) => rate = Some(id),
                None => {
                    let unused = Gate::Go {
                        token: taken,
                        rate: None,
                    }
                    .unused(job);
                    self.give_back_unused(unused).await;
                    return Ok(Gate::Closed);
                }
            }
        }
        Ok(Gate::Go { token: taken, rate })
    }

    /// Give back the tokens of `gates` whose candidates were not won.
    pub(crate) async fn give_back_unused(&self, unused: Vec<(String, ObjectId)>) {
        for (token, job) in unused {
            if let Err(err) = self.limit_store.give_back(&token, job).await {
                tracing::warn!(target: "worker", %job, error = %err, "could not give back a limit token; it frees when its lease runs out");
            }
        }
    }

    /// The limits store (the handle's reads and writes).
    pub fn limit_store(&self) -> &LimitStore {
        &self.limit_store
    }

    /// Refresh the stored limits if they are older than
    /// [`crate::queue::limit::READ_EVERY`]; the `$nor` clauses leaving out
    /// full groups (none when nothing is limited).
    pub(crate) async fn full_groups(&self) -> Result<Vec<Document>, QueueError> {
        if self.limits.stale() {
            self.limits.stored(self.limit_store.read().await?);
        }
        if !self.limits.any() {
            return Ok(Vec::new());
        }
        let tokens = self.limit_store.tokens(self.clock.now()).await?;
        Ok(tokens.full_groups(&self.limits.current()))
    }

    /// The payload fields a listing must return for the partitioned limits.
    pub(crate) fn partition_fields(&self) -> BTreeSet<String> {
        (self.limits.current().into_values())
            .filter_map(|limit| limit.partition_by)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::limit::tests::limit;

    fn token(kind: &str, group: &str, n: u32, value: Option<Bson>) -> TokenDoc {
        TokenDoc {
            id: format!("{group}#{n}"),
            group: group.to_owned(),
            kind: kind.to_owned(),
            value,
            rate: false,
            job: ObjectId::new(),
            attempt: 1,
            instance: "i".into(),
            locked_until: DateTime::now(),
        }
    }

    fn tokens(list: Vec<TokenDoc>) -> Tokens {
        Tokens {
            live: list.into_iter().map(|t| (t.id.clone(), t)).collect(),
            expired: BTreeSet::new(),
        }
    }

    #[test]
    fn only_groups_holding_all_their_tokens_are_left_out() {
        let held = tokens(vec![
            token("a", "a", 0, None),
            token("a", "a", 1, None),
            token("b", "b", 0, None),
            token("c", "c\u{1f}\"x\"", 0, Some(Bson::String("x".into()))),
            token("c", "c\u{1f}", 0, None),
            token("c", "c\u{1f}\"y\"", 0, Some(Bson::String("y".into()))),
            token("c", "c\u{1f}\"y\"", 1, Some(Bson::String("y".into()))),
        ]);
        let limits = Limits::from([
            ("a".to_owned(), limit(2, None)),
            ("b".to_owned(), limit(2, None)),
            ("c".to_owned(), limit(1, Some("tenant"))),
        ]);
        assert_eq!(
            held.full_groups(&limits),
            vec![
                doc! { "type": "a" },
                doc! { "type": "c", "payload.tenant": { "$in": [Bson::Null, "x", "y"] } },
            ]
        );
        // A type no longer limited holds tokens still: nothing left out.
        assert_eq!(held.full_groups(&Limits::new()), Vec::<Document>::new());
    }
}
