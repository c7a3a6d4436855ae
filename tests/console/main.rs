//! The ops console in a real browser: Debian's chromium, headless, driven
//! through chromedriver (tests/console/browser.rs) against an app started
//! in-process on port 0 against the real services. Needs `chromium` and
//! `chromedriver` (`scripts/services tools` installs them); fails, with that
//! advice, without them. Screenshots go to target/console-screenshots/.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod account;
mod browser;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, Locator};
use mongodb::bson::{doc, oid::ObjectId, Document};
use secrecy::ExposeSecret;
use serde_json::Value;
use troupe_actors::queue::handlers::JobHandlers;

use browser::{js, screenshot, until, viewport};
use helpers::{spawn_app_with_jobs, unique_email, TestApp};

const WAIT: Duration = Duration::from_secs(10);

/// A job type that fails while `broken` is set (max_attempts is 1, so its
/// first run leaves it `failed`), and completes once the test mends it.
fn flaky_handlers(broken: Arc<AtomicBool>) -> JobHandlers {
    JobHandlers::new().with("console.flaky", move |_job| {
        let broken = broken.load(Ordering::SeqCst);
        async move {
            if broken {
                Err("broken on purpose".into())
            } else {
                Ok(Document::new())
            }
        }
    })
}

/// Every actor name of a tree, depth-first.
fn names(node: &Value, out: &mut Vec<String>) {
    out.push(node["name"].as_str().unwrap().to_owned());
    for child in node["children"].as_array().unwrap() {
        names(child, out);
    }
}

/// One browser at a time: the restart check has a 2 s deadline, and two
/// chromiums on a small CI machine would eat into it.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_console_shows_the_system_live_and_acts_on_it() {
    let _browser = ONE_BROWSER.lock().await;
    let broken = Arc::new(AtomicBool::new(true));
    let app =
        spawn_app_with_jobs(|s| s.queue.max_attempts = 1, flaky_handlers(broken.clone())).await;
    let job = app.jobs().enqueue("console.flaky", doc! {}).await.unwrap();
    app.nudge();
    app.wait_for_jobs(doc! {"_id": job}, "failed", 1, WAIT)
        .await;

    let (app, broken) = (&app, &broken);
    browser::drive(|client| async move { walk_through(app, &client, broken, job).await }).await;
}

async fn walk_through(app: &TestApp, client: &Client, broken: &AtomicBool, job: ObjectId) {
    client.goto(&app.url("/ops/console")).await.unwrap();
    viewport(client, 1280, 800).await;
    // The stylesheet applied (the CSP let it in).
    let background = js(
        client,
        "return getComputedStyle(document.body).backgroundColor",
    )
    .await;
    assert_eq!(background, "rgb(246, 247, 249)");
    sign_in(app, client).await;
    // What is hidden takes no room, whatever its display rule (the sign-in
    // form is a grid, so is the dialog's delay field).
    let shown = js(client, "return [...document.querySelectorAll('[hidden]')].filter(e => getComputedStyle(e).display !== 'none').map(e => e.id || e.className)").await;
    assert_eq!(shown, serde_json::json!([]), "hidden elements still shown");
    sees_every_actor(app, client).await;
    restart_shows_within_two_seconds(app, client).await;
    sign_up_shows_as_an_event(app, client).await;
    job_history_and_retry(app, client, broken, job).await;
    retry_all_and_discard_all_after_confirming(app, client, broken).await;
    pause_the_queue_and_cancel_a_waiting_job(app, client).await;
    fleet_shows_this_instance_and_its_tree(app, client).await;
    screenshot(client, "console-1280x800.png").await;
    fits_a_phone(client).await;
    sign_out_forgets_the_token(app, client).await;
    no_log_line_holds_the_token(app);
}

/// The token went only into Authorization headers: no log file has it.
fn no_log_line_holds_the_token(app: &TestApp) {
    let token = app.settings.ops.token.expose_secret();
    for entry in std::fs::read_dir(helpers::log_dir()).expect("the log directory") {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(
            !text.contains(token),
            "{} holds the ops token",
            path.display()
        );
    }
}

