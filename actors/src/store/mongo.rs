//! MongoDB: connecting, pinging, index creation, duplicate-key detection
//! and the command counter.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::error::StoreError;
use super::spans::CommandSpans;

/// The command names [`MongoCommands`] counts by name; any other is `other`.
/// A closed set, so the metric's cardinality is fixed whatever is sent.
pub const COUNTED_COMMANDS: &[&str] = &[
    "aggregate",
    "count",
    "find",
    "getMore",
    "insert",
    "update",
    "delete",
    "findAndModify",
    "ping",
    "createIndexes",
    "listIndexes",
    "dropDatabase",
    "endSessions",
    "killCursors",
];

/// The `collection` label of a command on no collection (`ping`,
/// `endSessions`, a database-wide `aggregate`).
pub const NO_COLLECTION: &str = "none";

/// The label of one command counter: a name from [`COUNTED_COMMANDS`] (or
/// `other`), and the collection it ran on — one its owner named at
/// construction, [`NO_COLLECTION`], or `other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: &'static str,
    pub collection: &'static str,
}

/// Every command the service sends to MongoDB, counted by name and
/// collection as it starts (the driver's command monitoring), exported as
/// `troupe_store_commands_total{command,collection}`. Operators and the
/// drain benchmark see what each capability asks of the store (operations
/// per job); tests prove that an endpoint sends no query. Both labels come
/// from closed sets, so the series stay bounded; a series appears on its
/// first command.
#[derive(Clone, Default)]
pub struct MongoCommands {
    counters: Family<CommandLabel, Counter>,
    /// The collections counted by name; any other is `other`.
    collections: Arc<[&'static str]>,
    /// Each command's span while it runs (inside a trace only).
    spans: CommandSpans,
}

impl MongoCommands {
    /// A counter that names the `collections` (the service's, see
    /// `troupe_actors::system::STORE_COLLECTIONS`) and folds any other into
    /// `other`.
    pub fn new(collections: &[&'static str]) -> Self {
        Self {
            counters: Family::default(),
            collections: collections.into(),
            spans: CommandSpans::default(),
        }
    }

    /// The counters, by command and collection (registered on `/metrics`).
    pub fn family(&self) -> Family<CommandLabel, Counter> {
        self.counters.clone()
    }

    /// Count one command called `name` on `collection` (`None`: on no
    /// collection).
    pub fn count(&self, name: &str, collection: Option<&str>) {
        self.counters
            .get_or_create(&self.label(name, collection))
            .inc();
    }

    /// The closed label of a command called `name` on `collection`.
    fn label(&self, name: &str, collection: Option<&str>) -> CommandLabel {
        let command = closed(COUNTED_COMMANDS, name);
        let collection = match collection {
            None => NO_COLLECTION,
            Some(collection) => closed(&self.collections, collection),
        };
        CommandLabel {
            command,
            collection,
        }
    }

    /// Commands called `name` sent so far (`other` for the rest), on any
    /// collection.
    pub fn sent(&self, name: &'static str) -> u64 {
        self.sum(|label| label.command == name)
    }

    /// Commands called `name` sent on `collection` so far.
    pub fn sent_on(&self, name: &'static str, collection: &'static str) -> u64 {
        self.sum(|label| label.command == name && label.collection == collection)
    }

    /// Commands sent so far, all names together.
    pub fn total(&self) -> u64 {
        self.sum(|_| true)
    }

    fn sum(&self, matches: impl Fn(&CommandLabel) -> bool) -> u64 {
        let commands = COUNTED_COMMANDS.iter().copied().chain(["other"]);
        let collections: Vec<&'static str> = self
            .collections
            .iter()
            .copied()
            .chain([NO_COLLECTION, "other"])
            .collect();
        commands
            .flat_map(|command| {
                collections.iter().map(move |&collection| CommandLabel {
                    command,
                    collection,
                })
            })
            .filter(|label| matches(label))
            .filter_map(|label| self.counters.get(&label).map(|counter| counter.get()))
            .sum()
    }

    fn handler(&self) -> EventHandler<CommandEvent> {
        let commands = self.clone();
        EventHandler::callback(move |event| match event {
            CommandEvent::Started(started) => {
                let collection = collection_of(&started.command_name, &started.command);
                let label = commands.label(&started.command_name, collection);
                commands.counters.get_or_create(&label).inc();
                let id = started.request_id;
                commands.spans.started(id, label.command, label.collection);
            }
            CommandEvent::Succeeded(done) => commands.spans.ended(done.request_id, false),
            CommandEvent::Failed(failed) => commands.spans.ended(failed.request_id, true),
            _ => {}
        })
    }
}

/// `name` if it is one of `known`, else `other`.
fn closed(known: &[&'static str], name: &str) -> &'static str {
    known
        .iter()
        .copied()
        .find(|known| *known == name)
        .unwrap_or("other")
}

/// The collection a command runs on: the value of its first field for the
/// commands on one (`{update: "jobs", …}`), `collection` for a `getMore`;
/// `None` when that is no string (`{aggregate: 1}`, `{ping: 1}`).
fn collection_of<'a>(name: &str, command: &'a Document) -> Option<&'a str> {
    if name == "getMore" {
        return command.get_str("collection").ok();
    }
    command.iter().next()?.1.as_str()
}

/// Connect to MongoDB. The driver connects lazily, so this only validates the
/// URI; `timeout` bounds server selection, i.e. how long any operation waits
/// for a reachable server before failing. Every command sent is counted in
/// `commands`.
pub async fn connect_mongo(
    uri: &str,
    database: &str,
    timeout: Duration,
    commands: &MongoCommands,
) -> Result<Database, StoreError> {
    let mut options = ClientOptions::parse(uri).await?;
    options.app_name = Some("troupe".into());
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.command_event_handler = Some(commands.handler());
    Ok(Client::with_options(options)?.database(database))
}

/// `{ping: 1}` against the database.
pub async fn ping_mongo(db: &Database) -> Result<(), StoreError> {
    db.run_command(doc! { "ping": 1 }).await?;
    Ok(())
}

/// An index on `keys` (`unique` or not), named as MongoDB names it by
/// default (`field_1_other_-1`).
pub fn index(keys: Document, unique: bool) -> IndexModel {
    let name = keys
        .iter()
        .map(|(field, direction)| format!("{field}_{direction}"))
        .collect::<Vec<_>>()
        .join("_");
    let options = IndexOptions::builder()
        .name(name)
        .unique(unique.then_some(true))
        .build();
    IndexModel::builder().keys(keys).options(options).build()
}

/// Create those of `indexes` that `collection` does not have yet, one by one.
///
/// Idempotent start-up without re-sending existing indexes: besides saving
/// work, FerretDB v1 can fail a `createIndexes` that repeats existing indexes
/// of different lengths.
pub async fn ensure_indexes(
    collection: &Collection<Document>,
    indexes: Vec<IndexModel>,
) -> mongodb::error::Result<()> {
    let existing: HashSet<String> = match collection.list_index_names().await {
        Ok(names) => names.into_iter().collect(),
        // NamespaceNotFound: the collection does not exist yet.
        Err(err) if matches!(err.kind.as_ref(), ErrorKind::Command(c) if c.code == 26) => {
            HashSet::new()
        }
        Err(err) => return Err(err),
    };
    for model in indexes {
        let name = model
            .options
            .as_ref()
            .and_then(|o| o.name.clone())
            .unwrap_or_default();
        if !existing.contains(&name) {
            collection.create_index(model).await?;
        }
    }
    Ok(())
}

/// Whether a write failed on a unique index (E11000): the one atomic
/// "first writer wins" primitive MongoDB and FerretDB share.
pub fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|e| e.code == 11000)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_counted_by_name_and_collection_from_closed_sets() {
        let commands = MongoCommands::new(&["jobs", "job_attempts"]);
        commands.count("find", Some("jobs"));
        commands.count("find", Some("jobs"));
        commands.count("update", Some("job_attempts"));
        commands.count("ping", None);
        // Anything else, however long or odd, lands in `other`.
        commands.count("saslStart", None);
        commands.count(&"x".repeat(10_000), Some("jobs"));
        commands.count("insert", Some(&"y".repeat(10_000)));
        assert_eq!(commands.sent("find"), 2);
        assert_eq!(commands.sent_on("find", "jobs"), 2);
        assert_eq!(commands.sent_on("update", "job_attempts"), 1);
        assert_eq!(commands.sent_on("ping", NO_COLLECTION), 1);
        assert_eq!(commands.sent_on("insert", "other"), 1);
        assert_eq!(commands.sent("other"), 2);
        assert_eq!(commands.sent("count"), 0);
        assert_eq!(commands.total(), 7);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("store_commands", "test", commands.family());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"store_commands_total{command="find",collection="jobs"} 2"#),
            "{text}"
        );
        let samples = text
            .lines()
            .filter(|l| l.starts_with("store_commands_total{"))
            .count();
        assert_eq!(samples, 6, "one series per label pair seen: {text}");
    }

    #[test]
    fn a_commands_collection_is_its_first_fields_value_or_a_get_mores_collection() {
        let update = doc! { "update": "jobs", "updates": [], "ordered": false };
        assert_eq!(collection_of("update", &update), Some("jobs"));
        let more = doc! { "getMore": 42_i64, "collection": "job_attempts" };
        assert_eq!(collection_of("getMore", &more), Some("job_attempts"));
        assert_eq!(collection_of("ping", &doc! { "ping": 1 }), None);
        assert_eq!(
            collection_of("aggregate", &doc! { "aggregate": 1, "pipeline": [] }),
            None
        );
    }
}
