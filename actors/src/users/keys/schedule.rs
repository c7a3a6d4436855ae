//! The keys' timing: how often each instance reloads them, how long ahead
//! of signing a new key is published, how long past `access_ttl` a retired
//! key verifies, and how long the JWKS may be cached. (Apart from the
//! manager, so the configuration's rules can name them.)

use std::time::Duration;

/// How often every instance reloads the keys (and rotates when due).
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// How long the JWKS may be cached (its `Cache-Control: max-age`).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// How long before it signs a new key is published: longer than a JWKS
/// cache's life and a reload, so every verifier has it in time.
pub const PUBLISH_AHEAD: Duration = Duration::from_secs(600);

/// How long past `access_ttl` a retired key still verifies: an instance
/// keeps signing with it until its next reload, and clocks differ a little.
pub const RETAIN_MARGIN: Duration = Duration::from_secs(2 * 30 + 60);
