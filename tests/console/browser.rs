//! A headless chromium for the console test: `chromedriver` started on a
//! free port as a child process in a process group of its own (so the
//! chromium it starts goes with it), a WebDriver session through
//! fantoccini, and small DOM helpers that wait for conditions.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use crate::helpers::{eventually, free_port};

/// What to install when the browser is missing.
const INSTALL: &str =
    "run `scripts/services tools` (it installs Debian's chromium and chromium-driver)";

/// The chromedriver process group, killed (and reaped) when dropped.
pub struct Chromedriver {
    child: Child,
    pub port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any chromium it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start chromedriver and wait until it accepts connections.
pub async fn chromedriver() -> Chromedriver {
    for tool in ["chromedriver", "chromium"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "`{tool}` was not found or did not run: {INSTALL}");
    }
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|err| panic!("could not start chromedriver ({err}): {INSTALL}"));
    let driver = Chromedriver { child, port };
    eventually(
        Duration::from_secs(10),
        "chromedriver to listen",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        },
    )
    .await;
    driver
}

/// A headless chromium session at 1280×800.
pub async fn session(driver: &Chromedriver) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            "--disable-gpu",
            "--no-first-run",
        ]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    // The page's console messages (script errors, CSP refusals) are kept
    // for `console_errors`.
    let capabilities = json!({
        "goog:chromeOptions": options,
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap_or_else(|err| panic!("no chromium session ({err}): {INSTALL}"))
}

/// Run `scenario` in a fresh chromium session; the session (and its
/// chromium) is closed and chromedriver stopped whatever happens, then the
/// scenario's panic, if any, is reported.
pub async fn drive<F, Fut>(scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    drive_allowing(&[401], scenario).await;
}

/// [`drive`], where answers of the statuses in `handled` are ones the page
/// shows (the browser logs each as a failed load all the same); any other
/// console error fails the scenario.
pub async fn drive_allowing<F, Fut>(handled: &[u16], scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    let driver = chromedriver().await;
    let client = session(&driver).await;
    let started = std::time::Instant::now();
    let outcome = std::panic::AssertUnwindSafe(async {
        scenario(client.clone()).await;
        // No script error and no CSP refusal on the way. The 401s of a
        // wrong token (and whatever else `handled` names) are answers the
        // page handles; the browser logs them as failed loads all the same.
        let handled: Vec<String> = handled.iter().map(|s| format!("status of {s}")).collect();
        let errors: Vec<String> = console_errors(&client, driver.port)
            .await
            .into_iter()
            .filter(|message| !handled.iter().any(|h| message.contains(h)))
            .collect();
        assert!(
            errors.is_empty(),
            "the page's console has errors: {errors:#?}"
        );
    })
    .catch_unwind()
    .await;
    let _ = client.close().await;
    drop(driver);
    eprintln!("browser scenario took {:?}", started.elapsed());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Sign in through the form with `token` (typed into the field its label names).
pub async fn sign_in(client: &Client, token: &str) {
    let label = client
        .find(fantoccini::Locator::XPath(
            "//label[normalize-space()='Ops token']",
        ))
        .await
        .expect("a label reading \"Ops token\"");
    let id = label
        .attr("for")
        .await
        .unwrap()
        .expect("the label names its field");
    let field = client.find(fantoccini::Locator::Id(&id)).await.unwrap();
    field.send_keys(token).await.unwrap();
    let submit = fantoccini::Locator::Css("#sign-in-form button[type=submit]");
    client.find(submit).await.unwrap().click().await.unwrap();
}

/// The page's console messages of level SEVERE since the last call (script
/// errors, CSP refusals, failed loads), through chromedriver's log endpoint.
pub async fn console_errors(client: &Client, driver_port: u16) -> Vec<String> {
    let session = client.session_id().await.unwrap().expect("a session");
    let url = format!("http://127.0.0.1:{driver_port}/session/{session}/se/log");
    let answer: Value = reqwest::Client::new()
        .post(url)
        .json(&json!({ "type": "browser" }))
        .send()
        .await
        .expect("chromedriver's log endpoint")
        .json()
        .await
        .expect("log entries");
    answer["value"]
        .as_array()
        .expect("log entries")
        .iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Size the window so that the page's viewport is `width`×`height` (the
/// window's frame, if any, is added).
pub async fn viewport(client: &Client, width: u32, height: u32) {
    client
        .set_window_size(width, height)
        .await
        .expect("window size");
    let inner = js(client, "return [window.innerWidth, window.innerHeight]").await;
    let frame = |i: usize, asked: u32| asked.saturating_sub(inner[i].as_u64().unwrap_or(0) as u32);
    let (w, h) = (width + frame(0, width), height + frame(1, height));
    if (w, h) != (width, height) {
        client.set_window_size(w, h).await.expect("window size");
    }
}

/// Evaluate `script` (a function body that `return`s) in the page.
pub async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|err| panic!("script failed ({err}): {script}"))
}

/// Poll `script` until it returns something truthy (not null, false, 0 or
/// ""), then return that; panic after `deadline`, naming `what`.
pub async fn until(client: &Client, deadline: Duration, what: &str, script: &str) -> Value {
    eventually(deadline, what, || async {
        let value = js(client, script).await;
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        truthy.then_some(value)
    })
    .await
}

/// Save a PNG screenshot of the viewport, scrolled to the top, under target/console-screenshots/.
pub async fn screenshot(client: &Client, name: &str) -> std::path::PathBuf {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let path = dir.join(name);
    js(client, "window.scrollTo(0, 0); return true").await;
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(&path, png).expect("write screenshot");
    path
}

/// How far the page scrolls sideways (0: it does not) and, if it does, the
/// texts that stick out furthest (and the box that clips each, if any): an
/// unbreakable string widens the page, not its box.
pub async fn horizontal_overflow(client: &Client) -> (Value, Value) {
    let overflow = js(
        client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    let wide = js(
        client,
        "const w = document.documentElement.clientWidth;\
         const clip = (e) => { for (let p = e; p && p !== document.body; p = p.parentElement)\
           if (getComputedStyle(p).overflowX !== 'visible') return `${p.tagName}#${p.id}.${p.className}`; return 'none'; };\
         const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); const out = [];\
         for (let n = walk.nextNode(); n; n = walk.nextNode()) { const r = document.createRange(); r.selectNodeContents(n);\
           const right = r.getBoundingClientRect().right; if (right > w + 1) out.push([right, n]); }\
         return out.sort((a, b) => b[0] - a[0]).slice(0, 4).map(([right, n]) =>\
           `${Math.round(right)} ${n.parentElement.tagName}#${n.parentElement.id}.${n.parentElement.className} in ${clip(n.parentElement)}: ${n.textContent.slice(0, 60)}`)",
    )
    .await;
    (overflow, wide)
}