/// The field labelled "Ops token": a wrong token gets a clear message, the
/// right one opens the console.
async fn sign_in(app: &TestApp, client: &Client) {
    browser::sign_in(client, "not-the-ops-token").await;
    let message = until(
        client,
        WAIT,
        "the refusal message",
        "return document.getElementById('sign-in-error').textContent",
    )
    .await;
    assert!(message.as_str().unwrap().contains("refused"), "{message}");

    browser::sign_in(client, app.settings.ops.token.expose_secret()).await;
    until(
        client,
        WAIT,
        "the console to open",
        "return !document.getElementById('console').hidden",
    )
    .await;
    // Never in the URL.
    let url = client.current_url().await.unwrap();
    assert!(!url
        .as_str()
        .contains(app.settings.ops.token.expose_secret()));
}

/// The table lists exactly the actors GET /ops/actors has.
async fn sees_every_actor(app: &TestApp, client: &Client) {
    let tree: Value = app.get_ops("/ops/actors").await.json().await.unwrap();
    let mut expected = Vec::new();
    names(&tree, &mut expected);
    let script = format!(
        "const shown = [...document.querySelectorAll('#actors-body tr')].map(r => r.dataset.actor);
         return shown.length === {} && shown;",
        expected.len()
    );
    let shown = until(client, WAIT, "every actor's row", &script).await;
    let mut shown: Vec<String> = serde_json::from_value(shown).unwrap();
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected);
    assert!(expected.contains(&"cache".to_owned()) && expected.len() > 4);
    // Beside each actor: its mailbox depth, wait and dead letters.
    let cells = "const row = document.querySelector('tr[data-actor=\"cache\"]');
         return Boolean(row && row.querySelector('td.backlog')?.textContent === '0'
           && row.querySelector('td.wait') && row.querySelector('td.dead')?.textContent === '0');";
    until(
        client,
        WAIT,
        "the cache's mailbox and dead-letter cells",
        cells,
    )
    .await;
}

