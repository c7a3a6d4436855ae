//! Fenced writes of many documents by `_id`, grouped: writes that differ
//! only in their `_id` go to the store as *one* statement
//! (`_id: {$in: [...]}`, `multi`), so a flush of N alike ends costs one
//! statement per collection, not N.
//!
//! Why a group also carries equalities its fence already implies
//! ([`ById::narrow`]): FerretDB v1.24 pushes an `_id` *equality* down to
//! PostgreSQL (a single statement reads one row) but not an `_id $in`; it
//! pushes the other top-level equalities of the same filter down, though.
//! Without them a grouped statement would hand FerretDB every row of the
//! collection (~2 s over 10,000 jobs on the shared test machine, against
//! ~17 ms for one statement by `_id`); with `status`/`lockedBy` (or
//! `outcome`/`instance`) it reads only this instance's running attempts
//! (~0.3 s for 256 of them, all written). A single write keeps its plain
//! `_id` equality.
//!
//! Statements go out as unordered `update` commands of at most
//! [`BULK_STATEMENTS`], each group of at most [`MAX_IDS`] ids. A statement
//! the store refuses fails its write alone; a refused *group* is written
//! again one by one (the writes are fenced, so those of its members the
//! group did write are fenced out the second time), so only its culprit
//! stays refused. A group matching fewer documents than it names is not an
//! error: the others moved on (cancelled, reclaimed), and a fenced-out
//! write changes nothing, exactly as a single statement's would.

use std::collections::HashMap;

use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{ErrorKind, WriteConcernError, WriteError, WriteFailure};

use super::JobStore;

/// Statements per `update` command, at most. Bounded on purpose: one
/// `update` of 256 statements hung FerretDB v1.24.2 for every client (one
/// statement of 256 ids does not: probed).
pub const BULK_STATEMENTS: usize = 32;

/// Ids in one grouped statement, at most (a flush holds at most
/// `queue.finish_batch`, 4096: 16 statements).
pub const MAX_IDS: usize = 256;

/// One fenced write of the document `id`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ById {
    pub id: Bson,
    /// The rest of the filter: the write applies only while it holds.
    pub fence: Document,
    pub update: Document,
    /// Equalities the fence implies, added to a grouped statement only,
    /// for FerretDB to push down (see the module doc).
    pub narrow: Document,
}

/// One statement and the writes (their indexes) it carries.
#[derive(Debug, PartialEq)]
pub(super) struct Statement {
    pub doc: Document,
    pub members: Vec<usize>,
}

impl ById {
    /// Its statement alone: `_id` equality and the fence.
    fn alone(&self) -> Document {
        let mut q = doc! { "_id": self.id.clone() };
        q.extend(self.fence.clone());
        doc! { "q": q, "u": self.update.clone() }
    }

    /// What writes sharing it may share one statement.
    fn key(&self) -> Vec<u8> {
        let key = doc! { "f": &self.fence, "u": &self.update, "n": &self.narrow };
        mongodb::bson::to_vec(&key).unwrap_or_default()
    }
}

/// The statements of `writes`: alike writes (same fence, update and
/// narrowing) grouped, in order of their first write; a group of one is
/// its plain statement.
pub(super) fn statements(writes: &[ById]) -> Vec<Statement> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, write) in writes.iter().enumerate() {
        let group = *by_key.entry(write.key()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(i);
    }
    let mut statements = Vec::new();
    for group in groups {
        for members in group.chunks(MAX_IDS) {
            let first = &writes[members[0]];
            let doc = match members {
                [_] => first.alone(),
                _ => {
                    let ids: Vec<Bson> = members.iter().map(|&i| writes[i].id.clone()).collect();
                    let mut q = doc! { "_id": { "$in": ids } };
                    q.extend(first.fence.clone());
                    q.extend(first.narrow.clone());
                    doc! { "q": q, "u": first.update.clone(), "multi": true }
                }
            };
            statements.push(Statement {
                doc,
                members: members.to_vec(),
            });
        }
    }
    statements
}

