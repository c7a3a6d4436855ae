//! The NestJS service's own client scripts (`scripts/test-auth.ts` and
//! `scripts/heavy-load.ts` in its sources), run unchanged with its own
//! toolchain (ts-node from the `node_modules` [`built`] installs) against the
//! Troupe binary.
//!
//! They hard-code `http://localhost:3000`, so Troupe runs on port 3000, one
//! script at a time ([`PORT_3000`]); a port 3000 held by anything outside this
//! test binary fails the test with a message naming it. They exit 0 whatever
//! happens, so each is judged by what it prints, then Troupe's stores by what
//! it did. Each run is bounded ([`SCRIPT_TIMEOUT`]): past it the script's whole
//! process group is killed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId};
use mongodb::Database;
use troupe::config::Settings;

use crate::helpers::{
    all_jobs_completed, binary_command, eventually, find_documents, observer, remove_stores,
    test_settings, Process,
};
use crate::nestjs::built;

/// The port both scripts call.
const PORT: u16 = 3000;
/// One script run, node's start-up and ts-node's transpiling included.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Whoever holds it owns port 3000 in this test binary. A tokio mutex: it is
/// held across the awaits of a whole run (each test has its own runtime; the
/// mutex needs none).
static PORT_3000: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Troupe on port 3000 with its own database and Redis prefix (the test
/// profile), ready; `settings` are the stores it uses.
struct Troupe {
    settings: Settings,
    db: Database,
    _process: Process,
    _port: tokio::sync::MutexGuard<'static, ()>,
}

async fn troupe_on_port_3000() -> Troupe {
    let port = PORT_3000.lock().await;
    // Free now, so the binary can bind it (released at once: a race with an
    // outside process in between shows as the binary never getting ready).
    if let Err(err) = std::net::TcpListener::bind(("127.0.0.1", PORT)) {
        panic!(
            "port {PORT} is taken by a process outside this test ({err}); the NestJS \
             client scripts hard-code http://localhost:{PORT}: stop it to run these tests"
        );
    }
    let settings = test_settings();
    let mut command = binary_command(&settings, PORT, "3s");
    // heavy-load.ts signs up 50 users from one address (the default allows
    // 20 an hour); the test profile's limit is not relied on.
    command.env("TROUPE__LIMITS__SIGNUPS__PER_ADDRESS", "60");
    // The scripts sign up with "password123", which the default password
    // rules refuse as common (docs/switching-from-nestjs.md).
    command.env("TROUPE__AUTH__REJECT_COMMON_PASSWORDS", "false");
    let process = Process {
        child: command.spawn().expect("start the troupe binary"),
    };
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(30),
        "troupe to be ready on port 3000",
        || {
            let client = client.clone();
            async move {
                let url = format!("http://127.0.0.1:{PORT}/health/ready");
                let response = client.get(url).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        },
    )
    .await;
    Troupe {
        db: observer(&settings).await,
        settings,
        _process: process,
        _port: port,
    }
}

/// What a script printed.
struct Printed {
    stdout: String,
    stderr: String,
}

/// Run `script` (a path in the NestJS app) with its ts-node, bounded.
async fn run_script(app: &Path, script: &str) -> Printed {
    let child = tokio::process::Command::new(app.join("node_modules/.bin/ts-node"))
        // Transpile only: type-checking is the NestJS project's business,
        // and would double the run's time.
        .args(["--transpile-only", script])
        .current_dir(app)
        // Troupe listens on 127.0.0.1 (the test profile): `localhost` must
        // resolve to it first whatever node's default order (IPv6 first on
        // Node 18 where ::1 is configured).
        .env("NODE_OPTIONS", "--dns-result-order=ipv4first")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {script} with ts-node: {e} (node must be installed)"));
    let group = child.id().expect("a running script has a pid");
    match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => {
            let output = output.expect("the script's output");
            Printed {
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            // The leader was killed with the dropped future; whatever it
            // started goes with its group (pgid = its pid: process_group(0)).
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            panic!("{script} still running after {SCRIPT_TIMEOUT:?}: killed");
        }
    }
}

/// The value printed after `label` on a line of its own.
fn printed_value<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
        .trim()
}

