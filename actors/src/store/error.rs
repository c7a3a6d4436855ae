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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_one_short_line() {
        let other: mongodb::error::Error = mongodb::error::ErrorKind::InvalidArgument {
            message: "unknown option".into(),
        }
        .into();
        assert!(brief_mongo(&other).contains("unknown option")); // (the driver's words)
        let selection: mongodb::error::Error = mongodb::error::ErrorKind::ServerSelection {
            message: "Topology: { Type: Unknown, Servers: [ ... ] }".into(),
        }
        .into();
        let brief = StoreError::from(selection).to_string();
        assert!(!brief.contains("Topology"), "{brief}");
        assert!(brief.starts_with("mongodb: no server answered"), "{brief}");
    }
}
