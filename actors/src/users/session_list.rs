//! A user's sessions as the user sees and ends them (`/users/sessions`),
//! and the bound on how many one user holds.
//!
//! Ending a session marks it revoked, as a logout does: its refresh token
//! fails at once (a refresh rotates only a session that is not revoked).
//! Access tokens are not checked against the session store — that is what
//! keeps every authenticated route free of a round trip — so an ended
//! session's access token still works until it expires, within
//! `auth.access_ttl` (15 minutes by default).
//!
//! Every session a user opens adds a document; logins are unbounded, so
//! opening one deletes the user's oldest session documents beyond
//! `auth.max_sessions` (ended or not): a deleted session's refresh token
//! fails like a revoked one's.

use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, DateTime};

use crate::events::Event;
use crate::users::model::{SessionDoc, SessionInfo};
use crate::users::service::UserService;
use crate::users::tokens::Claims;
use crate::users::UserError;

impl UserService {
    /// The live sessions (not ended, not expired) of the user `claims`
    /// name, newest first, the asking one marked. At most
    /// `auth.max_sessions`, as the user holds no more.
    pub(crate) async fn sessions_of(&self, claims: &Claims) -> Result<Vec<SessionInfo>, UserError> {
        let user_id = claims.owner()?;
        let sessions: Vec<SessionDoc> = self
            .sessions
            .find(doc! { "userId": user_id, "revoked": false, "expiresAt": { "$gt": DateTime::now() } })
            .sort(doc! { "createdAt": -1, "_id": 1 })
            .limit(i64::from(self.tuning.max_sessions))
            .await?
            .try_collect()
            .await?;
        Ok(sessions.iter().map(|s| s.info(&claims.sid)).collect())
    }

    /// End the session `sid` of the user `claims` name. Another user's
    /// session, an ended one and an unknown id are all
    /// [`UserError::NoSuchSession`]: the answer tells nothing about
    /// sessions that are not the caller's.
    pub(crate) async fn end_session(&self, claims: &Claims, sid: &str) -> Result<(), UserError> {
        let user_id = claims.owner()?;
        let ended = self
            .sessions
            .update_one(
                doc! { "_id": sid, "userId": user_id, "revoked": false },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        if ended.matched_count == 0 {
            return Err(UserError::NoSuchSession);
        }
        self.events.publish(Event::SessionEnded {
            user_id: claims.sub.clone(),
            session_id: sid.to_owned(),
        });
        Ok(())
    }

    /// End every session of the user `claims` name but the asking one; how
    /// many were ended.
    pub(crate) async fn end_others(&self, claims: &Claims) -> Result<u64, UserError> {
        let ended = self
            .end_other_sessions(claims.owner()?, &claims.sid)
            .await?;
        self.events.publish(Event::OtherSessionsEnded {
            user_id: claims.sub.clone(),
            session_id: claims.sid.clone(),
            ended,
        });
        Ok(ended)
    }

    /// Revoke every live session of `user_id` but `keep`; how many.
    pub(super) async fn end_other_sessions(
        &self,
        user_id: ObjectId,
        keep: &str,
    ) -> Result<u64, UserError> {
        let ended = self
            .sessions
            .update_many(
                doc! { "userId": user_id, "revoked": false, "_id": { "$ne": keep } },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        Ok(ended.modified_count)
    }

    /// Delete `user_id`'s session documents beyond the newest
    /// `auth.max_sessions`. Usually one (the session just opened pushed it
    /// out), at most a few: the delete names them, bounded.
    pub(super) async fn bound_sessions(&self, user_id: ObjectId) -> Result<(), UserError> {
        let beyond: Vec<String> = self
            .sessions
            .clone_with_type::<mongodb::bson::Document>()
            .find(doc! { "userId": user_id })
            .projection(doc! { "_id": 1 })
            .sort(doc! { "createdAt": -1, "_id": -1 })
            .skip(u64::from(self.tuning.max_sessions))
            .limit(EXCESS_PER_PASS)
            .await?
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        if !beyond.is_empty() {
            self.sessions
                .delete_many(doc! { "userId": user_id, "_id": { "$in": &beyond } })
                .await?;
            tracing::info!(target: "auth", user = %user_id, deleted = beyond.len(), "oldest sessions beyond auth.max_sessions deleted");
        }
        Ok(())
    }
}

/// The most excess sessions one pass deletes: a login adds one, so one
/// pass normally deletes one; a lowered `auth.max_sessions` is caught up
/// over a few logins, each delete kept small (FerretDB and big commands).
const EXCESS_PER_PASS: i64 = 32;
