//! Redis: [`RedisStore`], a lazily connected, self-healing connection with a
//! per-command timeout.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

use super::error::StoreError;

/// Redis, connected lazily and reconnecting by itself.
///
/// The service must start and serve (from MongoDB) while Redis is down, so no
/// connection is made until one is needed, every command is bounded by a short
/// timeout, and a broken connection is replaced on the next use.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: Arc<Mutex<Option<ConnectionManager>>>,
    prefix: Arc<str>,
    timeout: Duration,
}

impl RedisStore {
    /// Parses the URL; does not connect.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: Arc::new(Mutex::new(None)),
            prefix: prefix.into(),
            timeout,
        })
    }

    /// The key prefix every key of this service starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + suffix`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A multiplexed connection (cheap to clone). Connects on first use.
    pub async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| StoreError::Timeout("redis", self.timeout * 2))??;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A connection of its own, for blocking reads (`XREAD BLOCK`): Redis
    /// answers a connection's commands in order, so a blocking command on the
    /// shared connection would hold up every other caller. It has no response
    /// timeout (the caller bounds its blocking commands); the caller owns it
    /// and drops it when done.
    pub async fn dedicated(&self) -> Result<impl redis::aio::ConnectionLike + Send, StoreError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        let conn = tokio::time::timeout(
            self.timeout * 2,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| StoreError::Timeout("redis", self.timeout * 2))??;
        Ok(conn)
    }

    /// Run one command with the store's timeout.
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
            .await
            .map_err(|_| StoreError::Timeout("redis", self.timeout))?
            .map_err(StoreError::from)
    }

    /// Run a pipeline with the store's timeout.
    pub async fn run_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
            .await
            .map_err(|_| StoreError::Timeout("redis", self.timeout))?
            .map_err(StoreError::from)
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }
}
