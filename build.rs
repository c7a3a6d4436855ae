//! Stamps the binary with its git revision (`TROUPE_GIT_REVISION`, shown by
//! `troupe --version`): `git rev-parse --short HEAD`, or "unknown" when git
//! or the repository is missing (a build from a source tarball).
//!
//! Reruns only when the checked-out commit can have changed (HEAD, the branch
//! it points to, packed refs), not on every build.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let revision = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TROUPE_GIT_REVISION={revision}");
    if revision == "unknown" {
        return;
    }
    // `--git-path` resolves worktrees (.git is then a file) and $GIT_DIR.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

/// `git args…`'s trimmed output, or None if git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_string())
}
