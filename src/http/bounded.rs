//! Bounded renderings of request parts the client chooses, for metric labels
//! and log lines.
//!
//! An HTTP method is any token and a path any length up to hyper's buffer
//! (≈ 400 KB), so neither may become a label (every distinct value would be a
//! new series, kept forever and printed at every scrape) nor be logged as is
//! (every event inside a request's span repeats its fields).
//!
//! A logged value is also escaped: everything outside printable ASCII
//! (U+2028, U+0085, the C1 controls, any other non-ASCII character, and the
//! backslash that starts an escape) is written as `\u{…}` or `\\`, so a
//! client cannot end a log line, start a forged one, or hide text from a
//! reader of the log.

use std::fmt::{self, Write as _};

use axum::http::Method;

/// The label of a standard method; anything else is `other`, so the label
/// set is closed (ten values).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Longest part of a path written to a log line, in bytes.
pub const MAX_LOGGED_PATH: usize = 256;

/// A value a client chose, as logged: at most [`MAX_LOGGED_PATH`] bytes of
/// it (cut on a character boundary; if cut, a mark with its full length),
/// escaped (see the module doc): at most six bytes written per byte kept.
pub struct LoggedPath<'a>(pub &'a str);

impl fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.0;
        let mut cut = path.len().min(MAX_LOGGED_PATH);
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        escaped(f, &path[..cut])?;
        if cut < path.len() {
            write!(f, "…[truncated, {} bytes]", path.len())?;
        }
        Ok(())
    }
}

/// `text` with printable ASCII as it is, `\` doubled, anything else `\u{hex}`.
fn escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            ' '..='~' => f.write_char(c)?,
            _ => write!(f, "\\u{{{:x}}}", u32::from(c))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_the_rest_is_other() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
        ] {
            assert_eq!(
                method_label(&Method::from_bytes(name.as_bytes()).unwrap()),
                name
            );
        }
        for name in ["get", "PROPFIND", "X", &"A".repeat(60_000)] {
            assert_eq!(
                method_label(&Method::from_bytes(name.as_bytes()).unwrap()),
                "other"
            );
        }
    }

    #[test]
    fn short_paths_are_logged_whole() {
        let path = "/".repeat(MAX_LOGGED_PATH);
        assert_eq!(LoggedPath(&path).to_string(), path);
    }

    #[test]
    fn long_paths_are_cut_and_marked_with_their_length() {
        let path = format!("/{}", "a".repeat(60_000));
        let logged = LoggedPath(&path).to_string();
        assert!(logged.starts_with(&path[..MAX_LOGGED_PATH]));
        assert!(logged.ends_with("…[truncated, 60001 bytes]"), "{logged}");
        assert!(logged.len() < MAX_LOGGED_PATH + 40);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // Each "é" is two bytes after a one-byte "/": byte 256 is inside one.
        let path = format!("/{}", "é".repeat(200));
        let logged = LoggedPath(&path).to_string();
        let kept = logged.split('…').next().unwrap();
        assert_eq!(kept, format!("/{}", "\\u{e9}".repeat(127)));
    }

    #[test]
    fn everything_outside_printable_ascii_is_escaped() {
        for (raw, logged) in [
            ("/a\u{2028}b", "/a\\u{2028}b"),
            ("/a\u{2029}b", "/a\\u{2029}b"),
            ("/a\u{85}b", "/a\\u{85}b"),
            ("/\u{9b}31m", "/\\u{9b}31m"),
            (
                "/\u{1b}[2J\r\n\t\u{7f}\0",
                "/\\u{1b}[2J\\u{d}\\u{a}\\u{9}\\u{7f}\\u{0}",
            ),
            ("/\u{202e}txt.exe", "/\\u{202e}txt.exe"),
            // A literal escape sequence stays distinguishable from a real one.
            ("/\\u{a}", "/\\\\u{a}"),
            ("/ok?x=1&y=~", "/ok?x=1&y=~"),
        ] {
            assert_eq!(LoggedPath(raw).to_string(), logged, "{raw:?}");
        }
    }

    #[test]
    fn a_logged_value_is_printable_ascii_whatever_it_was() {
        let every_char: String = (0..=0x10ffff).filter_map(char::from_u32).collect();
        for chunk in every_char.as_bytes().chunks(200) {
            let text = String::from_utf8_lossy(chunk);
            let logged = LoggedPath(&text).to_string();
            let body = logged.split('…').next().unwrap();
            assert!(
                body.bytes().all(|b| (b' '..=b'~').contains(&b)),
                "{logged:?}"
            );
        }
    }
}
