//! Guessable passwords: what a *new* password (sign-up, change) must pass
//! beyond the length rules of [`super::password`], while
//! `auth.reject_common_passwords` is on (the default).
//!
//! OWASP ASVS v5 (6.2.4, 6.2.11) asks that new passwords be checked against
//! the most common ones and against words of the context. The estimator is
//! the `zxcvbn` crate (Dropbox's zxcvbn, with its frequency lists of common
//! passwords, names and words — no list typed here): a password it expects
//! to fall in fewer than [`MIN_GUESSES`] (10^8) guesses — the common
//! passwords, keyboard walks, sequences, dictionary words with digits or
//! l33t — is refused with zxcvbn's own warning as the reason. 10^8 is what
//! zxcvbn grants 8 characters without any pattern, the shortest password
//! the length rule allows; so the bar refuses patterns, not short random
//! passwords (zxcvbn's "score 3", from 10^8 + 5 guesses, would refuse
//! every 8-character password). The user's name, e-mail address and
//! the service's name are handed to it as user inputs, so variants of them
//! score low too. And, stated outright rather than left to a score, a
//! password that *contains* the local part of the user's e-mail address or
//! (a word of) their name, compared case-insensitively, is refused; parts
//! shorter than [`MIN_PART`] characters are not compared ("Al" is in too
//! many passwords to mean anything).
//!
//! zxcvbn is CPU work that grows with the length: about 0.1 to 0.5 ms for
//! ordinary passwords, up to 7 ms at the 72-byte limit on this project's
//! machine (the first call builds its dictionaries, a few ms more), so
//! [`PasswordPolicy::check`] runs it on tokio's blocking pool, like bcrypt.
//! The length rules run first: zxcvbn never sees more than 72 bytes.

use crate::users::password::Password;

/// The fewest guesses zxcvbn may expect a new password to take.
pub const MIN_GUESSES: u64 = 100_000_000;

/// The fewest characters a part of a name or e-mail address must have to
/// be looked for in a password.
pub const MIN_PART: usize = 3;

/// Words of this service's context, handed to zxcvbn as user inputs.
const CONTEXT: &[&str] = &["troupe"];

/// Why a new password is refused as guessable. Safe to show: it names the
/// rule, never echoes the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Guessable {
    #[error("must not contain your e-mail address")]
    ContainsEmail,
    #[error("must not contain your name")]
    ContainsName,
    /// zxcvbn's warning (`This is a top-10 common password.`), or a
    /// general one when it has none.
    #[error("is too easy to guess: {0}")]
    Weak(String),
}

/// Whether new passwords are checked for guessability
/// (`auth.reject_common_passwords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub reject_guessable: bool,
}

impl PasswordPolicy {
    /// Check `password` for the user named `name` with address `email`, on
    /// tokio's blocking pool. `Err`: the check's task did not finish.
    pub async fn check(
        self,
        password: &Password,
        name: &str,
        email: &str,
    ) -> Result<Result<(), Guessable>, tokio::task::JoinError> {
        if !self.reject_guessable {
            return Ok(Ok(()));
        }
        let (password, name, email) = (password.clone(), name.to_owned(), email.to_owned());
        let parent = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _span = tracing::info_span!(parent: &parent, "password.strength").entered();
            judge(password.expose(), &name, &email)
        })
        .await
    }
}

/// The words of `name` and the local part of `email`, lower-cased, as the
/// parts a password must not contain (those of at least [`MIN_PART`]
/// characters) and zxcvbn's user inputs.
fn parts(name: &str, email: &str) -> (Vec<String>, Option<String>) {
    let long_enough = |part: &&str| part.chars().count() >= MIN_PART;
    let mut names: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(long_enough)
        .map(str::to_lowercase)
        .collect();
    let whole: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    if whole.chars().count() >= MIN_PART && !names.contains(&whole) {
        names.push(whole);
    }
    let local = email.split('@').next().unwrap_or_default();
    let local = Some(local).filter(long_enough).map(str::to_lowercase);
    (names, local)
}

/// The rules, in order: the e-mail address, the name, then zxcvbn.
fn judge(password: &str, name: &str, email: &str) -> Result<(), Guessable> {
    let lowered = password.to_lowercase();
    let (names, local) = parts(name, email);
    if local
        .as_deref()
        .is_some_and(|local| lowered.contains(local))
    {
        return Err(Guessable::ContainsEmail);
    }
    if names.iter().any(|part| lowered.contains(part.as_str())) {
        return Err(Guessable::ContainsName);
    }
    let mut inputs: Vec<&str> = CONTEXT.to_vec();
    inputs.extend(names.iter().map(String::as_str));
    inputs.extend(local.as_deref());
    inputs.push(email);
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    if estimate.guesses() >= MIN_GUESSES {
        return Ok(());
    }
    let warning = estimate
        .feedback()
        .and_then(|feedback| feedback.warning())
        .map_or_else(
            || "it resembles common passwords; use a few unrelated words".to_owned(),
            |warning| warning.to_string(),
        );
    Err(Guessable::Weak(warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: PasswordPolicy = PasswordPolicy {
        reject_guessable: true,
    };

    fn check(password: &str, name: &str, email: &str) -> Result<(), Guessable> {
        judge(password, name, email)
    }

    #[test]
    fn the_most_common_passwords_are_refused_with_the_estimators_reason() {
        for common in ["password123", "12345678", "qwertyuiop", "iloveyou1"] {
            let err = check(common, "Ada Lovelace", "ada@example.com").unwrap_err();
            assert!(matches!(err, Guessable::Weak(_)), "{common}: {err:?}");
            assert!(err.to_string().contains("common password"), "{err}");
        }
    }

    #[test]
    fn a_password_containing_the_email_local_part_is_refused() {
        assert_eq!(
            check("my-Lovelace1815-horse", "Ada", "lovelace1815@example.com"),
            Err(Guessable::ContainsEmail)
        );
    }

    #[test]
    fn a_password_containing_the_name_or_a_word_of_it_is_refused() {
        for password in ["grace hopper rocks", "xx-HOPPER-yy-zz", "gracehopper!!"] {
            assert_eq!(
                check(password, "Grace Hopper", "gh@example.com"),
                Err(Guessable::ContainsName),
                "{password}"
            );
        }
    }

    #[test]
    fn short_name_parts_are_not_compared() {
        // "Al" and "bo" are in too many passwords to mean anything.
        assert_eq!(check("correct horse battery", "Al Bo", "bo@x.co"), Ok(()));
        assert_eq!(
            parts("Al Bo", "bo@x.co"),
            (vec!["albo".to_owned()], None),
            "only the whole name is long enough"
        );
    }

    #[test]
    fn eight_characters_without_a_pattern_pass_a_pattern_does_not() {
        assert_eq!(check("kq7vx2mw", "Ada", "ada@example.com"), Ok(()));
        for patterned in ["abcdefgh", "Summer2024!", "long enough"] {
            assert!(
                check(patterned, "Ada", "ada@example.com").is_err(),
                "{patterned}"
            );
        }
    }

    #[test]
    fn a_strong_password_unrelated_to_the_user_passes() {
        assert_eq!(
            check("correct horse battery", "Test User", "user-1@example.com"),
            Ok(())
        );
    }

    #[tokio::test]
    async fn the_policy_runs_only_when_switched_on() {
        let weak = Password::new("password123").unwrap();
        let off = PasswordPolicy {
            reject_guessable: false,
        };
        assert_eq!(off.check(&weak, "Ada", "a@x.co").await.unwrap(), Ok(()));
        assert!(ON.check(&weak, "Ada", "a@x.co").await.unwrap().is_err());
    }
}
