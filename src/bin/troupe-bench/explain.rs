//! Where the store scans: the `explain` (query planner only, nothing runs)
//! of each shape of query the queue's drain sends, summarised.
//!
//! FerretDB v1 answers with PostgreSQL's plan (`queryPlanner.Plan`) and
//! whether it pushed the filter, sort and limit down to PostgreSQL; MongoDB
//! with its winning plan's stages (`queryPlanner.winningPlan`). Both are
//! read, so the same command says where MongoDB uses an index.

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::Database;
use serde_json::{json, Value};

/// The queries, as the service sends them (see `actors/src/queue/store/`),
/// addressed to ids that do not exist, so nothing could change even if a
/// server ran them.
fn queries() -> Vec<(&'static str, Document)> {
    let now = DateTime::now();
    let (id, other) = (ObjectId::new(), ObjectId::new());
    let types = vec!["noop", "sleep", "queue.prune", "user.created", "user.login"];
    vec![
        (
            "listing: due pending jobs in rank order",
            doc! { "find": "jobs",
            "filter": { "status": "pending", "runAt": { "$lte": now }, "type": { "$in": types } },
            "sort": { "rank": 1, "_id": 1 }, "limit": 8,
            "projection": { "_id": 1, "status": 1, "attempts": 1, "rank": 1 } },
        ),
        (
            "listing: expired leases",
            doc! { "find": "jobs",
            "filter": { "status": "processing", "lockedUntil": { "$lt": now } },
            "sort": { "createdAt": 1, "_id": 1 }, "limit": 8 },
        ),
        // FerretDB's `explain` plans only a find's `filter`: given a
        // `findAndModify` or an `update` it ignores the query and reports a
        // full scan. So the writes' filters are planned as finds, which is
        // how both FerretDB and MongoDB select the documents a write changes.
        (
            "claim by id (findAndModify's query, planned as a find)",
            doc! { "find": "jobs",
            "filter": { "_id": id, "status": "pending", "attempts": 0, "runAt": { "$lte": now } } },
        ),
        (
            "finish by id (update's q, planned as a find)",
            doc! { "find": "jobs", "filter": { "_id": id, "attempts": 1, "status": "processing" } },
        ),
        (
            "batch by ids (update's q with _id $in, planned as a find)",
            doc! { "find": "jobs", "filter": { "_id": { "$in": [id, other] }, "status": "pending" } },
        ),
        (
            "lot take (updateMany's q, planned as a find)",
            doc! { "find": "jobs", "filter": {
                "_id": { "$in": [id, other] }, "status": "pending", "attempts": 0,
                "runAt": { "$lte": now }, "type": "noop",
            } },
        ),
        (
            "lot read-back (find)",
            doc! { "find": "jobs", "filter": { "_id": { "$in": [id, other] }, "lot": ObjectId::new() } },
        ),
        (
            "attempt record by id (find)",
            doc! { "find": "job_attempts", "filter": { "_id": format!("{id}:1") } },
        ),
    ]
}

/// Each query's plan summary, and the indexes `jobs` has.
pub async fn explain(db: &Database) -> anyhow::Result<Value> {
    let mut plans = Vec::new();
    for (name, query) in queries() {
        let explained = db
            .run_command(doc! { "explain": query, "verbosity": "queryPlanner" })
            .await;
        plans.push(match explained {
            Ok(reply) => {
                let reply: Value = serde_json::to_value(&reply)?;
                json!({ "query": name, "summary": summary(&reply) })
            }
            Err(err) => json!({ "query": name, "error": err.to_string() }),
        });
    }
    let mut indexes = db
        .collection::<Document>("jobs")
        .list_index_names()
        .await
        .unwrap_or_default();
    indexes.sort();
    Ok(json!({ "plans": plans, "indexes": indexes }))
}

/// One line for an explain reply: the plan's nodes (FerretDB: PostgreSQL's
/// node types, whether PostgreSQL filters, and what FerretDB pushed down;
/// MongoDB: the winning plan's stages with their indexes).
fn summary(reply: &Value) -> String {
    let planner = &reply["queryPlanner"];
    let mut nodes = Vec::new();
    if planner["Plan"].is_object() {
        pg_nodes(&planner["Plan"], &mut nodes);
        let pushed: Vec<&str> = ["filter", "sort", "limit"]
            .into_iter()
            .filter(|what| reply[format!("{what}Pushdown")] == Value::Bool(true))
            .collect();
        let pushed = if pushed.is_empty() {
            "nothing pushed down: every document goes to FerretDB".to_owned()
        } else {
            format!("{} pushed down", pushed.join(", "))
        };
        format!("PostgreSQL: {}; {pushed}", nodes.join(" ← "))
    } else if planner["winningPlan"].is_object() {
        mongo_stages(&planner["winningPlan"], &mut nodes);
        format!("MongoDB: {}", nodes.join(" ← "))
    } else if planner.as_object().is_some_and(|p| p.is_empty()) {
        "no plan: the collection does not exist yet".to_owned()
    } else {
        format!("unrecognised reply: {}", truncate(&reply.to_string(), 200))
    }
}

