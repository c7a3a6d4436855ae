//! AuditLog: an EventBus subscriber that writes user events to the `user`
//! log category and authentication events to `auth`.
//!
//! # Contract
//! Registers itself with the bus on every start (so a restart re-subscribes),
//! for the user and auth kinds only, and for this instance's events only
//! (each instance logs what happened on it; a fleet of three would otherwise
//! log every event three times), with a bounded backlog: if the log
//! writer ever falls behind, the bus drops and counts events for it rather
//! than slowing anyone down. Lines name ids only.
//!
//! # Failure
//! Stateless; a restarted AuditLog simply registers again.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use std::sync::Arc;

use crate::events::bus::Filter;
use crate::events::{Delivery, Event, EventKind, Registry};
use crate::supervision::stats::ActorStats;

/// The kinds the audit log records.
pub const KINDS: &[EventKind] = &[
    EventKind::UserCreated,
    EventKind::ProfileUpdated,
    EventKind::UserLoggedIn,
    EventKind::UserLoggedOut,
    EventKind::TokensRefreshed,
    EventKind::RefreshTokenReuseDetected,
    EventKind::PasswordChanged,
    EventKind::SessionEnded,
    EventKind::OtherSessionsEnded,
];

/// How many events may wait for the log writer.
const BACKLOG: usize = 4096;

/// Arguments of a subscriber actor: where to register, and its stats.
#[derive(Clone)]
pub struct SubscriberArgs {
    pub registry: Registry,
    pub stats: Arc<ActorStats>,
}

#[derive(Clone, Copy, Default)]
pub struct AuditLog;

impl Actor for AuditLog {
    type Msg = Delivery;
    type State = Arc<ActorStats>;
    type Arguments = SubscriberArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Delivery>,
        args: SubscriberArgs,
    ) -> Result<Arc<ActorStats>, ActorProcessingErr> {
        args.registry.subscribe_actor(
            "audit-log",
            Filter::local().kinds(KINDS),
            BACKLOG,
            myself,
            Arc::clone(&args.stats),
        );
        Ok(args.stats)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        stats: &mut Arc<ActorStats>,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = stats.begin(&myself.get_cell()).await;
        let _span = delivery.span("audit-log").entered();
        match &delivery.published.event {
            Event::UserCreated { user_id } => {
                tracing::info!(target: "user", user = %user_id, "welcome e-mail queued for user {user_id}")
            }
            Event::ProfileUpdated { user_id } => {
                tracing::info!(target: "user", user = %user_id, "profile updated for user {user_id}")
            }
            Event::UserLoggedIn {
                user_id,
                session_id,
            } => {
                tracing::info!(target: "auth", user = %user_id, session = %session_id, "login user {user_id}")
            }
            Event::UserLoggedOut {
                user_id,
                session_id,
            } => {
                tracing::info!(target: "auth", user = %user_id, session = %session_id, "logout user {user_id}")
            }
            Event::TokensRefreshed {
                user_id,
                session_id,
            } => {
                tracing::info!(target: "auth", user = %user_id, session = %session_id, "tokens refreshed for user {user_id}")
            }
            Event::RefreshTokenReuseDetected {
                user_id,
                session_id,
            } => tracing::warn!(
                target: "auth", user = %user_id, session = %session_id,
                "refresh-token reuse detected for user {user_id}, all sessions revoked"
            ),
            Event::PasswordChanged {
                user_id,
                session_id,
            } => tracing::info!(
                target: "auth", user = %user_id, session = %session_id,
                "password changed for user {user_id}, other sessions ended"
            ),
            Event::SessionEnded {
                user_id,
                session_id,
            } => {
                tracing::info!(target: "auth", user = %user_id, session = %session_id, "session ended by user {user_id}")
            }
            Event::OtherSessionsEnded {
                user_id,
                session_id,
                ended,
            } => tracing::info!(
                target: "auth", user = %user_id, session = %session_id, ended,
                "user {user_id} ended their other sessions"
            ),
            _ => {}
        }
        Ok(())
    }
}
