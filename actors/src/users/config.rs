//! Authentication settings shared by the UserActor and the HTTP layer.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::queue::clock::Clock;
use crate::users::idempotency::IdempotencyConfig;
use crate::users::keys::{SigningAlg, PUBLISH_AHEAD};
use crate::users::mail_quota::MailQuotaConfig;
use crate::users::throttle::ThrottleConfig;
use crate::validate::{ConfigErrors, Validate};

/// `[auth]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// HS256 key for access tokens.
    pub access_secret: SecretString,
    /// HS256 key for refresh tokens; must differ from the access key.
    pub refresh_secret: SecretString,
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// How long after its first use a refresh token may be presented again
    /// for its session and get the same answer (a client's retry or a
    /// concurrent refresh), instead of counting as reuse. Zero: none.
    #[serde(with = "humantime_serde")]
    pub refresh_reuse_grace: Duration,
    /// bcrypt work factor (4..=31).
    pub bcrypt_cost: u32,
    /// Refuse new passwords that are common or contain the user's name or
    /// e-mail address ([`crate::users::strength`]).
    pub reject_common_passwords: bool,
    /// The most sessions one user holds: opening another deletes the
    /// oldest beyond it (1..=1000).
    pub max_sessions: u32,
    /// How long a password-reset token mailed by
    /// `POST /users/password/forgot` works (1m to 24h).
    #[serde(with = "humantime_serde")]
    pub reset_ttl: Duration,
    /// How long an e-mail verification token works (10m to 30d).
    #[serde(with = "humantime_serde")]
    pub verify_ttl: Duration,
    /// Refuse logins (403) of users whose e-mail address is not verified.
    pub require_verified_email: bool,
    /// Reset mails and verification resends one account is sent per window.
    pub account_mails: MailQuotaConfig,
    /// The mail tokens' "now" (their expiry): the system clock, unless a
    /// test sets a manual one.
    #[serde(skip)]
    pub token_clock: Clock,
    /// Login throttling.
    pub throttle: ThrottleConfig,
    /// `Idempotency-Key` records of sign-ups.
    pub idempotency: IdempotencyConfig,
    /// How access tokens are signed (refresh tokens: HS256 with
    /// `refresh_secret` whatever this says; only this service reads them).
    #[serde(default)]
    pub signing: SigningAlg,
    /// Seals the private signing keys stored in `signing_keys` (EdDSA,
    /// ES256). Every instance of a fleet needs the same one.
    pub key_encryption_secret: SecretString,
    /// How long a signing key signs before the next one takes over.
    #[serde(with = "humantime_serde")]
    pub key_rotation: Duration,
    /// The signing keys' "now" (their ages, rotation): the system clock,
    /// unless a test sets a manual one.
    #[serde(skip)]
    pub key_clock: Clock,
}

impl Validate for AuthConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.ensure(
            (4..=31).contains(&self.bcrypt_cost),
            "bcrypt_cost",
            "must be between 4 and 31",
        );
        errors.ensure(
            !self.access_ttl.is_zero() && self.refresh_ttl > self.access_ttl,
            "refresh_ttl",
            "both token lifetimes must be positive and refresh_ttl longer than access_ttl",
        );
        errors.ensure(
            (1..=1000).contains(&self.max_sessions),
            "max_sessions",
            "must be between 1 and 1000",
        );
        // A window for retries, not a second life for spent tokens.
        errors.ensure(
            self.refresh_reuse_grace <= Duration::from_secs(60),
            "refresh_reuse_grace",
            "must be at most 1m (0s turns it off)",
        );
        // The previous key verifies for access_ttl after it stops signing,
        // and the next is published PUBLISH_AHEAD early: a period shorter
        // than both would keep ever more keys alive at once.
        errors.ensure(
            self.key_rotation >= Duration::from_secs(3_600)
                && self.key_rotation > self.access_ttl + PUBLISH_AHEAD,
            "key_rotation",
            "must be at least 1h and longer than access_ttl + 10m",
        );
        errors.ensure(
            self.reset_ttl >= Duration::from_secs(60)
                && self.reset_ttl <= Duration::from_secs(86_400),
            "reset_ttl",
            "must be from 1m to 24h",
        );
        errors.ensure(
            self.verify_ttl >= Duration::from_secs(600)
                && self.verify_ttl <= Duration::from_secs(30 * 86_400),
            "verify_ttl",
            "must be from 10m to 30d",
        );
        errors.nest("account_mails", &self.account_mails);
        errors.nest("idempotency", &self.idempotency);
        errors.nest("throttle", &self.throttle);
    }
}

