//! Login throttling: fixed windows in Redis, shared by every instance.
//!
//! Two limits, both per `window`: failed logins per account (reset by a
//! successful login), and login attempts per client address. Past either, the
//! login is refused with the time until the window ends (429 + Retry-After),
//! *before* any password is checked, so a blocked client cannot use the
//! service to guess passwords.
//!
//! Redis down or slow: the throttle fails **open** (the login proceeds, a
//! warning is logged): availability of login is preferred over throttling
//! during a cache outage; bcrypt's cost still bounds guessing speed.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::store::RedisStore;

/// `[auth.throttle]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct ThrottleConfig {
    /// Failed logins allowed per account per window.
    pub per_account: u64,
    /// Login attempts allowed per client address per window.
    pub per_address: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

#[derive(Clone)]
pub struct Throttle {
    redis: RedisStore,
    config: ThrottleConfig,
}

impl Throttle {
    pub fn new(redis: RedisStore, config: ThrottleConfig) -> Self {
        Self { redis, config }
    }

    /// Keys name a hash of the e-mail, not the address itself.
    fn keys(&self, email: &str, client: IpAddr) -> (String, String) {
        let account = hex::encode(&Sha256::digest(email.as_bytes())[..12]);
        (
            self.redis.key(&format!("throttle:login:account:{account}")),
            self.redis.key(&format!("throttle:login:address:{client}")),
        )
    }

    /// Count this attempt; `Some(wait)` if the client must wait first.
    pub async fn attempt(&self, email: &str, client: IpAddr) -> Option<Duration> {
        let (account, address) = self.keys(email, client);
        let window = self.config.window.as_millis() as u64;
        // INCR the address counter (starting its window on first use), read
        // the account's failures, and both windows' remaining time, in one trip.
        let mut pipe = redis::pipe();
        pipe.cmd("INCR")
            .arg(&address)
            .cmd("PEXPIRE")
            .arg(&address)
            .arg(window)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&account)
            .cmd("PTTL")
            .arg(&address)
            .cmd("PTTL")
            .arg(&account);
        let result: Result<(u64, Option<u64>, i64, i64), _> = self.redis.run_pipe(&pipe).await;
        match result {
            Ok((attempts, failures, address_ttl, account_ttl)) => {
                let wait = |ttl: i64| Duration::from_millis(ttl.max(1000) as u64);
                if failures.unwrap_or(0) >= self.config.per_account {
                    Some(wait(account_ttl))
                } else if attempts > self.config.per_address {
                    Some(wait(address_ttl))
                } else {
                    None
                }
            }
            Err(err) => {
                tracing::warn!(target: "auth", error = %err, "login throttle unavailable (redis); failing open");
                None
            }
        }
    }

    /// A wrong password for `email`.
    pub async fn failed(&self, email: &str, client: IpAddr) {
        let (account, _) = self.keys(email, client);
        let mut pipe = redis::pipe();
        pipe.cmd("INCR")
            .arg(&account)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&account)
            .arg(self.config.window.as_millis() as u64)
            .arg("NX")
            .ignore();
        if let Err(err) = self.redis.run_pipe::<()>(&pipe).await {
            tracing::warn!(target: "auth", error = %err, "login throttle unavailable (redis)");
        }
    }

    /// A successful login clears the account's failures.
    pub async fn succeeded(&self, email: &str, client: IpAddr) {
        let (account, _) = self.keys(email, client);
        let _ = self.redis.run::<()>(redis::cmd("DEL").arg(&account)).await;
    }
}
