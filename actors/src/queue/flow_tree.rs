//! A flow as a tree (`GET /jobs/{id}/flow`): a job, what it depends on
//! (recursively) and what depends on it (recursively), each node with its
//! id, type and status.
//!
//! Bounded: at most [`MAX_DEPTH`] levels each way and [`MAX_NODES`] jobs
//! each way (a read by `_id`, or by `dependsOn`, per job); a job reached twice (a diamond) is shown
//! again without its own branches (`repeated`). `truncated` says a bound cut
//! the tree short.

use std::collections::{HashMap, HashSet};

use mongodb::bson::oid::ObjectId;

use crate::queue::dependency::DependencyPolicy;
use crate::queue::error::QueueError;
use crate::queue::job::{JobId, JobStatus};
use crate::queue::store::flows::FlowRecord;
use crate::queue::store::JobStore;

/// Levels shown each way.
pub const MAX_DEPTH: usize = 10;

/// Jobs shown each way.
pub const MAX_NODES: usize = 100;

/// One job of the tree and its branches (its dependencies, or its
/// dependents, by the side of the tree it is on).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowNode {
    pub id: JobId,
    pub kind: String,
    pub status: JobStatus,
    pub children: Vec<FlowNode>,
    /// Shown elsewhere in the tree already, with its branches.
    pub repeated: bool,
}

/// A job's flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowTree {
    pub id: JobId,
    pub kind: String,
    pub status: JobStatus,
    pub on_dependency_failure: DependencyPolicy,
    /// What it waits for, each with what that waits for.
    pub depends_on: Vec<FlowNode>,
    /// What waits for it, each with what waits for that.
    pub needed_by: Vec<FlowNode>,
    /// A bound ([`MAX_DEPTH`], [`MAX_NODES`]) cut the tree short.
    pub truncated: bool,
}

/// One side of the tree, as read: the jobs and each one's branches.
#[derive(Default)]
struct Side {
    records: HashMap<ObjectId, FlowRecord>,
    branches: HashMap<ObjectId, Vec<ObjectId>>,
    truncated: bool,
}

impl Side {
    /// The node of `id` and its branches (each job expanded once).
    fn node(&self, id: ObjectId, expanded: &mut HashSet<ObjectId>) -> Option<FlowNode> {
        let record = self.records.get(&id)?;
        let repeated = !expanded.insert(id);
        let children = match repeated {
            true => Vec::new(),
            false => self.children(id, expanded),
        };
        Some(FlowNode {
            id: id.into(),
            kind: record.kind.clone(),
            status: record.status,
            children,
            repeated,
        })
    }

    fn children(&self, id: ObjectId, expanded: &mut HashSet<ObjectId>) -> Vec<FlowNode> {
        let branches = self.branches.get(&id).cloned().unwrap_or_default();
        (branches.into_iter())
            .filter_map(|child| self.node(child, expanded))
            .collect()
    }
}

/// The flow of job `id`; `None` if there is no such job.
pub async fn flow_tree(store: &JobStore, id: JobId) -> Result<Option<FlowTree>, QueueError> {
    let root = id.object_id();
    let Some(job) = store.get(root).await?.map(|(job, _)| job) else {
        return Ok(None);
    };
    let up = dependencies(store, root, job.depends_on.clone()).await?;
    let down = dependents(store, root).await?;
    let mut expanded = HashSet::from([root]);
    let depends_on = up.children(root, &mut expanded);
    let mut expanded = HashSet::from([root]);
    let needed_by = down.children(root, &mut expanded);
    Ok(Some(FlowTree {
        id,
        kind: job.kind,
        status: job.status,
        on_dependency_failure: job.on_dependency_failure.unwrap_or_default(),
        depends_on,
        needed_by,
        truncated: up.truncated || down.truncated,
    }))
}

/// What `root` (depending on `first`) depends on, level by level.
async fn dependencies(
    store: &JobStore,
    root: ObjectId,
    first: Vec<ObjectId>,
) -> Result<Side, QueueError> {
    let mut side = Side::default();
    side.branches.insert(root, first.clone());
    let mut frontier = first;
    for _ in 0..MAX_DEPTH {
        frontier.retain(|id| *id != root && !side.records.contains_key(id));
        frontier.sort_unstable();
        frontier.dedup();
        if frontier.is_empty() {
            return Ok(side);
        }
        if side.records.len() + frontier.len() > MAX_NODES {
            side.truncated = true;
            frontier.truncate(MAX_NODES - side.records.len());
        }
        let mut next = Vec::new();
        for record in store.flow_nodes(&frontier).await? {
            next.extend(record.depends_on.iter().copied());
            side.branches.insert(record.id, record.depends_on.clone());
            side.records.insert(record.id, record);
        }
        frontier = next;
    }
    side.truncated |= frontier
        .iter()
        .any(|id| *id != root && !side.records.contains_key(id));
    Ok(side)
}

/// What depends on `root`, level by level.
async fn dependents(store: &JobStore, root: ObjectId) -> Result<Side, QueueError> {
    let mut side = Side::default();
    let mut frontier = vec![root];
    for _ in 0..MAX_DEPTH {
        let room = MAX_NODES.saturating_sub(side.records.len());
        if frontier.is_empty() || room == 0 {
            side.truncated |= !frontier.is_empty();
            return Ok(side);
        }
        let found = store.flow_dependents(&frontier, room as i64 + 1).await?;
        side.truncated |= found.len() > room;
        let mut next = Vec::new();
        for record in found.into_iter().take(room) {
            for parent in record.depends_on.iter().filter(|p| frontier.contains(p)) {
                side.branches.entry(*parent).or_default().push(record.id);
            }
            if record.id != root && !side.records.contains_key(&record.id) {
                next.push(record.id);
                side.records.insert(record.id, record);
            }
        }
        frontier = next;
    }
    side.truncated |=
        !frontier.is_empty() && !store.flow_dependents(&frontier, 1).await?.is_empty();
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 12])
    }

    fn record(n: u8, deps: &[u8]) -> FlowRecord {
        FlowRecord {
            id: id(n),
            kind: format!("t{n}"),
            status: JobStatus::Waiting,
            depends_on: deps.iter().map(|d| id(*d)).collect(),
        }
    }

    #[test]
    fn a_diamond_shows_its_shared_job_once_with_branches_then_as_repeated() {
        // 1 depends on 2 and 3; both depend on 4.
        let mut side = Side::default();
        for r in [record(2, &[4]), record(3, &[4]), record(4, &[])] {
            side.branches.insert(r.id, r.depends_on.clone());
            side.records.insert(r.id, r);
        }
        side.branches.insert(id(1), vec![id(2), id(3)]);
        let mut expanded = HashSet::from([id(1)]);
        let tree = side.children(id(1), &mut expanded);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].children[0].id, id(4).into());
        assert!(!tree[0].children[0].repeated);
        assert!(tree[1].children[0].repeated);
        assert!(tree[1].children[0].children.is_empty());
    }

    #[test]
    fn a_branch_to_a_job_not_read_is_left_out() {
        let mut side = Side::default();
        side.branches.insert(id(1), vec![id(9)]);
        assert!(side.children(id(1), &mut HashSet::new()).is_empty());
    }
}
