//! [`Email`]: an e-mail address that was checked once, on the way in, and is
//! held in its canonical form from then on.
//!
//! Only a *bare* address is accepted: a dot-atom local part (RFC 5322 §3.2.3)
//! and a DNS host name (letters, digits, hyphens; at least two labels). No
//! display names (`x <victim@ex.com>`), comments, quoted local parts or IP
//! literals: each of those let one mailbox back any number of accounts, or
//! was accepted here and refused by the mailer later. Only ASCII is accepted,
//! and it is checked *before* lower-casing (the Kelvin sign `K` lower-cases
//! to an ASCII `k`), so look-alike letters cannot make a second account for
//! the "same" address.
//!
//! The canonical form is trimmed and lower-cased; uniqueness is enforced on
//! it (the `users.email` index). Every accepted address is also accepted by
//! lettre's own [`lettre::Address`] parser, so the mailer can never refuse
//! an address sign-up accepted.

use std::fmt;

use lettre::Address;

/// Longest address: a forward-path of 256 octets minus the angle brackets
/// (RFC 5321 §4.5.3.1.3 and its errata).
pub const MAX_LEN: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Why a string is not an address we accept. The text is safe to show to
/// the client (it never repeats the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is empty")]
    Empty,
    #[error("must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("must contain only ASCII characters")]
    NotAscii,
    #[error("must be a bare address like name@example.com (no display name, comment or second @)")]
    NotBare,
    #[error("the part before @ must be 1 to {MAX_LOCAL_LEN} characters")]
    LocalLength,
    #[error("the part before @ may hold letters, digits, !#$%&'*+-/=?^_`{{|}}~ and single dots between them")]
    LocalSyntax,
    #[error("the domain must be a host name like example.com (no IP literal, no empty label, no trailing dot)")]
    Domain,
    #[error("the domain labels must be 1 to 63 letters, digits or inner hyphens")]
    Label,
    #[error("is not an address the mailer accepts")]
    Mailer,
}

/// A canonical (trimmed, lower-cased, ASCII), mailable e-mail address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Check `raw` and return its canonical form.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if !trimmed.is_ascii() {
            return Err(EmailError::NotAscii);
        }
        if trimmed.len() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let canonical = trimmed.to_ascii_lowercase();
        let (local, domain) = canonical.split_once('@').ok_or(EmailError::NotBare)?;
        check_local(local)?;
        check_domain(domain)?;
        // The mailer's own rules, so a job never fails on an address we took.
        Address::new(local, domain).map_err(|_| EmailError::Mailer)?;
        Ok(Self(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address as lettre holds it (for building a `Mailbox`).
    pub fn to_address(&self) -> Address {
        // `parse` ran lettre's own check on this very string.
        self.0
            .parse()
            .expect("an Email is a valid lettre Address by construction")
    }
}

/// `atext` of RFC 5322 §3.2.3: what a dot-atom may hold besides dots.
fn is_atext(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&byte)
}

/// A dot-atom: atoms of `atext` joined by single dots. This also refuses
/// quotes, spaces, angle brackets, parentheses (comments), commas and a
/// second `@`, so no display-name or group form gets through.
fn check_local(local: &str) -> Result<(), EmailError> {
    if local.is_empty() || local.len() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalLength);
    }
    let atoms_ok = local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    if atoms_ok {
        Ok(())
    } else {
        // A stray `<`, `(`, `"` or `@` means some other form was sent.
        if local.bytes().any(|b| b"<>()\",;:@[] ".contains(&b)) {
            Err(EmailError::NotBare)
        } else {
            Err(EmailError::LocalSyntax)
        }
    }
}

