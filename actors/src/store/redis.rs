//! Redis: [`RedisStore`], a lazily connected, self-healing connection with a
//! per-command timeout, to one server or to a Redis Cluster.
//!
//! **Cluster.** With seed nodes ([`RedisStore::cluster`]) commands go through
//! the redis crate's cluster client, which routes each command by its key's
//! slot and follows MOVED/ASK. Keys that one multi-key command, script or
//! pipeline uses must share a hash tag (`{…}`; see [`RedisStore::key`]): the
//! cluster client sends a pipeline to the node of its first keyed command and
//! refuses one whose keys span slots (CROSSSLOT), so callers split pipelines
//! of unrelated keys into one per slot (sent together, one round trip).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::Mutex;
use tracing::Instrument;

use super::error::StoreError;

/// Redis, connected lazily and reconnecting by itself.
///
/// The service must start and serve (from MongoDB) while Redis is down, so no
/// connection is made until one is needed, every command is bounded by a short
/// timeout, and a broken connection is replaced on the next use.
#[derive(Clone)]
pub struct RedisStore {
    target: Arc<Target>,
    connection: Arc<Mutex<Option<Connection>>>,
    prefix: Arc<str>,
    timeout: Duration,
}

/// Where the store connects to.
// One per store, behind an Arc: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Node(redis::Client),
    /// Two clients of the same seeds: `shared` with the per-command timeout,
    /// `blocking` without a response timeout (for [`RedisStore::dedicated`]).
    Cluster {
        shared: ClusterClient,
        blocking: ClusterClient,
    },
}

/// A connection to one server or to the cluster (all cheap to clone).
#[derive(Clone)]
enum Connection {
    /// One server, reconnecting by itself (the shared connection).
    Managed(ConnectionManager),
    /// One server, a connection of its own ([`RedisStore::dedicated`]).
    Node(MultiplexedConnection),
    /// The cluster: a connection per node, re-routed on MOVED, nodes
    /// reconnected and the slot map refreshed by the client itself.
    Cluster(ClusterConnection),
}

impl RedisStore {
    /// One Redis server at `url`. Parses the URL; does not connect.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self::with_target(
            Target::Node(redis::Client::open(url)?),
            prefix,
            timeout,
        ))
    }

    /// A Redis Cluster, discovered from the seed nodes `urls` (any reachable
    /// one will do). Parses the URLs; does not connect.
    pub fn cluster<'a>(
        urls: impl IntoIterator<Item = &'a str>,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let urls: Vec<&str> = urls.into_iter().collect();
        // Retries (MOVED after a resharding, a node reconnecting) wait a few
        // ms, not the crate's default seconds: the per-command timeout bounds
        // the whole request anyway.
        let builder = || {
            ClusterClient::builder(urls.iter().copied())
                .connection_timeout(timeout)
                .retries(3)
                .min_retry_wait(5)
                .max_retry_wait(50)
        };
        let target = Target::Cluster {
            shared: builder().response_timeout(timeout).build()?,
            blocking: builder().build()?,
        };
        Ok(Self::with_target(target, prefix, timeout))
    }

    fn with_target(target: Target, prefix: &str, timeout: Duration) -> Self {
        Self {
            target: Arc::new(target),
            connection: Arc::new(Mutex::new(None)),
            prefix: prefix.into(),
            timeout,
        }
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(*self.target, Target::Cluster { .. })
    }

    /// The key prefix every key of this service starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + suffix`. The prefix holds no braces, so a hash tag in
    /// `suffix` (`"throttle:login:account:{…}:failures"`) is the key's first
    /// and decides its cluster slot: give keys used together one tag.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The shared multiplexed connection. Connects on first use.
    async fn connection(&self) -> Result<Connection, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.bounded(self.connect_shared()).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn connect_shared(&self) -> Result<Connection, redis::RedisError> {
        match &*self.target {
            Target::Node(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Connection::Managed)
            }
            Target::Cluster { shared, .. } => {
                shared.get_async_connection().await.map(Connection::Cluster)
            }
        }
    }

    /// `connect` within twice the per-command timeout.
    async fn bounded(
        &self,
        connect: impl std::future::Future<Output = Result<Connection, redis::RedisError>>,
    ) -> Result<Connection, StoreError> {
        let limit = self.timeout * 2;
        Ok(tokio::time::timeout(limit, connect)
            .await
            .map_err(|_| StoreError::Timeout("redis", limit))??)
    }

    /// A connection of its own, for blocking reads (`XREAD BLOCK`): Redis
    /// answers a connection's commands in order, so a blocking command on the
    /// shared connection would hold up every other caller. It has no response
    /// timeout (the caller bounds its blocking commands); the caller owns it
    /// and drops it when done. On a cluster it routes each command by its
    /// key, like the shared one.
    pub async fn dedicated(&self) -> Result<impl ConnectionLike + Send, StoreError> {
        let connect = async {
            match &*self.target {
                Target::Node(client) => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(None);
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Connection::Node)
                }
                Target::Cluster { blocking, .. } => blocking
                    .get_async_connection()
                    .await
                    .map(Connection::Cluster),
            }
        };
        self.bounded(connect).await
    }

    /// A RESP3 connection of its own to the one server, whose push messages
    /// (client-side caching invalidations; a disconnection notice when it
    /// drops) go to `pushes`; commands on it are bounded by the store's
    /// timeout. `None` on a cluster: tracking there is per node.
    pub async fn push_connection(
        &self,
        pushes: impl redis::aio::AsyncPushSender,
    ) -> Result<Option<MultiplexedConnection>, StoreError> {
        let Target::Node(client) = &*self.target else {
            return Ok(None);
        };
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(pushes);
        let limit = self.timeout * 2;
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let conn = tokio::time::timeout(limit, connect)
            .await
            .map_err(|_| StoreError::Timeout("redis", limit))??;
        Ok(Some(conn))
    }

    /// Run one command with the store's timeout.
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let span = super::spans::redis(&super::spans::redis_command_name(cmd));
        async {
            let mut conn = self.connection().await?;
            tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
                .await
                .map_err(|_| StoreError::Timeout("redis", self.timeout))?
                .map_err(StoreError::from)
        }
        .instrument(span)
        .await
    }

    /// Run a pipeline with the store's timeout. On a cluster its keys must
    /// share one slot (one hash tag).
    pub async fn run_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        async {
            let mut conn = self.connection().await?;
            tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
                .await
                .map_err(|_| StoreError::Timeout("redis", self.timeout))?
                .map_err(StoreError::from)
        }
        .instrument(super::spans::redis("pipeline"))
        .await
    }

    /// `PING` (on a cluster, every master must answer).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Managed(conn) => conn.req_packed_command(cmd),
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Managed(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(conn) => conn.get_db(),
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Whether `keys` all hash to one cluster slot (for unit tests of key
/// shapes: keys used together must).
pub fn same_slot<'a>(keys: impl IntoIterator<Item = &'a str>) -> bool {
    let mut slots = keys.into_iter().map(redis::cluster_routing::Slot::for_key);
    match slots.next() {
        Some(first) => slots.all(|slot| slot == first),
        None => true,
    }
}
