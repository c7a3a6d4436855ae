//! Passwords: Unicode normalisation, the length rules, and bcrypt.
//!
//! One password can be typed as different code-point sequences ("é" is
//! U+00E9 in NFC, `e` + U+0301 in NFD; macOS and some keyboards produce the
//! latter). NIST SP 800-63B §5.1.1.2 says to normalise with NFKC before
//! hashing, so every spelling hashes alike. The length rules (8 characters,
//! at most 72 bytes, since bcrypt reads no further) apply to the normalised
//! form: NFKC can change the length (`ﬁ` → `fi`).
//!
//! Hashes made before normalisation hashed the raw input. A login whose raw
//! password is not already in NFKC form therefore also tries the raw form
//! when the normalised one fails ([`verify`]); that costs a second bcrypt
//! only for such inputs, and runs against the dummy hash as well, so it
//! tells nothing about whether an account exists.

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Fewest characters a password may have (after normalisation).
pub const MIN_CHARS: usize = 8;
/// bcrypt reads only the first 72 bytes; longer passwords are refused.
pub const MAX_BYTES: usize = 72;

/// Why a sign-up password is refused. Safe to show (never echoes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {MIN_CHARS} characters")]
    TooShort,
    #[error("must be at most {MAX_BYTES} bytes (bcrypt reads no further)")]
    TooLong,
}

/// `raw` in NFKC form.
pub fn normalize(raw: &str) -> String {
    match is_nfkc_quick(raw.chars()) {
        IsNormalized::Yes => raw.to_owned(),
        _ => raw.nfkc().collect(),
    }
}

/// A normalised password that meets the sign-up rules. Debug is redacted.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    /// Normalise `raw` and check the length rules on the result.
    pub fn new(raw: &str) -> Result<Self, Vec<PasswordError>> {
        let normalized = normalize(raw);
        let mut errors = Vec::new();
        if normalized.chars().count() < MIN_CHARS {
            errors.push(PasswordError::TooShort);
        }
        if normalized.len() > MAX_BYTES {
            errors.push(PasswordError::TooLong);
        }
        if errors.is_empty() {
            Ok(Self(normalized.into()))
        } else {
            Err(errors)
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// A copy, as the `SecretString` [`verify`] takes.
    pub fn to_secret(&self) -> SecretString {
        self.0.clone()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// A hashing task that could not run (the blocking pool is gone, or the
/// task panicked) or bcrypt refused its input.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hashing task did not finish")]
    Task(#[source] tokio::task::JoinError),
    #[error("bcrypt refused to hash")]
    Bcrypt(#[source] bcrypt::BcryptError),
}

/// bcrypt-hash `password` at `cost`, on tokio's blocking pool.
///
/// The `bcrypt.hash` span is entered inside the blocking task (a child of
/// the caller's span): its time is the hashing's, not the wait for a thread.
pub async fn hash(password: Password, cost: u32) -> Result<String, HashError> {
    let parent = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _span = tracing::info_span!(parent: &parent, "bcrypt.hash", cost).entered();
        bcrypt::hash(password.expose(), cost)
    })
    .await
    .map_err(HashError::Task)?
    .map_err(HashError::Bcrypt)
}

/// Whether `raw` (as typed at login) matches `hash`, on tokio's blocking
/// pool: its NFKC form first, then — for hashes made before normalisation —
/// the raw form if it differs.
pub async fn verify(raw: SecretString, hash: String) -> Result<bool, HashError> {
    let parent = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _span = tracing::info_span!(parent: &parent, "bcrypt.verify").entered();
        let raw = raw.expose_secret();
        let normalized = normalize(raw);
        let matches = |candidate: &str| bcrypt::verify(candidate, &hash).unwrap_or(false);
        matches(&normalized) || (normalized != raw && matches(raw))
    })
    .await
    .map_err(HashError::Task)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFC: &str = "caf\u{e9} au lait"; // é as one code point
    const NFD: &str = "cafe\u{301} au lait"; // e + combining acute

    #[test]
    fn nfc_and_nfd_spellings_normalise_alike() {
        assert_ne!(NFC, NFD);
        assert_eq!(normalize(NFC), normalize(NFD));
        assert_eq!(normalize(NFD), NFC);
    }

    #[test]
    fn compatibility_forms_fold_and_ascii_is_untouched() {
        assert_eq!(normalize("\u{fb01}ne"), "fine"); // ﬁ ligature
        assert_eq!(normalize("ｐａｓｓ"), "pass"); // full-width letters
        assert_eq!(normalize("correct horse battery"), "correct horse battery");
    }

    #[test]
    fn length_rules_apply_to_the_normalised_form() {
        // 7 characters raw (the ligature is one), 8 once normalised.
        assert!(Password::new("\u{fb01}ne-dog").is_ok());
        assert_eq!(normalize("\u{fb01}ne-dog").chars().count(), 8);
        // 8 characters raw, 7 once normalised: e + U+0301 compose into é.
        assert_eq!(
            Password::new("cafe\u{301}abc").unwrap_err(),
            [PasswordError::TooShort]
        );
        // ﷺ is 3 bytes raw, 33 bytes once normalised: 3 of them pass raw
        // length but not normalised.
        assert_eq!(
            Password::new(&"\u{fdfa}".repeat(3)).unwrap_err(),
            [PasswordError::TooLong]
        );
        assert_eq!(
            Password::new(&"é".repeat(37)).unwrap_err(),
            [PasswordError::TooLong]
        );
        assert_eq!(
            Password::new("é".repeat(36).as_str())
                .unwrap()
                .expose()
                .len(),
            72
        );
    }

    #[test]
    fn debug_is_redacted() {
        let password = Password::new(NFC).unwrap();
        assert!(!format!("{password:?}").contains("caf"));
    }

    #[tokio::test]
    async fn a_cost_bcrypt_refuses_is_a_typed_error() {
        let err = hash(Password::new(NFC).unwrap(), 3).await.unwrap_err();
        assert!(matches!(err, HashError::Bcrypt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn verify_accepts_every_spelling_and_hashes_made_before_normalisation() {
        let hashed = hash(Password::new(NFC).unwrap(), 4).await.unwrap();
        for spelling in [NFC, NFD] {
            assert!(verify(spelling.into(), hashed.clone()).await.unwrap());
        }
        assert!(!verify("cafe au lait".into(), hashed).await.unwrap());
        // A hash of the raw NFD bytes, as sign-up stored it before this change.
        let legacy = bcrypt::hash(NFD, 4).unwrap();
        assert!(verify(NFD.into(), legacy).await.unwrap());
    }
}
