//! Changing one's password (`POST /users/password`): the current password
//! is checked exactly as a login checks it, the new one by the rules of a
//! new password; every *other* session ends, the owner is told by e-mail.

use std::net::IpAddr;

use mongodb::bson::{doc, DateTime};
use secrecy::SecretString;

use crate::events::Event;
use crate::users::email::Email;
use crate::users::notices::{password_changed_payload, PASSWORD_CHANGED};
use crate::users::password::{self, Password};
use crate::users::service::UserService;
use crate::users::tokens::Claims;
use crate::users::UserError;

impl UserService {
    /// Change the password of the user `claims` name, in session
    /// `claims.sid`, from `current` (as typed) to `new` (normalised).
    ///
    /// In order: the new password's rules (a 400 costs no throttle and no
    /// bcrypt); the current password through the login throttle, as a login
    /// from `client` with the account's address (so a wrong one answers and
    /// counts exactly like a failed login, and a stolen access token buys
    /// no more guesses than the login form gives); then the new hash,
    /// written only over the hash just verified (of two changes racing,
    /// one wins; the other is answered like a wrong password). Then every
    /// other session ends — this one stays, its refresh token still works —
    /// the notice job is written and the event published.
    pub(crate) async fn change_password(
        &self,
        claims: Claims,
        current: SecretString,
        new: Password,
        client: IpAddr,
        dummy_hash: &str,
    ) -> Result<(), UserError> {
        let user_id = claims.owner()?;
        let user = self
            .users
            .find_one(doc! { "_id": user_id })
            .await?
            .ok_or(UserError::NotFound)?;
        self.check_new_password(&new, &user.name, &user.email)
            .await?;
        let email = Email::parse(&user.email).ok();
        let verified = self
            .authenticate(email, current, client, dummy_hash)
            .await?;
        if verified.id != user_id {
            // The address moved to another account in between: not ours.
            return Err(UserError::InvalidCredentials);
        }
        let hash = password::hash(new, self.tuning.bcrypt_cost).await?;
        let changed = self
            .users
            .update_one(
                doc! { "_id": user_id, "passwordHash": &verified.password_hash },
                doc! { "$set": { "passwordHash": hash, "updatedAt": DateTime::now() } },
            )
            .await?;
        if changed.matched_count == 0 {
            return Err(UserError::InvalidCredentials);
        }
        let ended = self.end_other_sessions(user_id, &claims.sid).await?;
        let job = self
            .jobs
            .enqueue(
                PASSWORD_CHANGED,
                password_changed_payload(user_id, &verified.email, &verified.name),
            )
            .await?;
        self.jobs.claim_soon(job, PASSWORD_CHANGED);
        tracing::info!(target: "auth", user = %user_id, session = %claims.sid, ended, "password changed");
        self.events.publish(Event::PasswordChanged {
            user_id: claims.sub,
            session_id: claims.sid,
        });
        Ok(())
    }
}
