//! What the users capability hands out (token pairs, profiles) and takes in
//! (sign-ups, profile changes), and the documents it stores.
//!
//! The public types carry no BSON and no API schema: the HTTP layer has its
//! own documented views of them.

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
    fn token_pairs_never_show_in_debug() {
        let pair = TokenPair {
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
        };
        assert_eq!(format!("{pair:?}"), "TokenPair([REDACTED])");
    }
}
