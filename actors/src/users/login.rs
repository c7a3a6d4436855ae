//! Login: the throttle, the password check (timing-safe for unknown
//! addresses), the session it opens and the job it writes.

use std::net::IpAddr;

use mongodb::bson::{doc, oid::ObjectId, DateTime};
use secrecy::SecretString;

use crate::events::Event;
use crate::users::email::Email;
use crate::users::mail_jobs::ATTACK_NOTICE;
use crate::users::model::{Client, TokenPair, UserDoc};
use crate::users::password;
use crate::users::service::UserService;
use crate::users::UserError;

/// The throttle's account key for logins whose e-mail is no valid address:
/// one shared key, so junk input cannot create throttle keys without bound
/// (and it names no account anyway).
const NOT_AN_ADDRESS: &str = "(not an e-mail address)";

/// The job a login records itself with.
const LOGIN_JOB: &str = "user.login";

/// The throttle's account key for a login with `email`.
fn throttle_account(email: Option<&Email>) -> &str {
    email.map_or(NOT_AN_ADDRESS, Email::as_str)
}

/// The hash a login's password is checked against: the user's, or the
/// dummy one when there is no such user (the same work either way).
fn hash_to_verify<'a>(user: Option<&'a UserDoc>, dummy_hash: &'a str) -> &'a str {
    user.map_or(dummy_hash, |u| u.password_hash.as_str())
}

impl UserService {
    /// Log in; once the `user.login` job is written, have it claimed now.
    /// `dummy_hash`: a hash at the configured cost, verified when there is
    /// no such account so that both failures take as long.
    pub(crate) async fn login(
        &self,
        email: Option<Email>,
        password: SecretString,
        client: Client,
        dummy_hash: &str,
    ) -> Result<TokenPair, UserError> {
        let (pair, job) = self
            .login_and_record(email, password, client, dummy_hash)
            .await?;
        self.jobs.claim_soon(job, LOGIN_JOB);
        Ok(pair)
    }

    /// Log in: the token pair, and the analytics job written for the login.
    async fn login_and_record(
        &self,
        email: Option<Email>,
        password: SecretString,
        client: Client,
        dummy_hash: &str,
    ) -> Result<(TokenPair, ObjectId), UserError> {
        let user = self
            .authenticate(email, password, client.addr, dummy_hash)
            .await?;
        // Only once the password was found right: the 403 tells nothing to
        // whoever does not know it.
        if self.tuning.require_verified_email && !user.email_verified {
            return Err(UserError::EmailNotVerified);
        }
        let (pair, sid) = self.open_session(&user, &client).await?;
        let job = self
            .jobs
            .enqueue(LOGIN_JOB, doc! { "userId": user.id, "at": DateTime::now() })
            .await?;
        self.events.publish(Event::UserLoggedIn {
            user_id: user.id.to_hex(),
            session_id: sid,
        });
        Ok((pair, job))
    }

    /// The user whose password this is, if the throttle lets the attempt
    /// through; the attempt is counted as the throttle's rules say.
    pub(super) async fn authenticate(
        &self,
        email: Option<Email>,
        password: SecretString,
        client: IpAddr,
        dummy_hash: &str,
    ) -> Result<UserDoc, UserError> {
        // Something that is no address names no account: it is answered
        // exactly like an unknown one (one shared throttle key, the dummy
        // hash's timing), so login reveals nothing new.
        let account = throttle_account(email.as_ref());
        let ticket = match self.throttle.attempt(account, client).await {
            Ok(ticket) => {
                if ticket.attack_began() {
                    self.attack_began(email.as_ref()).await;
                }
                ticket
            }
            Err(refused) => {
                if refused.attack_began {
                    self.attack_began(email.as_ref()).await;
                }
                tracing::warn!(target: "auth", %client, "login throttled");
                return Err(UserError::Throttled(refused.wait));
            }
        };
        match self
            .check_password(email.as_ref(), password, dummy_hash)
            .await
        {
            Ok(Some(user)) => {
                ticket.succeeded().await;
                Ok(user)
            }
            Ok(None) => {
                ticket.failed();
                tracing::info!(target: "auth", %client, "login failed: invalid credentials");
                Err(UserError::InvalidCredentials)
            }
            Err(err) => {
                ticket.cancel().await;
                Err(err)
            }
        }
    }

