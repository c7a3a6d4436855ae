//! [`StoreError`]: a store that could not be reached or failed.

use std::time::Duration;

/// A store that could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mongodb: {}", brief_mongo(.0))]
    Mongo(#[from] mongodb::error::Error),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("{0} did not answer within {1:?}")]
    Timeout(&'static str, Duration),
}

/// A MongoDB error in a few words. The driver's Display of an unreachable
/// server dumps the whole topology (each server, its labels, its error),
/// and every retry logged it again; its DNS error is a debug dump of the
/// query. Those kinds are named instead; others keep the driver's words.
pub fn brief_mongo(err: &mongodb::error::Error) -> String {
    use mongodb::error::ErrorKind;
    match err.kind.as_ref() {
        ErrorKind::ServerSelection { .. } => {
            "no server answered in time (unreachable, or not a MongoDB server)".into()
        }
        ErrorKind::DnsResolve { .. } => "the host name does not resolve (DNS)".into(),
        ErrorKind::Io(io) => format!("I/O error: {io}"),
        _ => err.to_string(),
    }
}

/// `err`'s message and every cause's, joined by `": "`: for logs, the
/// errors the queue records and the command line. A MongoDB error is in a
/// few words ([`brief_mongo`]), never the driver's topology dump, and a
/// cause whose words its parent already said is not repeated
/// (`StoreError::Mongo` names its driver error itself).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let words = |err: &(dyn std::error::Error + 'static)| match err.downcast_ref() {
        Some(mongo) => brief_mongo(mongo),
        None => err.to_string(),
    };
    let mut text = words(err);
    let mut cause = err.source();
    while let Some(err) = cause {
        let said = words(err);
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::options::ClientOptions;

    #[tokio::test]
    async fn an_unreachable_server_is_one_short_line() {
        // Port 1 refuses at once; selection gives up after 50ms.
        let mut options = ClientOptions::parse("mongodb://127.0.0.1:1").await.unwrap();
        options.server_selection_timeout = Some(Duration::from_millis(50));
        let client = mongodb::Client::with_options(options).unwrap();
        let err = client.list_database_names().await.unwrap_err();
        assert!(err.to_string().contains("Topology"), "{err}"); // (the dump)
        let brief = StoreError::from(err).to_string();
        assert_eq!(
            brief,
            "mongodb: no server answered in time (unreachable, or not a MongoDB server)"
        );
    }

    #[tokio::test]
    async fn other_kinds_keep_the_drivers_words() {
        let err = ClientOptions::parse("mongodb://h:notaport")
            .await
            .unwrap_err();
        assert_eq!(brief_mongo(&err), err.to_string());
    }
}
