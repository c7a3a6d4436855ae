//! Sessions: refresh with rotation, a grace window for retries and reuse
//! detection, logout, and revoking every session of a user (see "Sessions
//! and rotation" in [`crate::users::actor`]).

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use crate::events::Event;
use crate::store::is_duplicate_key;
use crate::users::model::{Client, TokenPair};
use crate::users::service::UserService;
use crate::users::tokens::{self, Claims, RefreshToken};
use crate::users::UserError;

/// How a refresh token's presentation was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spend {
    /// Its first use, at this time.
    First(DateTime),
    /// A retry within the grace window of its first use, at this time.
    Retry(DateTime),
}

impl Spend {
    /// When the token was first used: its successor's issue time.
    fn first_used(self) -> DateTime {
        match self {
            Spend::First(at) | Spend::Retry(at) => at,
        }
    }
}

/// Whether a token first used at `used_at` and presented again at `now`
/// is within the grace window `grace` (zero: never). A first use "after"
/// now (another instance's clock ahead of this one's) is recent.
fn within_grace(used_at: DateTime, now: DateTime, grace: Duration) -> bool {
    let elapsed = i128::from(now.timestamp_millis()) - i128::from(used_at.timestamp_millis());
    !grace.is_zero() && elapsed < grace.as_millis() as i128
}

/// What a spent token's second presentation is, given its spend record
/// (`None`: the record is gone, pruned with its expired token).
#[derive(Debug, PartialEq, Eq)]
enum Presented {
    /// A retry within the grace window of its first use.
    Retry(Spend),
    /// Its reuse was reported already: refused, nothing revoked.
    Reported,
    /// Reuse: every session of the user is revoked.
    Reuse,
}

/// Classify a second presentation at `now` of the token `record` describes.
fn second_presentation(record: Option<&Document>, now: DateTime, grace: Duration) -> Presented {
    let Some(record) = record else {
        return Presented::Reuse;
    };
    if record.contains_key("reuseDetectedAt") {
        return Presented::Reported;
    }
    match record.get_datetime("usedAt") {
        Ok(used_at) if within_grace(*used_at, now, grace) => {
            Presented::Retry(Spend::Retry(*used_at))
        }
        _ => Presented::Reuse,
    }
}

/// What a refresh answers once the token is spent and the rotation tried.
#[derive(Debug)]
enum Rotation<P> {
    /// The session holds the successor: its pair.
    Issued(P),
    /// A retry whose session moved past the successor (or ended) since the
    /// first use: no retry of that one. Reuse, as after the window.
    Reused,
    /// A first use for a session revoked (logout, earlier theft) or not
    /// holding this token.
    Ended,
}

/// Decide a refresh from its spend and whether the rotation matched the
/// session (`rotated`: the pair it wrote).
fn rotation_verdict<P>(spent: Spend, rotated: Option<P>) -> Rotation<P> {
    match (rotated, spent) {
        (Some(pair), _) => Rotation::Issued(pair),
        (None, Spend::Retry(_)) => Rotation::Reused,
        (None, Spend::First(_)) => Rotation::Ended,
    }
}