/// PostgreSQL plan nodes, outermost first: `Seq Scan (filter: …)`,
/// `Bitmap Index Scan on <index> (index condition: …)`, `Limit`, `Sort`.
fn pg_nodes(node: &Value, out: &mut Vec<String>) {
    let node_type = node["Node Type"].as_str().unwrap_or("?");
    let mut line = node_type.to_owned();
    if let Some(index) = node["Index Name"].as_str() {
        line += &format!(" on {index}");
    }
    if let Some(condition) = node["Index Cond"].as_str() {
        line += &format!(" (index condition: {})", truncate(condition, 120));
    }
    match node["Filter"].as_str() {
        Some(filter) => line += &format!(" (filter in PostgreSQL: {})", truncate(filter, 120)),
        None if node_type == "Seq Scan" => line += " (no filter: every row)",
        None => {}
    }
    out.push(line);
    for child in node["Plans"].as_array().into_iter().flatten() {
        pg_nodes(child, out);
    }
}

/// MongoDB plan stages, outermost first: `LIMIT`, `FETCH`, `IXSCAN on status_1_rank_1`.
fn mongo_stages(stage: &Value, out: &mut Vec<String>) {
    let mut line = stage["stage"].as_str().unwrap_or("?").to_owned();
    if let Some(index) = stage["indexName"].as_str() {
        line += &format!(" on {index}");
    }
    out.push(line);
    let children = stage["inputStages"].as_array().cloned().unwrap_or_default();
    for child in children
        .iter()
        .chain([&stage["inputStage"], &stage["queryPlan"]])
    {
        if child.is_object() {
            mongo_stages(child, out);
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::summary;

    #[test]
    fn a_ferretdb_plan_says_where_it_scans_and_what_it_pushed_down() {
        let reply = json!({
            "queryPlanner": { "Plan": { "Node Type": "Seq Scan",
                "Filter": "((t._jsonb -> 'status'::text) @> '\"pending\"'::jsonb)" } },
            "filterPushdown": true, "sortPushdown": false, "limitPushdown": false,
        });
        assert_eq!(
            summary(&reply),
            "PostgreSQL: Seq Scan (filter in PostgreSQL: ((t._jsonb -> 'status'::text) @> '\"pending\"'::jsonb)); filter pushed down"
        );
        let reply = json!({ "queryPlanner": { "Plan": { "Node Type": "Seq Scan" } } });
        assert_eq!(
            summary(&reply),
            "PostgreSQL: Seq Scan (no filter: every row); nothing pushed down: every document goes to FerretDB"
        );
    }

    #[test]
    fn a_ferretdb_plan_through_an_index_names_it_and_its_condition() {
        let reply = json!({
            "queryPlanner": { "Plan": { "Node Type": "Bitmap Heap Scan",
                "Recheck Cond": "((t._jsonb -> '_id'::text) @> '\"x\"'::jsonb)",
                "Filter": "((t._jsonb -> 'status'::text) @> '\"pending\"'::jsonb)",
                "Plans": [{ "Node Type": "Bitmap Index Scan", "Index Name": "t_id_gin",
                    "Index Cond": "((t._jsonb -> '_id'::text) @> '\"x\"'::jsonb)" }] } },
            "filterPushdown": true,
        });
        assert_eq!(
            summary(&reply),
            "PostgreSQL: Bitmap Heap Scan (filter in PostgreSQL: ((t._jsonb -> 'status'::text) @> '\"pending\"'::jsonb)) \
             ← Bitmap Index Scan on t_id_gin (index condition: ((t._jsonb -> '_id'::text) @> '\"x\"'::jsonb)); \
             filter pushed down"
        );
    }

    #[test]
    fn a_mongodb_plan_lists_its_stages_and_indexes() {
        let reply = json!({ "queryPlanner": { "winningPlan": { "stage": "LIMIT",
            "inputStage": { "stage": "FETCH",
                "inputStage": { "stage": "IXSCAN", "indexName": "status_1_rank_1" } } } } });
        assert_eq!(
            summary(&reply),
            "MongoDB: LIMIT ← FETCH ← IXSCAN on status_1_rank_1"
        );
    }
}
