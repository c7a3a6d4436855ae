//! Bounded renderings of request parts the client chooses, for metric labels
//! and log lines.
//!
//! An HTTP method is any token and a path any length up to hyper's buffer
//! (≈ 400 KB), so neither may become a label (every distinct value would be a
//! new series, kept forever and printed at every scrape) nor be logged as is
//! (every event inside a request's span repeats its fields).

use std::fmt;

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

/// A path as logged: at most [`MAX_LOGGED_PATH`] bytes of it (cut on a
/// character boundary), and if cut, a mark with its full length.
pub struct LoggedPath<'a>(pub &'a str);

impl fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.0;
        if path.len() <= MAX_LOGGED_PATH {
            return f.write_str(path);
        }
        let mut cut = MAX_LOGGED_PATH;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        write!(f, "{}…[truncated, {} bytes]", &path[..cut], path.len())
    }
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
        assert_eq!(kept.len(), MAX_LOGGED_PATH - 1);
        assert!(kept.ends_with('é'));
    }
}