impl UserService {
    /// A new pair for a verified refresh token, which is spent. A retry
    /// within the grace window gets the same pair as the first use.
    pub(crate) async fn refresh(
        &self,
        token: RefreshToken,
        client: Client,
    ) -> Result<TokenPair, UserError> {
        let claims = token.claims();
        let user_id = claims.owner()?;
        // Spend the token and look the user up side by side: the look-up
        // adds a read (on the refresh path, no latency).
        let (spent, email) = tokio::join!(self.spend(claims, user_id), self.email_of(user_id));
        let spent = spent?;
        let Some(email) = email? else {
            // The account is gone (deleted by an operator): its sessions
            // must not mint tokens.
            tracing::info!(target: "auth", user = %user_id, session = %claims.sid, "refresh refused: no such user");
            return Err(UserError::InvalidToken);
        };
        let pair = self
            .rotate(&token, &email, spent.first_used(), &client)
            .await?;
        let pair = match rotation_verdict(spent, pair) {
            Rotation::Issued(pair) => pair,
            Rotation::Reused => return Err(self.reuse_detected(claims, user_id).await?),
            Rotation::Ended => {
                tracing::info!(target: "auth", user = %claims.sub, session = %claims.sid, "refresh refused: session ended");
                return Err(UserError::SessionRevoked);
            }
        };
        if let Spend::Retry(_) = spent {
            tracing::info!(target: "auth", user = %claims.sub, session = %claims.sid, "refresh retried within the grace window: the same pair");
        }
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

    /// Set the session's verifier to the successor's (issued at
    /// `first_used`), only if the session is not revoked and holds `token`'s
    /// verifier or already the successor's (a retry of this refresh got
    /// there first). `None`: the session holds neither, or is revoked.
    /// The session records the refresh's time and `client`.
    async fn rotate(
        &self,
        token: &RefreshToken,
        email: &str,
        first_used: DateTime,
        client: &Client,
    ) -> Result<Option<TokenPair>, UserError> {
        let claims = token.claims();
        let issued_at = first_used.timestamp_millis().div_euclid(1000);
        let issued = self.tokens.issue_successor(claims, email, issued_at)?;
        let (old, new) = (
            tokens::verifier(token.token()),
            tokens::verifier(&issued.refresh_token),
        );
        let rotated = self
            .sessions
            .update_one(
                doc! { "_id": &claims.sid, "revoked": false, "refreshVerifier": { "$in": [&old, &new] } },
                doc! { "$set": {
                    "refreshVerifier": &new,
                    "updatedAt": DateTime::now(),
                    "refreshedAt": DateTime::now(),
                    "clientAddr": client.addr.to_string(),
                    "userAgent": client.user_agent.as_deref(),
                    "expiresAt": DateTime::from_millis(issued.refresh_claims.exp * 1000),
                } },
            )
            .await?;
        let pair = TokenPair {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
        };
        Ok((rotated.matched_count > 0).then_some(pair))
    }

    /// Record the token `claims` describe as spent (a unique-key insert: of
    /// two requests presenting it, exactly one is its first use). A second
    /// presentation is a [`Spend::Retry`] within the grace window, else an
    /// error: see [`Self::reuse_detected`].
    async fn spend(&self, claims: &Claims, user_id: ObjectId) -> Result<Spend, UserError> {
        let now = DateTime::now();
        let inserted = self
            .used_tokens
            .insert_one(doc! {
                "_id": &claims.jti,
                "sessionId": &claims.sid,
                "userId": user_id,
                "usedAt": now,
                "expiresAt": DateTime::from_millis(claims.exp * 1000),
            })
            .await;
        match inserted {
            Ok(_) => Ok(Spend::First(now)),
            Err(err) if is_duplicate_key(&err) => self.spent_before(claims, user_id).await,
            Err(err) => Err(err.into()),
        }
    }

    /// The token was presented before: a retry if its first use is within
    /// the grace window and no reuse was reported for it; else reuse.
    async fn spent_before(&self, claims: &Claims, user_id: ObjectId) -> Result<Spend, UserError> {
        let record = self
            .used_tokens
            .find_one(doc! { "_id": &claims.jti })
            .await?;
        let grace = self.tuning.refresh_reuse_grace;
        match second_presentation(record.as_ref(), DateTime::now(), grace) {
            Presented::Retry(spend) => Ok(spend),
            Presented::Reported => {
                tracing::info!(target: "auth", user = %user_id, session = %claims.sid, "replay of a refresh token already reported; nothing revoked");
                Err(UserError::TokenSpent)
            }
            Presented::Reuse => Err(self.reuse_detected(claims, user_id).await?),
        }
    }

    /// A spent refresh token was presented again, outside the grace window
    /// (or for a session that moved on): theft, or a client that lost an
    /// answer. The first detection revokes every session of the user and
    /// marks the token's record (`reuseDetectedAt`); a replay of a token
    /// already marked is refused and revokes nothing (see
    /// [`Self::spent_before`]), so sessions opened after the detection
    /// survive whoever still holds the old token.
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

    pub(super) async fn revoke_all(&self, user_id: ObjectId) -> Result<(), UserError> {
        self.sessions
            .update_many(
                doc! { "userId": user_id, "revoked": false },
                doc! { "$set": { "revoked": true, "updatedAt": DateTime::now() } },
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime {
        DateTime::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn a_retry_within_the_grace_window_is_no_reuse() {
        let grace = Duration::from_secs(5);
        assert!(within_grace(at(0), at(0), grace));
        assert!(within_grace(at(0), at(4_999), grace));
        assert!(!within_grace(at(0), at(5_000), grace));
        assert!(!within_grace(at(0), at(3_600_000), grace));
    }

    #[test]
    fn no_grace_means_every_repeat_is_reuse() {
        assert!(!within_grace(at(0), at(0), Duration::ZERO));
        assert!(!within_grace(at(0), at(1), Duration::ZERO));
    }

    #[test]
    fn a_second_presentation_within_grace_is_a_retry_of_the_first_use() {
        let record = doc! { "_id": "j", "usedAt": at(0) };
        let grace = Duration::from_secs(5);
        assert_eq!(
            second_presentation(Some(&record), at(1_000), grace),
            Presented::Retry(Spend::Retry(at(0)))
        );
        // The retry's successor is the one issued at the first use.
        assert_eq!(Spend::Retry(at(0)).first_used(), at(0));
    }

    #[test]
    fn a_second_presentation_after_grace_is_reuse() {
        let record = doc! { "_id": "j", "usedAt": at(0) };
        let grace = Duration::from_secs(5);
        assert_eq!(
            second_presentation(Some(&record), at(5_000), grace),
            Presented::Reuse
        );
        assert_eq!(
            second_presentation(Some(&record), at(0), Duration::ZERO),
            Presented::Reuse
        );
    }

    #[test]
    fn a_replay_of_a_reported_token_revokes_nothing_more() {
        // Even within the grace window: once reported, never a retry.
        let record = doc! { "_id": "j", "usedAt": at(0), "reuseDetectedAt": at(10) };
        assert_eq!(
            second_presentation(Some(&record), at(20), Duration::from_secs(5)),
            Presented::Reported
        );
    }

    #[test]
    fn a_presentation_without_its_record_or_time_is_reuse() {
        let grace = Duration::from_secs(5);
        assert_eq!(second_presentation(None, at(0), grace), Presented::Reuse);
        let no_time = doc! { "_id": "j" };
        assert_eq!(
            second_presentation(Some(&no_time), at(0), grace),
            Presented::Reuse
        );
    }

    #[test]
    fn rotation_issues_the_pair_for_a_first_use_or_a_retry() {
        for spent in [Spend::First(at(0)), Spend::Retry(at(0))] {
            assert!(matches!(
                rotation_verdict(spent, Some("pair")),
                Rotation::Issued("pair")
            ));
        }
    }

    #[test]
    fn a_first_use_on_an_ended_session_is_refused_without_revoking() {
        assert!(matches!(
            rotation_verdict::<()>(Spend::First(at(0)), None),
            Rotation::Ended
        ));
    }

    #[test]
    fn a_retry_on_a_session_that_moved_on_is_reuse() {
        assert!(matches!(
            rotation_verdict::<()>(Spend::Retry(at(0)), None),
            Rotation::Reused
        ));
    }

    #[test]
    fn a_first_use_stamped_by_a_clock_ahead_is_recent() {
        // Instances' clocks differ a little: a retry on one whose clock is
        // behind sees the first use "in the future".
        assert!(within_grace(at(300), at(0), Duration::from_secs(5)));
    }
}