impl JobStore {
    /// Apply `writes` to `collection` (see the module doc): the write
    /// error of each (`None`: written, or fenced out), in order. `Err`: a
    /// command failed as a whole; some of it may be written, and writing
    /// it all again is safe (fenced).
    pub(super) async fn update_by_id(
        &self,
        collection: &str,
        writes: &[ById],
    ) -> Result<Vec<Option<WriteError>>, mongodb::error::Error> {
        let statements = statements(writes);
        let docs = statements.iter().map(|s| s.doc.clone()).collect();
        let (refused, matched) = self.update_each(collection, docs).await?;
        let mut result = vec![None; writes.len()];
        let mut again = Vec::new();
        for (statement, refused) in statements.iter().zip(refused) {
            match (refused, statement.members.as_slice()) {
                (None, _) => {}
                (Some(error), [one]) => result[*one] = Some(error),
                (Some(error), members) => {
                    tracing::warn!(target: "worker", collection, writes = members.len(), error = %error.message,
                        "the store refused a grouped write; writing each on its own");
                    again.extend_from_slice(members);
                }
            }
        }
        if matched < writes.len() as u64 {
            tracing::debug!(target: "worker", collection, writes = writes.len(), matched,
                "some fenced writes matched nothing: their documents moved on");
        }
        if !again.is_empty() {
            let alone = again.iter().map(|&i| writes[i].alone()).collect();
            let (refused, _) = self.update_each(collection, alone).await?;
            for (i, refused) in again.into_iter().zip(refused) {
                result[i] = refused;
            }
        }
        Ok(result)
    }

    /// Send `statements` to `collection` as unordered `update` commands of
    /// at most [`BULK_STATEMENTS`] each: the write error of each statement
    /// (`None`: none), in order, and how many documents they matched.
    async fn update_each(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> Result<(Vec<Option<WriteError>>, u64), mongodb::error::Error> {
        let db = self.jobs.client().database(&self.jobs.namespace().db);
        let mut refused = Vec::with_capacity(statements.len());
        let mut matched = 0;
        for chunk in statements.chunks(BULK_STATEMENTS) {
            let command = doc! { "update": collection, "updates": chunk, "ordered": false };
            let reply = db.run_command(command).await?;
            refused.extend(write_errors(&reply, chunk.len())?);
            matched += count(reply.get("n"));
        }
        Ok((refused, matched))
    }
}

/// A reply's count, whatever number type the store answered in.
fn count(n: Option<&Bson>) -> u64 {
    match n {
        Some(Bson::Int32(n)) => (*n).max(0) as u64,
        Some(Bson::Int64(n)) => (*n).max(0) as u64,
        Some(Bson::Double(n)) => n.max(0.0) as u64,
        _ => 0,
    }
}

/// The write error of each of an `update` reply's `statements` statements
/// (`writeErrors`, by index). A write concern error fails the command.
pub(super) fn write_errors(
    reply: &Document,
    statements: usize,
) -> Result<Vec<Option<WriteError>>, mongodb::error::Error> {
    if let Ok(concern) = reply.get_document("writeConcernError") {
        let concern: WriteConcernError = mongodb::bson::from_document(concern.clone())?;
        return Err(ErrorKind::Write(WriteFailure::WriteConcernError(concern)).into());
    }
    let mut refused = vec![None; statements];
    let Ok(errors) = reply.get_array("writeErrors") else {
        return Ok(refused);
    };
    for error in errors.iter().filter_map(Bson::as_document) {
        let index = match error.get("index") {
            Some(Bson::Int32(i)) => *i as usize,
            Some(Bson::Int64(i)) => *i as usize,
            Some(Bson::Double(i)) => *i as usize,
            _ => continue,
        };
        if let (Some(slot), Ok(found)) = (
            refused.get_mut(index),
            mongodb::bson::from_document::<WriteError>(error.clone()),
        ) {
            *slot = Some(found);
        }
    }
    Ok(refused)
}

#[cfg(test)]
#[path = "grouped_tests.rs"]
mod tests;