/// Valid settings, the repository's defaults' shape (tests of the users'
/// capability start from it).
#[cfg(test)]
pub(crate) fn sample() -> AuthConfig {
    use crate::users::idempotency::IdempotencyConfig;
    use crate::users::throttle::ThrottleConfig;
    AuthConfig {
        access_secret: SecretString::from("a".repeat(32)),
        refresh_secret: SecretString::from("b".repeat(32)),
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(7 * 86_400),
        refresh_reuse_grace: Duration::from_secs(10),
        bcrypt_cost: 10,
        reject_common_passwords: true,
        max_sessions: 20,
        reset_ttl: Duration::from_secs(1_800),
        verify_ttl: Duration::from_secs(86_400),
        require_verified_email: false,
        account_mails: MailQuotaConfig {
            per_window: 3,
            window: Duration::from_secs(3_600),
        },
        token_clock: Clock::system(),
        throttle: ThrottleConfig {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(900),
            forget_after: Duration::from_secs(86_400),
            per_account: 100,
            per_address: 100,
            window: Duration::from_secs(3_600),
        },
        idempotency: IdempotencyConfig {
            ttl: Duration::from_secs(86_400),
            prune_interval: Duration::from_secs(3_600),
        },
        signing: SigningAlg::EdDSA,
        key_encryption_secret: SecretString::from("k".repeat(32)),
        key_rotation: Duration::from_secs(30 * 86_400),
        key_clock: Clock::system(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::refused_after;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> AuthConfig {
        sample()
    }

    #[test]
    fn auth_cost_and_token_lifetimes() {
        assert!(refused_after(config(), |_| {}).is_empty());
        for cost in [3, 32] {
            assert_eq!(
                refused_after(config(), |c| c.bcrypt_cost = cost),
                ["bcrypt_cost"]
            );
        }
        assert!(refused_after(config(), |c| c.bcrypt_cost = 31).is_empty());
        assert_eq!(
            refused_after(config(), |c| c.access_ttl = Duration::ZERO),
            ["refresh_ttl"]
        );
        assert_eq!(
            refused_after(config(), |c| c.refresh_ttl = c.access_ttl),
            ["refresh_ttl"]
        );
        assert!(refused_after(config(), |c| c.refresh_ttl = c.access_ttl + MS).is_empty());
    }

    #[test]
    fn a_user_holds_at_least_one_session_and_a_bounded_number() {
        for refused in [0, 1001] {
            assert_eq!(
                refused_after(config(), |c| c.max_sessions = refused),
                ["max_sessions"]
            );
        }
        for ok in [1, 1000] {
            assert!(refused_after(config(), |c| c.max_sessions = ok).is_empty());
        }
    }

    #[test]
    fn the_refresh_reuse_grace_is_short_or_off() {
        assert_eq!(
            refused_after(config(), |c| c.refresh_reuse_grace =
                Duration::from_secs(60) + MS),
            ["refresh_reuse_grace"]
        );
        for ok in [Duration::from_secs(60), Duration::ZERO] {
            assert!(refused_after(config(), |c| c.refresh_reuse_grace = ok).is_empty());
        }
    }

    #[test]
    fn the_key_rotation_outlives_an_access_token_and_the_publication() {
        let hour = Duration::from_secs(3_600);
        assert_eq!(
            refused_after(config(), |c| c.key_rotation = hour - MS),
            ["key_rotation"]
        );
        assert!(refused_after(config(), |c| c.key_rotation = hour).is_empty());
        assert_eq!(
            refused_after(config(), |c| {
                c.access_ttl = hour;
                c.key_rotation = hour + PUBLISH_AHEAD;
            }),
            ["key_rotation"]
        );
    }

    #[test]
    fn mail_tokens_live_minutes_to_hours_or_days() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            refused_after(config(), |c| c.reset_ttl = minute - MS),
            ["reset_ttl"]
        );
        assert_eq!(
            refused_after(config(), |c| c.reset_ttl = 24 * 60 * minute + MS),
            ["reset_ttl"]
        );
        assert_eq!(
            refused_after(config(), |c| c.verify_ttl = 10 * minute - MS),
            ["verify_ttl"]
        );
        assert_eq!(
            refused_after(config(), |c| c.account_mails.per_window = 0),
            ["account_mails.per_window"]
        );
    }

    #[test]
    fn the_throttle_and_idempotency_rules_are_nested_under_their_tables() {
        let keys = refused_after(config(), |c| {
            c.bcrypt_cost = 0;
            c.throttle.window = Duration::ZERO;
            c.idempotency.prune_interval = Duration::ZERO;
        });
        assert_eq!(
            keys,
            [
                "bcrypt_cost",
                "idempotency.prune_interval",
                "throttle.window"
            ]
        );
    }
}
