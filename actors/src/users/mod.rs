//! Users and authentication: accounts, sessions and tokens, the login
//! throttle, e-mail addresses and passwords.
//!
//! - [`Users`] (handle.rs): what the HTTP layer calls — typed async methods
//!   returning [`UserError`].
//! - `actor.rs`: the UserActor, its messages and its owned request tasks.
//! - The service the actor's tasks run, by concern: `service.rs` (what it
//!   holds, sessions opened), `signup.rs` (idempotent sign-up), `login.rs`,
//!   `sessions.rs` (refresh, logout, revocation), `session_list.rs` (the
//!   user's list of sessions, ending them, their bound),
//!   `password_change.rs`, `password_reset.rs` (forgot and reset),
//!   `verification.rs` (the e-mail address's proof), `profiles.rs`.
//! - Domain types: [`model`] (what is handed out and stored), [`id`],
//!   [`email`], [`name`], [`password`], [`strength`] (guessable passwords),
//!   [`tokens`] (signed with [`keys`]), [`idempotency`], [`throttle`].
//! - [`jobs`]: the `user.created`, `user.login` and (through [`notices`])
//!   `user.password_changed` job handlers; [`mail_jobs`]: the mails that
//!   carry a single-use token ([`mail_tokens`]) and the attack notice, each
//!   account's share of them bounded by [`mail_quota`].

mod actor;
pub mod config;
pub mod email;
mod error;
mod handle;
pub mod id;
pub mod idempotency;
mod job_error;
pub mod jobs;
pub mod keys;
mod login;
pub mod mail_jobs;
pub mod mail_quota;
pub mod mail_tokens;
pub mod model;
pub mod name;
pub mod notices;
pub mod password;
mod password_change;
mod password_reset;
mod profiles;
mod service;
mod session_list;
mod sessions;
mod signup;
pub mod strength;
pub mod throttle;
pub mod tokens;
mod verification;

pub(crate) use self::actor::{RequestTasks, UserActor, UserArgs, UserMsg};
pub use self::error::UserError;
pub(crate) use self::handle::UserCalls;
pub use self::handle::Users;
pub use self::id::{InvalidUserId, UserId};
pub use self::model::{
    Client, NewUser, OwnerProfile, ProfileChanges, PublicProfile, SessionInfo, TokenPair,
};
pub use self::password_reset::Recovery;
pub(crate) use self::service::{Collaborators, MailTuning, Tuning, UserService};
