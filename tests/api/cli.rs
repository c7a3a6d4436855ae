//! The built binary as a newcomer meets it: `--help`, `--version`, a stray
//! argument, `config check`, another working directory, an unreachable
//! MongoDB, output without colour codes. Each run starts from an empty
//! environment, so the test runner's variables do not leak in.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A directory with no `config/` in it, as a newcomer's home might be.
fn elsewhere(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `troupe args…` in `dir` with only `vars` set.
fn troupe(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_troupe"))
        .current_dir(dir)
        .env_clear()
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_names_the_commands_the_configuration_sources_and_the_exit_codes() {
    let started = Instant::now();
    let out = troupe(&elsewhere("help"), &["--help"], &[]);
    // (No database, no runtime: it answers at once; the bound allows for
    // a loaded machine.)
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for part in [
        "serve",
        "config",
        "TROUPE_CONFIG_DIR",
        "TROUPE__SECTION__KEY",
        "MONGODB_URI",
        "Exit codes:",
        "NO_COLOR",
    ] {
        assert!(help.contains(part), "{part:?} missing from --help:\n{help}");
    }
    assert!(!help.contains('\x1b'), "colour codes in redirected help");
    let out = troupe(&elsewhere("help"), &["config", "--help"], &[]);
    assert!(text(&out.stdout).contains("check"));
}

#[test]
fn version_names_the_crate_version_and_the_git_revision() {
    let out = troupe(&elsewhere("version"), &["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let version = text(&out.stdout);
    let prefix = format!("troupe {} (rev ", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&prefix), "{version}");
    let revision = version[prefix.len()..].trim_end().trim_end_matches(')');
    assert!(!revision.is_empty(), "{version}");
}

#[test]
fn a_stray_command_or_flag_is_one_line_on_stderr_and_exit_2() {
    for (args, named) in [
        (&["bogus"][..], "bogus"),
        (&["--port", "9999"], "--port"),
        (&["serve", "extra"], "extra"),
    ] {
        let out = troupe(&elsewhere("usage"), args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(stderr.contains("troupe --help"), "{stderr}");
        assert!(!stderr.contains('\x1b') && !stderr.contains("panicked"));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn config_check_passes_from_any_directory_with_one_line() {
    let out = troupe(
        &elsewhere("check-good"),
        &["config", "check"],
        &[("TROUPE_ENV", "test")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "configuration is valid (profile test)\n");
    assert!(out.stderr.is_empty());
}

#[test]
fn config_check_lists_every_bad_and_unknown_key_and_exits_1() {
    let out = troupe(
        &elsewhere("check-bad"),
        &["config", "check"],
        &[
            ("TROUPE_ENV", "test"),
            ("PORT", "70000"),
            ("TROUPE__AUTH__ACCESS_TTL", "15"),
            ("MONGODB_URI", "mongo://admin:hunter2@db"),
            ("TROUPE__QUEUE__EXECUTORS", "0"),
            ("TROUPE__QUEU__POLL_INTERVAL", "1s"),
            // Contacting no server: a MongoDB that is not there is no problem.
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    // (Values that did not parse come first, in no fixed order.)
    for parts in [
        &["PORT (`server.port`)", "65535", "fix: set PORT=3000"][..],
        &["TROUPE__AUTH__ACCESS_TTL (`auth.access_ttl`)", "15m"],
        &["TROUPE__QUEUE__EXECUTORS (`queue.executors`)", "at least 1"],
        &["MONGODB_URI (`mongodb.uri`)", "mongodb://127.0.0.1:27017"],
        &[
            "TROUPE__QUEU__POLL_INTERVAL",
            "TROUPE__QUEUE__POLL_INTERVAL",
        ],
    ] {
        let line = lines.iter().find(|line| line.contains(parts[0]));
        let line = line.unwrap_or_else(|| panic!("no line for {}: {stderr}", parts[0]));
        for part in parts {
            assert!(line.contains(part), "{part:?} missing from: {line}");
        }
    }
    assert!(!stderr.contains("hunter2"), "a credential echoed: {stderr}");
}

#[test]
fn serve_refuses_a_bad_setting_with_exit_2_naming_it() {
    let out = troupe(
        &elsewhere("serve-bad"),
        &[],
        &[("TROUPE__AUTH__ACCESS_TTL", "15")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TROUPE__AUTH__ACCESS_TTL=15m"), "{stderr}");
}

/// Started from a directory without `config/` (the built-in defaults), with
/// a misspelt key (a warning naming the nearest key, not a refusal) and no
/// MongoDB listening: the service runs, says so in one line naming
/// MONGODB_URI, repeats no topology dump while the poller ticks, prints no
/// colour codes into a pipe, and exits 0 on SIGTERM (an unreachable store is
/// not a start-up failure: readiness reports it).
#[test]
fn an_unreachable_mongodb_is_one_clear_line_and_no_flood() {
    let dir = elsewhere("unreachable");
    let mut child = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .current_dir(&dir)
        .env_clear()
        .envs([
            ("TROUPE_ENV", "test"),
            ("PORT", "0"),
            ("MONGODB_URI", "mongodb://127.0.0.1:1"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("TROUPE__MONGODB__TIMEOUT", "200ms"),
            ("TROUPE__SERVER__HOST", "127.0.0.1"),
            ("LOG_DIR", dir.join("logs").to_str().unwrap()),
            (
                "TROUPE__MAIL__OUTBOX_DIR",
                dir.join("outbox").to_str().unwrap(),
            ),
            // Warned about, not refused.
            ("TROUPE__QUEU__POLL_INTERVAL", "1s"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let (lines, seen) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // Wait for the first retry of the indexes ("still unreachable"): by then
    // the poller (test profile: every 250ms) has ticked several times.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut output = Vec::new();
    while !output
        .iter()
        .any(|l: &String| l.contains("still unreachable"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => output.push(line),
            Err(_) => panic!("no retry line in 30s:\n{}", output.join("\n")),
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    reader.join().unwrap();
    output.extend(seen.try_iter());
    let all = output.join("\n");
    assert_eq!(exit.code(), Some(0), "{all}");
    let first: Vec<&String> = output
        .iter()
        .filter(|l| l.contains("unreachable at start-up"))
        .collect();
    assert_eq!(first.len(), 1, "{all}");
    assert!(
        first[0].contains("MONGODB_URI (mongodb.uri)"),
        "{}",
        first[0]
    );
    assert!(first[0].contains("fix: "), "{}", first[0]);
    let unknown: Vec<&String> = output
        .iter()
        .filter(|l| l.contains("unknown setting ignored"))
        .collect();
    assert_eq!(unknown.len(), 1, "{all}");
    assert!(
        unknown[0].contains("TROUPE__QUEU__POLL_INTERVAL")
            && unknown[0].contains("did you mean TROUPE__QUEUE__POLL_INTERVAL?"),
        "{}",
        unknown[0]
    );
    for dump in ["Topology", "labels:", "server response:"] {
        assert!(!all.contains(dump), "{dump:?} in the output:\n{all}");
    }
    assert!(!all.contains('\x1b'), "colour codes in a pipe");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.is_empty(), "{stderr}");
}
