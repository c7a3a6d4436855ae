//! Sessions: refresh with rotation and reuse detection, logout, and
//! revoking every session of a user (see "Sessions and rotation" in
//! [`crate::users::actor`]).

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use crate::events::Event;
use crate::store::is_duplicate_key;
use crate::users::id::UserId;
use crate::users::model::TokenPair;
use crate::users::service::UserService;
use crate::users::tokens::{self, Claims, RefreshToken};
use crate::users::UserError;

impl UserService {
    /// A new pair for a verified refresh token, which is spent.
    pub(crate) async fn refresh(&self, token: RefreshToken) -> Result<TokenPair, UserError> {
        let claims = token.claims();
        let user_id = claims
            .sub
            .parse::<UserId>()
            .map_err(|_| UserError::InvalidToken)?
            .object_id();
        // Spend the token and look the user up side by side: the look-up
        // adds a read (on the refresh path, no latency).
        let (spent, email) = tokio::join!(self.spend(claims, user_id), self.email_of(user_id));
        spent?;
        let Some(email) = email? else {
            // The account is gone (deleted by an operator): its sessions
            // must not mint tokens.
            tracing::info!(target: "auth", user = %user_id, session = %claims.sid, "refresh refused: no such user");
            return Err(UserError::InvalidToken);
        };
        let pair = self.rotate(&token, &email).await?;
        self.events.publish(Event::TokensRefreshed {
            user_id: claims.sub.clone(),
            session_id: claims.sid.clone(),
        });
        Ok(pair)
    }

    /// The e-mail address of `user_id` (`None`: no such user).
    async fn email_of(&self, user_id: ObjectId) -> Result<Option<String>, UserError> {
        let user = self
            .users
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": user_id })
            .projection(doc! { "email": 1 })
            .await?;
        Ok(user.and_then(|u| u.get_str("email").ok().map(str::to_owned)))
    }

    /// Replace the session's verifier with a new pair's, only if the
    /// session is not revoked and still holds `token`'s verifier.
    async fn rotate(&self, token: &RefreshToken, email: &str) -> Result<TokenPair, UserError> {
        let claims = token.claims();
        let old_verifier = tokens::verifier(token.token());
        let issued = self.tokens.issue_pair(&claims.sub, email, &claims.sid);
        let rotated = self
            .sessions
            .update_one(
                doc! { "_id": &claims.sid, "revoked": false, "refreshVerifier": &old_verifier },
                doc! { "$set": {
                    "refreshVerifier": tokens::verifier(&issued.refresh_token),
                    "updatedAt": DateTime::now(),
                    "expiresAt": DateTime::from_millis(issued.refresh_claims.exp * 1000),
                } },
            )
            .await?;
        if rotated.matched_count == 0 {
            // Revoked (logout, earlier theft) or not the session's current token.
            tracing::info!(target: "auth", user = %claims.sub, session = %claims.sid, "refresh refused: session ended");
            return Err(UserError::SessionRevoked);
        }
        Ok(TokenPair {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
        })
    }

    /// Record the token `claims` describe as spent (a unique-key insert: of
    /// two requests presenting it, exactly one gets through). A second
    /// presentation is an error: see [`Self::reuse_detected`].
    async fn spend(&self, claims: &Claims, user_id: ObjectId) -> Result<(), UserError> {
        let inserted = self
            .used_tokens
            .insert_one(doc! {
                "_id": &claims.jti,
                "sessionId": &claims.sid,
                "userId": user_id,
                "usedAt": DateTime::now(),
                "expiresAt": DateTime::from_millis(claims.exp * 1000),
            })
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(err) if is_duplicate_key(&err) => Err(self.reuse_detected(claims, user_id).await?),
            Err(err) => Err(err.into()),
        }
    }

    /// A spent refresh token was presented again: theft, or a client that
    /// lost an answer. The first detection revokes every session of the
    /// user and marks the token's record (`reuseDetectedAt`); a replay of a
    /// token already marked is refused and revokes nothing, so sessions
    /// opened after the detection survive whoever still holds the old token.
    ///
    /// Revoke first, mark after: a failed revocation leaves no mark, so the
    /// next replay tries again, and no mark ever stands without its
    /// revocation. The mark is a guarded update (`$exists: false`), so the
    /// first detection's time is kept and only its request reports it.
    /// FerretDB v1 runs an update as a read, then a write by `_id`, not
    /// atomically: two replays racing through here can both see no mark,
    /// and both revoke (and report). That is harmless: revoking is
    /// idempotent and both revoke the same sessions at the same moment; once
    /// a mark has landed, no later replay revokes anything.
    async fn reuse_detected(
        &self,
        claims: &Claims,
        user_id: ObjectId,
    ) -> Result<UserError, UserError> {
        let record = self
            .used_tokens
            .find_one(doc! { "_id": &claims.jti })
            .await?;
        if record.is_some_and(|r| r.contains_key("reuseDetectedAt")) {
            tracing::info!(target: "auth", user = %user_id, session = %claims.sid, "replay of a refresh token already reported; nothing revoked");
            return Ok(UserError::TokenSpent);
        }
        self.revoke_all(user_id).await?;
        let marked = self
            .used_tokens
            .update_one(
                doc! { "_id": &claims.jti, "reuseDetectedAt": { "$exists": false } },
                doc! { "$set": { "reuseDetectedAt": DateTime::now() } },
            )
            .await?;
        if marked.modified_count > 0 {
            self.events.publish(Event::RefreshTokenReuseDetected {
                user_id: user_id.to_hex(),
                session_id: claims.sid.clone(),
            });
        }
        Ok(UserError::TokenReused)
    }

    pub(crate) async fn logout(&self, claims: Claims) -> Result<(), UserError> {
        self.sessions
            .update_one(
                doc! { "_id": &claims.sid },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        self.events.publish(Event::UserLoggedOut {
            user_id: claims.sub,
            session_id: claims.sid,
        });
        Ok(())
    }

    async fn revoke_all(&self, user_id: ObjectId) -> Result<(), UserError> {
        self.sessions
            .update_many(
                doc! { "userId": user_id, "revoked": false },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        Ok(())
    }
}