/// Panic `cache` through its button and the confirmation; once a lookup
/// delivers the fault, the row's restart count rises within 2 s, marked.
async fn restart_shows_within_two_seconds(app: &TestApp, client: &Client) {
    let restarts =
        "return document.querySelector('tr[data-actor=\"cache\"] td.restarts')?.textContent";
    let before: u64 = until(client, WAIT, "cache's restarts", restarts)
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Found and clicked in one script: the table is redrawn every second, so
    // an element found in one WebDriver call can be stale by the next.
    let clicked = js(
        client,
        "const b = document.querySelector(\"button[data-actor='cache'][data-fault='panic']\"); b?.click(); return Boolean(b)",
    )
    .await;
    assert_eq!(clicked, true, "cache's panic button");
    until(
        client,
        WAIT,
        "the confirmation dialog",
        "return document.getElementById('confirm-dialog').open",
    )
    .await;
    // Focus is in the dialog, on the safe choice.
    assert_eq!(
        js(client, "return document.activeElement.id").await,
        "confirm-cancel"
    );
    client
        .find(Locator::Id("confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        WAIT,
        "the fault to be armed",
        "return document.getElementById('connection').textContent.includes('panic armed on cache')",
    )
    .await;
    // Focus went back to the button that opened the dialog.
    assert_eq!(
        js(
            client,
            "return document.activeElement.dataset.fault || null"
        )
        .await,
        "panic"
    );

    // A lookup of an unknown user goes through the cache actor and meets the panic.
    let _ = app.get(&format!("/users/{}", ObjectId::new())).await;
    let risen = format!(
        "const row = document.querySelector('tr[data-actor=\"cache\"]');
         return row && Number(row.querySelector('td.restarts').textContent) > {before}
           && row.querySelector('.badge')?.textContent;"
    );
    let badge = until(
        client,
        Duration::from_secs(2),
        "cache's restart count to rise",
        &risen,
    )
    .await;
    assert_eq!(badge, "restarted");
}

/// A sign-up over the API appears in the live event list.
async fn sign_up_shows_as_an_event(app: &TestApp, client: &Client) {
    until(
        client,
        WAIT,
        "the event stream",
        "return document.getElementById('events-state').textContent.startsWith('live')",
    )
    .await;
    let email = unique_email();
    let tokens = app.signup(&email).await;
    let id = app.user_id(&tokens.access_token).await;
    let script = format!(
        "return [...document.querySelectorAll('#event-list li[data-kind=\"UserCreated\"]')]
           .some(li => li.textContent.includes('{id}'))"
    );
    until(client, WAIT, "UserCreated in the event list", &script).await;

    // The kind filter reconnects with ?kinds=: only that kind from then on.
    client
        .find(Locator::Css("#event-kind option[value='UserCreated']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        WAIT,
        "the filtered stream",
        "return document.getElementById('events-state').textContent === 'live: UserCreated'",
    )
    .await;
    client
        .find(Locator::Id("events-clear"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // A FaultInjected event (a 1 ms delay, harmless), then a sign-up: the
    // stream is ordered, so had the filter let FaultInjected through, it
    // would be listed by the time UserCreated is.
    let fault = serde_json::json!({"kind": "delay", "delayMs": 1});
    let armed = app
        .client
        .post(app.url("/ops/actors/event-counter/fault"))
        .bearer_auth(app.settings.ops.token.expose_secret())
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), reqwest::StatusCode::ACCEPTED);
    app.signup(&unique_email()).await;
    until(
        client,
        WAIT,
        "the second UserCreated",
        "return document.querySelector('#event-list li[data-kind=\"UserCreated\"]') !== null",
    )
    .await;
    let kinds = js(
        client,
        "return [...document.querySelectorAll('#event-list li')].map(li => li.dataset.kind)",
    )
    .await;
    assert_eq!(kinds, serde_json::json!(["UserCreated"]));
}

/// The failed job: its attempt history, then Retry; it leaves the failed
/// list and, its handler mended, completes.
async fn job_history_and_retry(app: &TestApp, client: &Client, broken: &AtomicBool, job: ObjectId) {
    let item = format!("#job-list li[data-job='{job}']");
    until(
        client,
        WAIT,
        "the failed job listed",
        &format!("return document.querySelector(\"{item}\") !== null"),
    )
    .await;
    client
        .find(Locator::Css(&format!("{item} button.job-open")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let history = until(
        client,
        WAIT,
        "the attempt history",
        "return document.querySelector('#job-detail table.history tbody')?.textContent",
    )
    .await;
    assert!(history.as_str().unwrap().contains("failed"), "{history}");
    assert!(
        history.as_str().unwrap().contains("broken on purpose"),
        "{history}"
    );
    // The job's facts beside its history: its due time, priority, payload.
    let facts = js(client, "return [...document.querySelectorAll('#job-detail .job-facts dt')].map(d => d.textContent)").await;
    for term in ["status", "priority", "due", "payload"] {
        assert!(
            facts.as_array().unwrap().iter().any(|t| t == term),
            "{term} in {facts}"
        );
    }

    broken.store(false, Ordering::SeqCst);
    client
        .find(Locator::Css(&format!("{item} button.retry")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        WAIT,
        "the job to leave the failed list",
        &format!("return document.querySelector(\"{item}\") === null"),
    )
    .await;
    app.wait_for_jobs(doc! {"_id": job}, "completed", 1, WAIT)
        .await;
}

/// Click `#id`.
async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Fail `n` more `console.flaky` jobs (the ones failed so far included):
/// their ids.
async fn fail_jobs(app: &TestApp, broken: &AtomicBool, n: usize) -> Vec<ObjectId> {
    broken.store(true, Ordering::SeqCst);
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(app.jobs().enqueue("console.flaky", doc! {}).await.unwrap());
    }
    app.nudge();
    app.wait_for_jobs(doc! {"_id": {"$in": &ids}}, "failed", n as u64, WAIT)
        .await;
    ids
}

/// "Retry all" and "Discard all" (shown on the failed list) each ask first,
/// naming how many failed jobs they take; Cancel leaves them be; confirmed,
/// every failed job is retried, or deleted.
async fn retry_all_and_discard_all_after_confirming(
    app: &TestApp,
    client: &Client,
    broken: &AtomicBool,
) {
    let failed = fail_jobs(app, broken, 3).await;
    click(client, "retry-all").await;
    let title = until(client, WAIT, "the retry dialog", "return document.querySelector('#bulk-dialog[open]') && document.getElementById('bulk-title').textContent").await;
    assert_eq!(title, "Retry 3 failed jobs?");
    click(client, "bulk-cancel").await;
    until(
        client,
        WAIT,
        "the dialog closed",
        "return !document.getElementById('bulk-dialog').open",
    )
    .await;
    app.wait_for_jobs(doc! {"_id": {"$in": &failed}}, "failed", 3, WAIT)
        .await;

    broken.store(false, Ordering::SeqCst);
    click(client, "retry-all").await;
    until(
        client,
        WAIT,
        "the retry dialog",
        "return document.getElementById('bulk-dialog').open",
    )
    .await;
    click(client, "bulk-ok").await;
    app.wait_for_jobs(doc! {"_id": {"$in": &failed}}, "completed", 3, WAIT)
        .await;

    let failed = fail_jobs(app, broken, 2).await;
    click(client, "discard-all").await;
    let title = until(client, WAIT, "the discard dialog", "return document.querySelector('#bulk-dialog[open]') && document.getElementById('bulk-title').textContent").await;
    assert_eq!(title, "Discard 2 failed jobs?");
    click(client, "bulk-ok").await;
    helpers::eventually(WAIT, "the discarded jobs gone", || async {
        let left = helpers::find_documents(&app.db, "jobs", doc! {"_id": {"$in": &failed}}).await;
        left.is_empty().then_some(())
    })
    .await;
    // The list is redrawn after the action: no failed job is left in it.
    until(
        client,
        WAIT,
        "the failed list empty",
        "return !document.getElementById('bulk-dialog').open && document.querySelector('#job-list li.empty') !== null",
    )
    .await;
    broken.store(false, Ordering::SeqCst);
}

/// "Pause queue" holds every job on every instance (the API says so); a job
/// enqueued meanwhile waits, its Cancel button ends it `cancelled` without a
/// run; "Resume queue" lets the queue go on.
async fn pause_the_queue_and_cancel_a_waiting_job(app: &TestApp, client: &Client) {
    let toggle = "document.querySelector('#queue-controls button.queue-toggle')";
    let click_toggle = format!("{toggle}.click(); return true");
    until(
        client,
        WAIT,
        "the pause control",
        &format!("return {toggle}?.textContent === 'Pause queue'"),
    )
    .await;
    js(client, &click_toggle).await;
    until(
        client,
        WAIT,
        "the queue shown paused",
        &format!("return {toggle}?.textContent === 'Resume queue'"),
    )
    .await;
    let pauses: Value = app.get_ops("/jobs/pauses").await.json().await.unwrap();
    assert_eq!(pauses["queue"], true, "{pauses}");

    let job = app.jobs().enqueue("console.flaky", doc! {}).await.unwrap();
    app.nudge();
    js(
        client,
        "const s = document.getElementById('job-status'); s.value = 'pending'; \
         s.dispatchEvent(new Event('change')); return true",
    )
    .await;
    let item = format!("#job-list li[data-job='{job}']");
    until(
        client,
        WAIT,
        "the waiting job listed with its Cancel button",
        &format!("return document.querySelector(\"{item} button.cancel\") !== null"),
    )
    .await;
    js(
        client,
        &format!("document.querySelector(\"{item} button.cancel\").click(); return true"),
    )
    .await;
    until(
        client,
        WAIT,
        "the cancelled job to leave the pending list",
        &format!("return document.querySelector(\"{item}\") === null"),
    )
    .await;
    let cancelled: Value = app
        .get_ops(&format!("/jobs/{job}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    // Every attempt record is the cancel's own marker: no executor ran it.
    let history = cancelled["history"].as_array().unwrap();
    assert!(
        history.iter().all(|a| a["outcome"] == "cancelled"),
        "a job cancelled while the queue was paused never ran: {cancelled}"
    );

    js(client, &click_toggle).await;
    until(
        client,
        WAIT,
        "the queue shown running",
        &format!("return {toggle}?.textContent === 'Pause queue'"),
    )
    .await;
    let pauses: Value = app.get_ops("/jobs/pauses").await.json().await.unwrap();
    assert_eq!(pauses["queue"], false, "{pauses}");
    js(
        client,
        "const s = document.getElementById('job-status'); s.value = 'failed'; \
         s.dispatchEvent(new Event('change')); return true",
    )
    .await;
}

/// The fleet panel lists this instance; choosing it shows its tree.
async fn fleet_shows_this_instance_and_its_tree(app: &TestApp, client: &Client) {
    let me = app.state.actors.fleet.instance().to_owned();
    let item = format!("#instance-list li[data-instance='{me}'] button");
    until(
        client,
        WAIT,
        "this instance in the fleet",
        &format!("return document.querySelector(\"{item}\") !== null"),
    )
    .await;
    // Found and clicked in one script: the list is redrawn every 5 s, so an
    // element found in one WebDriver call can be stale by the next.
    js(
        client,
        &format!("document.querySelector(\"{item}\").click(); return true"),
    )
    .await;
    let tree: Value = app.get_ops("/ops/actors").await.json().await.unwrap();
    let mut expected = Vec::new();
    names(&tree, &mut expected);
    let script = format!(
        "return document.querySelectorAll('#instance-tree tbody tr').length === {}",
        expected.len()
    );
    until(client, WAIT, "this instance's tree", &script).await;
}

/// At 390 px the page does not scroll sideways.
async fn fits_a_phone(client: &Client) {
    client.set_window_size(390, 844).await.unwrap();
    let width = until(
        client,
        WAIT,
        "the narrow viewport",
        "return window.innerWidth <= 400 && window.innerWidth",
    )
    .await;
    let (overflow, wide) = browser::horizontal_overflow(client).await;
    assert_eq!(overflow, 0, "horizontal overflow at {width} px, by: {wide}");
    screenshot(client, "console-390.png").await;
    viewport(client, 1280, 800).await;
}

/// Sign out: back to the form, and no session storage value holds the token.
async fn sign_out_forgets_the_token(app: &TestApp, client: &Client) {
    client
        .find(Locator::Id("sign-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        WAIT,
        "the sign-in form",
        "return !document.getElementById('sign-in').hidden",
    )
    .await;
    let stored = js(client, "return Object.values(sessionStorage)").await;
    let token = app.settings.ops.token.expose_secret();
    assert!(
        stored
            .as_array()
            .unwrap()
            .iter()
            .all(|v| !v.as_str().unwrap().contains(token)),
        "{stored}"
    );
    let rows = js(
        client,
        "return document.querySelectorAll('#actors-body tr').length",
    )
    .await;
    assert_eq!(rows, 0, "the signed-out page keeps no data");
}

#[tokio::test]
async fn fault_buttons_are_hidden_when_fault_injection_is_off() {
    let _browser = ONE_BROWSER.lock().await;
    let app = helpers::spawn_app_with(|s| s.ops.fault_injection = false).await;
    let app = &app;
    browser::drive(|client| async move {
        client.goto(&app.url("/ops/console")).await.unwrap();
        browser::sign_in(&client, app.settings.ops.token.expose_secret()).await;
        until(&client, WAIT, "the actor rows", "return document.querySelector('tr[data-actor=\"cache\"]') !== null").await;
        let shown = js(&client, "return [document.querySelectorAll('button[data-fault]').length, document.querySelector('th.faults-col').hidden]").await;
        assert_eq!(shown, serde_json::json!([0, true]));
    })
    .await;
}

/// Swagger UI under its Content-Security-Policy (issue #23, hardening): its
/// scripts run and fetch the document (operations listed), its stylesheet
/// applies, an operation expands, and `drive` finds no CSP refusal or
/// script error in the console.
#[tokio::test]
async fn swagger_ui_works_under_its_content_security_policy() {
    let _browser = ONE_BROWSER.lock().await;
    let app = helpers::spawn_app().await;
    let app = &app;
    browser::drive(|client| async move {
        client.goto(&app.url("/api/")).await.unwrap();
        until(
            &client,
            WAIT,
            "the operations",
            "return document.querySelectorAll('.opblock').length",
        )
        .await;
        let title = js(
            &client,
            "return getComputedStyle(document.querySelector('.swagger-ui .info .title')).fontSize",
        )
        .await;
        assert_eq!(title, "36px");
        client
            .find(Locator::Css(".opblock-summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(
            &client,
            WAIT,
            "an operation's details",
            "return document.querySelector('.opblock-body') !== null",
        )
        .await;
    })
    .await;
}
