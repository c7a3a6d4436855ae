//! Users and authentication: accounts, sessions and tokens, the login
//! throttle, e-mail addresses and passwords.

pub mod actor;
pub mod config;
pub mod email;
pub mod idempotency;
pub mod jobs;
pub mod password;
pub mod throttle;
pub mod tokens;

pub use actor::*;