/// Every welcome e-mail in `settings`' outbox.
fn outbox(settings: &Settings) -> Vec<String> {
    std::fs::read_dir(&settings.mail.outbox_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect()
}

/// test-auth.ts's steps, each a line it prints on success, in order.
const AUTH_STEPS: [&str; 6] = [
    "✅ Signup successful",
    "✅ Login successful",
    "✅ Get Profile successful",
    "✅ Refresh Token successful",
    "✅ Logout successful",
    "✅ Refresh Token correctly failed with 403/401",
];

#[tokio::test]
async fn the_nestjs_test_auth_script_passes_unchanged_against_troupe() {
    let app = tokio::task::spawn_blocking(built).await.unwrap();
    let troupe = troupe_on_port_3000().await;
    let printed = run_script(&app, "scripts/test-auth.ts").await;
    let all = format!("{}\n{}", printed.stdout, printed.stderr);
    assert!(!all.contains('❌'), "a step failed:\n{all}");
    let mut lines = printed.stdout.lines().map(str::trim);
    for step in ["--- STARTING AUTH TESTS ---"]
        .into_iter()
        .chain(AUTH_STEPS)
        .chain(["--- TESTS COMPLETED ---"])
    {
        assert!(
            lines.any(|line| line == step),
            "{step:?} missing or out of order:\n{all}"
        );
    }
    // What it did, in Troupe: its user, under the id its token names and
    // the e-mail its profile showed; the welcome and the login recorded.
    let id = printed_value(&printed.stdout, "User ID:");
    let email = printed_value(&printed.stdout, "Profile Email:");
    let users = find_documents(&troupe.db, "users", doc! {}).await;
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].get_object_id("_id").unwrap().to_hex(), id);
    assert_eq!(users[0].get_str("email").unwrap(), email);
    assert!(email.starts_with("test") && email.ends_with("@example.com"));
    assert_eq!(users[0].get_str("name").unwrap(), "Test User");
    all_jobs_completed(&troupe.db, Duration::from_secs(60)).await;
    let welcome = find_documents(&troupe.db, "jobs", doc! {"type": "user.created"}).await;
    assert_eq!(welcome.len(), 1, "{welcome:?}");
    assert!(outbox(&troupe.settings).iter().any(|m| m.contains(email)));
    remove_stores(&troupe.settings).await;
}

/// heavy-load.ts's sign-ups, fired at once.
const LOAD: usize = 50;

#[tokio::test]
async fn the_nestjs_heavy_load_script_passes_unchanged_against_troupe() {
    let app = tokio::task::spawn_blocking(built).await.unwrap();
    let troupe = troupe_on_port_3000().await;
    let printed = run_script(&app, "scripts/heavy-load.ts").await;
    let all = format!("{}\n{}", printed.stdout, printed.stderr);
    assert!(!all.contains('❌'), "a request failed:\n{all}");
    assert!(printed.stderr.trim().is_empty(), "errors:\n{all}");
    let lines: Vec<&str> = printed.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines.first().copied(),
        Some("--- STARTING HEAVY LOAD TEST (50 requests) ---"),
        "{all}"
    );
    for i in 0..LOAD {
        let sent = format!("✅ Request {i} sent");
        let count = lines.iter().filter(|line| **line == sent).count();
        assert_eq!(count, 1, "{sent:?} printed {count} times:\n{all}");
    }
    assert!(lines.contains(&"--- ALL REQUESTS SENT ---"), "{all}");
    // What it did, in Troupe: its 50 users (`loadtest<ms>_<i>@example.com`,
    // "Load Test User <i>"), each welcomed by a completed job and an e-mail.
    let users = find_documents(&troupe.db, "users", doc! {}).await;
    let mut numbers = BTreeSet::new();
    for user in &users {
        let email = user.get_str("email").unwrap();
        let i: usize = email
            .strip_prefix("loadtest")
            .and_then(|rest| rest.strip_suffix("@example.com"))
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(_, i)| i.parse().ok())
            .unwrap_or_else(|| panic!("a user heavy-load.ts did not sign up: {email}"));
        assert_eq!(user.get_str("name").unwrap(), format!("Load Test User {i}"));
        numbers.insert(i);
    }
    assert_eq!(numbers, (0..LOAD).collect(), "{users:?}");
    all_jobs_completed(&troupe.db, Duration::from_secs(90)).await;
    let welcomed: BTreeSet<ObjectId> =
        find_documents(&troupe.db, "jobs", doc! {"type": "user.created"})
            .await
            .iter()
            .map(|job| {
                job.get_document("payload")
                    .unwrap()
                    .get_object_id("userId")
                    .unwrap()
            })
            .collect();
    let ids: BTreeSet<ObjectId> = users
        .iter()
        .map(|user| user.get_object_id("_id").unwrap())
        .collect();
    assert_eq!(welcomed, ids, "one welcome job per user, all completed");
    let mails = outbox(&troupe.settings);
    for user in &users {
        let email = user.get_str("email").unwrap();
        assert!(
            mails.iter().any(|m| m.contains(email)),
            "{email}'s welcome e-mail"
        );
    }
    remove_stores(&troupe.settings).await;
}