    /// This attempt put the account of `email` under attack: write the
    /// `user.attack_notice` job, whether or not the address has an account
    /// (the job finds out; this attempt's answer and timing do not depend
    /// on it). A failure is logged: the login goes on.
    async fn attack_began(&self, email: Option<&Email>) {
        let Some(email) = email else { return };
        tracing::warn!(target: "auth", "an account is under attack: too many failed logins");
        let payload = doc! { "email": email.as_str() };
        match self.jobs.enqueue(ATTACK_NOTICE, payload).await {
            Ok(job) => self.jobs.claim_soon(job, ATTACK_NOTICE),
            Err(err) => {
                let cause: &dyn std::error::Error = &err;
                tracing::warn!(target: "auth", error = cause, "attack notice not queued");
            }
        }
    }

    /// The user with `email` if `password` is theirs (`None`: unknown e-mail
    /// or wrong password, indistinguishable).
    async fn check_password(
        &self,
        email: Option<&Email>,
        password: SecretString,
        dummy_hash: &str,
    ) -> Result<Option<UserDoc>, UserError> {
        let user = match email {
            Some(email) => {
                self.users
                    .find_one(doc! { "email": email.as_str() })
                    .await?
            }
            None => None,
        };
        // Verify against a dummy hash when there is no such user, so both
        // failures take the same time and give the same answer.
        let hash = hash_to_verify(user.as_ref(), dummy_hash).to_owned();
        let matches = password::verify(password, hash).await?;
        Ok(user.filter(|_| matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::password::Password;

    fn user(hash: String) -> UserDoc {
        let now = DateTime::now();
        UserDoc {
            id: ObjectId::new(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            age: None,
            password_hash: hash,
            created_at: now,
            updated_at: now,
            email_verified: false,
        }
    }

    #[test]
    fn a_login_is_throttled_by_its_address() {
        let email = Email::parse("ada@example.com").unwrap();
        assert_eq!(throttle_account(Some(&email)), "ada@example.com");
    }

    #[test]
    fn logins_with_no_address_share_one_throttle_key() {
        assert_eq!(throttle_account(None), NOT_AN_ADDRESS);
        // No valid address can take that key.
        assert!(Email::parse(NOT_AN_ADDRESS).is_err());
    }

    #[tokio::test]
    async fn an_unknown_account_checks_the_dummy_hash_and_fails() {
        let secret = || Password::new("correct horse battery").unwrap();
        let dummy = password::hash(secret(), 4).await.unwrap();
        // Checked against the dummy hash: the work is done, the answer is
        // "no user", even for the password the dummy hash was made from.
        assert_eq!(hash_to_verify(None, &dummy), dummy);
        let matches = password::verify(secret().to_secret(), dummy.clone())
            .await
            .unwrap();
        assert!(matches, "the dummy hash is verified like any other");
        assert!(Option::<UserDoc>::None.filter(|_| matches).is_none());
    }

    #[tokio::test]
    async fn a_known_account_checks_its_own_hash() {
        let right = Password::new("correct horse battery").unwrap();
        let wrong = Password::new("incorrect horse battery").unwrap();
        let ada = user(password::hash(right.clone(), 4).await.unwrap());
        let hash = hash_to_verify(Some(&ada), "dummy").to_owned();
        assert_eq!(hash, ada.password_hash);
        assert!(password::verify(right.to_secret(), hash.clone())
            .await
            .unwrap());
        assert!(!password::verify(wrong.to_secret(), hash).await.unwrap());
    }
}
