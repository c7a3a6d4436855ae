//! What the users capability hands out (token pairs, profiles) and takes in
//! (sign-ups, profile changes), and the documents it stores.
//!
//! The public types carry no BSON and no API schema: the HTTP layer has its
//! own documented views of them.

use std::net::IpAddr;

use mongodb::bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

use crate::users::email::Email;
use crate::users::id::UserId;
use crate::users::password::Password;

/// The oldest age a profile may state (sign-up, PATCH, adopted data).
pub const MAX_AGE: u8 = 150;

/// A sign-up, already validated and normalised by the caller.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Trimmed.
    pub name: String,
    pub email: Email,
    /// NFKC-normalised, length-checked.
    pub password: Password,
    pub age: Option<u8>,
    /// Where the sign-up came from: its first session records it.
    pub client: Client,
}

/// The most characters of a `User-Agent` a session keeps.
pub const MAX_USER_AGENT: usize = 200;

/// Where a request that opens or refreshes a session comes from, as the
/// session records it for its owner's list: the client address (as seen
/// through the trusted proxies) and the `User-Agent`, cut to
/// [`MAX_USER_AGENT`] characters with control characters dropped (the
/// client chooses it: it must not grow a session without bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn new(addr: IpAddr, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(|raw| {
                raw.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT)
                    .collect::<String>()
            })
            .map(|agent| agent.trim().to_owned())
            .filter(|agent| !agent.is_empty());
        Self { addr, user_agent }
    }
}

/// One of a user's sessions as its owner sees it (`GET /users/sessions`):
/// no token material.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The last refresh (`None`: never refreshed).
    pub refreshed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The client address of the last login or refresh.
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// Whether it is the session of the access token that asked.
    pub current: bool,
}

/// What every successful sign-up, login or refresh answers. Debug is
/// redacted: these are credentials.
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenPair([REDACTED])")
    }
}

/// The profile anyone may see, without authentication (`GET /users/{id}`):
/// never the e-mail address or the age, let alone a hash or a verifier.
/// Ids are guessable (a timestamp and a counter), so whatever this shows,
/// anyone can collect for every user. Serialised as the cache stores it
/// and the API answers it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublicProfile {
    pub id: UserId,
    pub name: String,
    #[serde(rename = "createdAt")]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The profile its owner sees (`GET`/`PATCH /users/profile`): the public
/// profile with the e-mail address and the age.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerProfile {
    pub id: UserId,
    pub name: String,
    pub email: String,
    pub age: Option<u8>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Whether the owner proved the address (`POST /users/email/verify`);
    /// false for accounts made before verification existed.
    pub email_verified: bool,
}

impl OwnerProfile {
    /// What anyone else may see of it.
    pub fn public(&self) -> PublicProfile {
        PublicProfile {
            id: self.id,
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}

/// Fields a user may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    pub name: Option<String>,
    pub age: Option<u8>,
}

/// Stored user document (`users`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<i32>,
    pub password_hash: String,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    /// Absent (false) until the address is verified: documents written
    /// before verification existed, or adopted from the NestJS service,
    /// read as unverified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_verified: bool,
}

impl UserDoc {
    pub fn profile(&self) -> OwnerProfile {
        OwnerProfile {
            id: self.id.into(),
            name: self.name.clone(),
            email: self.email.clone(),
            age: self.age.and_then(|a| u8::try_from(a).ok()),
            created_at: chrono::DateTime::from_timestamp_millis(self.created_at.timestamp_millis())
                .unwrap_or_default(),
            email_verified: self.email_verified,
        }
    }
}

/// Stored session (`sessions`): one login, one current refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: ObjectId,
    pub refresh_verifier: String,
    pub revoked: bool,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub expires_at: DateTime,
    /// The last refresh; absent until the first (and on sessions stored
    /// before sessions were listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<DateTime>,
    /// Of the last login or refresh (see [`Client`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The time of a stored date, for the API.
fn utc(at: DateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or_default()
}

impl SessionDoc {
    /// As its owner sees it; `current`: the session that asks.
    pub fn info(&self, current: &str) -> SessionInfo {
        SessionInfo {
            id: self.id.clone(),
            created_at: utc(self.created_at),
            refreshed_at: self.refreshed_at.map(utc),
            client_addr: self.client_addr.clone(),
            user_agent: self.user_agent.clone(),
            current: self.id == current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(age: Option<i32>) -> UserDoc {
        UserDoc {
            id: ObjectId::parse_str("65f1c0ffee0000000000beef").unwrap(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            age,
            password_hash: "$2b$04$secret".into(),
            created_at: DateTime::from_millis(1_700_000_000_123),
            updated_at: DateTime::from_millis(1_700_000_000_123),
            email_verified: false,
        }
    }

    #[test]
    fn the_public_profile_shows_only_id_name_and_creation() {
        let json = serde_json::to_value(user(Some(36)).profile().public()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "65f1c0ffee0000000000beef",
                "name": "Ada",
                "createdAt": "2023-11-14T22:13:20.123Z",
            })
        );
    }

    #[test]
    fn a_stored_age_out_of_range_is_no_age() {
        assert_eq!(user(Some(36)).profile().age, Some(36));
        assert_eq!(user(Some(-1)).profile().age, None);
        assert_eq!(user(Some(300)).profile().age, None);
        assert_eq!(user(None).profile().age, None);
    }

    #[test]
    fn a_user_agent_is_bounded_and_cleaned() {
        let addr: IpAddr = "203.0.113.9".parse().unwrap();
        let long = "x".repeat(10_000);
        let client = Client::new(addr, Some(&long));
        assert_eq!(client.user_agent.unwrap().len(), MAX_USER_AGENT);
        let forged = Client::new(addr, Some("curl/8\n\u{0}ok\u{1b}[31m"));
        assert_eq!(forged.user_agent.as_deref(), Some("curl/8ok[31m"));
        assert_eq!(Client::new(addr, Some("  ")).user_agent, None);
        assert_eq!(Client::new(addr, None).user_agent, None);
    }

    #[test]
    fn token_pairs_never_show_in_debug() {
        let pair = TokenPair {
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
        };
        assert_eq!(format!("{pair:?}"), "TokenPair([REDACTED])");
    }
}