/// A DNS host name (RFC 1123 §2.1): two or more labels of letters, digits
/// and inner hyphens; the last label not all digits (so `1.2.3.4` is not
/// taken for a name). An IP literal (`[127.0.0.1]`) is refused.
fn check_domain(domain: &str) -> Result<(), EmailError> {
    if domain.is_empty() || domain.starts_with('[') {
        return Err(EmailError::Domain);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err(EmailError::Domain);
    }
    for label in &labels {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ldh {
            return Err(if label.bytes().any(|b| b"<>()\",;:@ ".contains(&b)) {
                EmailError::NotBare
            } else {
                EmailError::Label
            });
        }
        if label.len() > MAX_LABEL_LEN || label.starts_with('-') || label.ends_with('-') {
            return Err(EmailError::Label);
        }
    }
    let top = labels.last().expect("two labels or more");
    if top.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmailError::Domain);
    }
    Ok(())
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Addresses are personal data, not secrets: Debug shows them like Display.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match Email::parse(raw) {
            Ok(email) => email.as_str().to_owned(),
            Err(err) => panic!("{raw:?} refused: {err}"),
        }
    }

    fn refused(raw: &str) -> EmailError {
        match Email::parse(raw) {
            Ok(email) => panic!("{raw:?} accepted as {email}"),
            Err(err) => err,
        }
    }

    #[test]
    fn plain_and_unusual_but_valid_addresses_are_accepted() {
        for raw in [
            "ada@example.com",
            "o'brien+tag@mail.example.co.uk",
            "first.last@sub-domain.example.org",
            "a!#$%&'*+-/=?^_`{|}~z@x1.io",
            "1@2.example",
            "x@xn--bcher-kva.example", // punycode is plain ASCII LDH
        ] {
            assert_eq!(ok(raw), raw);
        }
    }

    #[test]
    fn the_canonical_form_is_trimmed_and_lower_case() {
        assert_eq!(ok("  Victim@Ex.COM \t\n"), "victim@ex.com");
        assert_eq!(
            ok("O'Brien+Tag@Mail.Example.co.UK"),
            "o'brien+tag@mail.example.co.uk"
        );
        assert_eq!(
            Email::parse("Victim@Ex.com").unwrap(),
            Email::parse("victim@ex.com").unwrap()
        );
    }

    #[test]
    fn display_names_groups_and_comments_are_refused() {
        for raw in [
            "x <victim@ex.com>",
            "<victim@ex.com>",
            "\"Victim\" <victim@ex.com>",
            "victim@ex.com (work)",
            "(comment)victim@ex.com",
            "victim(c)@ex.com",
            "a@b.com, c@d.com",
            "group: victim@ex.com;",
        ] {
            assert_eq!(refused(raw), EmailError::NotBare, "{raw}");
        }
    }

    #[test]
    fn ip_literals_and_ip_domains_are_refused() {
        for raw in ["a@[127.0.0.1]", "a@[IPv6:::1]", "a@127.0.0.1", "a@[::1]"] {
            assert!(
                matches!(refused(raw), EmailError::Domain | EmailError::NotBare),
                "{raw}"
            );
        }
    }

    #[test]
    fn quoted_local_parts_are_refused() {
        for raw in ["\"a b\"@ex.com", "\"victim\"@ex.com", "\"a@b\"@ex.com"] {
            assert_eq!(refused(raw), EmailError::NotBare, "{raw}");
        }
    }

    #[test]
    fn dots_must_sit_between_atoms() {
        for raw in [".a@ex.com", "a.@ex.com", "a..b@ex.com"] {
            assert_eq!(refused(raw), EmailError::LocalSyntax, "{raw}");
        }
    }

    #[test]
    fn empty_labels_and_trailing_dots_are_refused() {
        for raw in [
            "a@ex.com.",
            "a@.ex.com",
            "a@ex..com",
            "a@localhost",
            "a@",
            "@ex.com",
            "a",
            "",
            "   ",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} accepted");
        }
        assert_eq!(refused("a@ex.com."), EmailError::Domain);
        assert_eq!(refused("@ex.com"), EmailError::LocalLength);
        assert_eq!(refused("   "), EmailError::Empty);
    }

    #[test]
    fn hyphens_only_inside_labels() {
        assert_eq!(ok("a@my-host.example.com"), "a@my-host.example.com");
        for raw in ["a@-ex.com", "a@ex-.com", "a@ex.-com", "a@ex.com-"] {
            assert_eq!(refused(raw), EmailError::Label, "{raw}");
        }
        assert_eq!(refused("a@ex_ample.com"), EmailError::Label);
        let long_label = format!("a@{}.com", "l".repeat(64));
        assert_eq!(refused(&long_label), EmailError::Label);
        assert!(Email::parse(&format!("a@{}.com", "l".repeat(63))).is_ok());
    }

    #[test]
    fn length_limits() {
        let local64 = "l".repeat(64);
        assert!(Email::parse(&format!("{local64}@ex.com")).is_ok());
        assert_eq!(
            refused(&format!("{}@ex.com", "l".repeat(65))),
            EmailError::LocalLength
        );
        // 254 in all is the most: labels of 63 make a long valid domain.
        let domain = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61 - 2)
        );
        let at_limit = format!("ab@{domain}");
        assert_eq!(at_limit.len(), 254);
        assert!(Email::parse(&at_limit).is_ok(), "{}", at_limit.len());
        assert_eq!(refused(&format!("abc@{domain}")), EmailError::TooLong);
        // Surrounding whitespace does not count.
        assert!(Email::parse(&format!("  {at_limit}  ")).is_ok());
    }

    #[test]
    fn non_ascii_and_homoglyphs_are_refused() {
        for raw in [
            "аda@example.com",    // Cyrillic 'а'
            "ada@exаmple.com",    // Cyrillic 'а' in the domain
            "\u{212A}im@ex.com",  // Kelvin sign: lower-cases to an ASCII 'k'
            "ada@bücher.example", // IDN: only its punycode form is taken
            "ada\u{200B}@ex.com", // zero-width space
            "ａda@example.com",   // full-width 'a'
        ] {
            assert_eq!(refused(raw), EmailError::NotAscii, "{raw}");
        }
    }

    #[test]
    fn every_accepted_address_is_a_lettre_address() {
        for raw in ["o'brien+tag@mail.example.co.uk", "a{b}c@ex.com", "~@ex.io"] {
            let email = Email::parse(raw).unwrap();
            assert_eq!(email.to_address().to_string(), email.as_str());
        }
    }
}
