//! Display names: what sign-up and `PATCH /users/profile` accept.
//!
//! A name is shown to other users (the public profile) and mailed to an
//! address nobody has verified yet (the welcome e-mail), so it must not be
//! able to hide itself or rearrange the text around it:
//! - no control characters (general category Cc: NUL, line breaks, escapes);
//! - no format characters (Cf: the bidirectional overrides and isolates such
//!   as U+202E, which make `a\u{202e}gpj.exe` read `aexe.jpg`, and the
//!   invisible joiners and spaces such as U+200B);
//! - at least one visible character: a letter, number, punctuation mark or
//!   symbol (L, N, P, S). Spaces and combining marks alone show nothing.
//!
//! The categories come from `unicode-properties` (the Unicode Character
//! Database), not from hand-typed ranges, so new format characters are
//! refused as the crate follows Unicode.

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Most characters a name may have (after trimming).
pub const MAX_CHARS: usize = 100;

/// Why a name is refused. Safe to show: never echoes the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must be 1 to {MAX_CHARS} characters")]
    Length,
    #[error("must not contain control characters")]
    Control,
    #[error("must not contain invisible formatting characters (such as U+200B or U+202E)")]
    Format,
    #[error("must contain a visible character (a letter, digit, punctuation or symbol)")]
    NothingVisible,
}

/// `raw` trimmed, if it is an acceptable name; else every rule it breaks.
pub fn parse(raw: &str) -> Result<String, Vec<NameError>> {
    let name = raw.trim();
    let mut errors = Vec::new();
    if !(1..=MAX_CHARS).contains(&name.chars().count()) {
        errors.push(NameError::Length);
    }
    let category = |c: char| c.general_category();
    if name
        .chars()
        .any(|c| category(c) == GeneralCategory::Control)
    {
        errors.push(NameError::Control);
    }
    if name.chars().any(|c| category(c) == GeneralCategory::Format) {
        errors.push(NameError::Format);
    }
    // An empty name is already refused for its length.
    if !name.is_empty() && !name.chars().any(visible) {
        errors.push(NameError::NothingVisible);
    }
    if errors.is_empty() {
        Ok(name.to_owned())
    } else {
        Err(errors)
    }
}

/// A character that shows something by itself.
fn visible(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_trimmed_and_kept() {
        for (raw, kept) in [
            ("Ada Lovelace", "Ada Lovelace"),
            ("  Ada  ", "Ada"),
            ("Zoë O'Brien-Ñúñez", "Zoë O'Brien-Ñúñez"),
            ("李小龍", "李小龍"),
            ("محمد", "محمد"),
            ("🦀", "🦀"),
            ("R2-D2", "R2-D2"),
            ("e\u{301}", "e\u{301}"),
        ] {
            assert_eq!(parse(raw).as_deref(), Ok(kept), "{raw:?}");
        }
        assert_eq!(parse(&"a".repeat(MAX_CHARS)).map(|n| n.len()), Ok(100));
    }

    #[test]
    fn format_characters_are_refused_anywhere() {
        for raw in [
            "\u{200b}",          // zero-width space
            "a\u{202e}b",        // right-to-left override
            "Ada\u{2066}",       // left-to-right isolate
            "A\u{200d}da",       // zero-width joiner
            "\u{feff}Ada",       // byte-order mark
            "Ada\u{e0041}",      // tag character
            "Ada\u{61c}",        // Arabic letter mark
            "Ada\u{ad}Lovelace", // soft hyphen
        ] {
            let errors = parse(raw).unwrap_err();
            assert!(errors.contains(&NameError::Format), "{raw:?}: {errors:?}");
        }
    }

    #[test]
    fn a_name_must_show_something() {
        assert_eq!(
            parse("\u{200b}"),
            Err(vec![NameError::Format, NameError::NothingVisible])
        );
        for raw in ["\u{301}\u{301}", "\u{3000}\u{301}"] {
            assert_eq!(parse(raw), Err(vec![NameError::NothingVisible]), "{raw:?}");
        }
    }

    #[test]
    fn length_and_control_rules_hold() {
        assert_eq!(parse(""), Err(vec![NameError::Length]));
        assert_eq!(parse("   "), Err(vec![NameError::Length]));
        assert_eq!(
            parse(&"a".repeat(MAX_CHARS + 1)),
            Err(vec![NameError::Length])
        );
        assert_eq!(parse("A\u{0}B"), Err(vec![NameError::Control]));
        assert_eq!(parse("A\nB"), Err(vec![NameError::Control]));
        assert_eq!(
            parse("A\u{202E}B\u{0}"),
            Err(vec![NameError::Control, NameError::Format])
        );
    }
}
