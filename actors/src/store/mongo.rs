//! MongoDB: connecting, pinging, index creation, duplicate-key detection
//! and the command counter.

use std::collections::HashSet;
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

/// The label of one command counter: a name from [`COUNTED_COMMANDS`], or `other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: &'static str,
}

/// Every command the service sends to MongoDB, counted by name as it starts
/// (the driver's command monitoring). Operators see what the service asks of
/// the store; tests prove that an endpoint sends no query.
#[derive(Clone)]
pub struct MongoCommands {
    counters: Family<CommandLabel, Counter>,
}

impl Default for MongoCommands {
    fn default() -> Self {
        let counters = Family::<CommandLabel, Counter>::default();
        // Every label exists from the start, at 0.
        for name in COUNTED_COMMANDS.iter().copied().chain(["other"]) {
            let _ = counters.get_or_create(&CommandLabel { command: name });
        }
        Self { counters }
    }
}

impl MongoCommands {
    /// The counters, by command (registered on `/metrics`).
    pub fn family(&self) -> Family<CommandLabel, Counter> {
        self.counters.clone()
    }

    /// Count one command called `name`.
    pub fn count(&self, name: &str) {
        let command = COUNTED_COMMANDS
            .iter()
            .copied()
            .find(|known| *known == name)
            .unwrap_or("other");
        self.counters.get_or_create(&CommandLabel { command }).inc();
    }

    /// Commands called `name` sent so far (`other` for the rest).
    pub fn sent(&self, name: &'static str) -> u64 {
        self.counters
            .get_or_create(&CommandLabel { command: name })
            .get()
    }

    /// Commands sent so far, all names together.
    pub fn total(&self) -> u64 {
        COUNTED_COMMANDS
            .iter()
            .copied()
            .chain(["other"])
            .map(|name| self.sent(name))
            .sum()
    }

    fn handler(&self) -> EventHandler<CommandEvent> {
        let commands = self.clone();
        EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                commands.count(&started.command_name);
            }
        })
    }
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
    fn commands_are_counted_by_name_from_a_closed_set() {
        let commands = MongoCommands::default();
        commands.count("find");
        commands.count("find");
        commands.count("aggregate");
        // Anything else, however long or odd, lands in one `other` counter.
        commands.count("saslStart");
        commands.count(&"x".repeat(10_000));
        assert_eq!(commands.sent("find"), 2);
        assert_eq!(commands.sent("aggregate"), 1);
        assert_eq!(commands.sent("count"), 0);
        assert_eq!(commands.sent("other"), 2);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("commands", "test", commands.family());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let samples = text
            .lines()
            .filter(|l| l.starts_with("commands_total{"))
            .count();
        assert_eq!(samples, COUNTED_COMMANDS.len() + 1, "{text}");
    }
}
