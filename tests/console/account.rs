//! The console's Account view in a real browser: a user signs in with their
//! own e-mail and password (no ops token), sees the profile, the sessions,
//! ends another session, changes the password, and signs out; the tokens
//! stay in the page's memory.

use fantoccini::{Client, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::browser::{self, js, screenshot, until};
use crate::helpers::{self, unique_email, TestApp, PASSWORD};
use crate::{ONE_BROWSER, WAIT};

const NEW_PASSWORD: &str = "staple gun orbit lantern";

/// Replace `#id`'s value with `text`, typed.
async fn type_into(client: &Client, id: &str, text: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Run `script` (which clicks something) and wait until `#a` or `#b` has
/// text: the answer the click got, as [a, b].
async fn click_and_read(client: &Client, script: &str, a: &str, b: &str) -> Value {
    js(client, &format!("{script}; return true")).await;
    let read = format!(
        "const [a, b] = ['{a}', '{b}'].map(id => document.getElementById(id).textContent);
         return (a || b) ? [a, b] : null;"
    );
    until(client, WAIT, &format!("#{a} or #{b}"), &read).await
}

/// The caller's sessions, as the API lists them to `access`.
async fn sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let answer = app
        .client
        .get(app.url("/users/sessions"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json().await.unwrap()
}

#[tokio::test]
async fn the_account_view_shows_and_manages_the_users_own_account() {
    let _browser = ONE_BROWSER.lock().await;
    let app = helpers::spawn_app().await;
    let email = unique_email();
    let signup = app.signup(&email).await;
    // The sign-up's own session ends: the view's is then the only one.
    let out = app.post_bearer("/users/logout", &signup.access_token).await;
    assert_eq!(out.status(), StatusCode::OK);

    let (app, email) = (&app, email.as_str());
    // 400 (a common password), 401 (a wrong current password), 429 (the
    // resends spent): answers the view shows.
    browser::drive_allowing(&[400, 401, 429], |client| async move {
        client.goto(&app.url("/ops/console")).await.unwrap();
        browser::viewport(&client, 1280, 800).await;
        sign_in(&client, email).await;
        profile_and_resend(&client, email).await;
        end_another_session(app, &client, email).await;
        end_all_other_sessions(app, &client, email).await;
        change_password(app, &client, email).await;
        tokens_stay_in_memory(&client).await;
        screenshot(&client, "account-1280x800.png").await;
        fits_a_phone(&client).await;
        ops_views_stay_signed_out(&client).await;
        sign_out(app, &client, email).await;
        forgot_password(&client, email).await;
    })
    .await;
}

/// "Account", then e-mail and password: the profile shows.
async fn sign_in(client: &Client, email: &str) {
    client
        .find(Locator::Id("view-account"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = js(
        client,
        "return [document.getElementById('ops-view').hidden, document.getElementById('account-sign-in').hidden]",
    )
    .await;
    assert_eq!(shown, json!([true, false]));
    // The focus went to the e-mail field.
    assert_eq!(
        js(client, "return document.activeElement.id").await,
        "account-email"
    );
    type_into(client, "account-email", email).await;
    type_into(client, "account-password", PASSWORD).await;
    let submit = Locator::Css("#account-sign-in-form button[type=submit]");
    client.find(submit).await.unwrap().click().await.unwrap();
    let shown = until(
        client,
        WAIT,
        "the profile",
        "return document.getElementById('profile-email')?.textContent",
    )
    .await;
    assert_eq!(shown, email);
}

/// `emailVerified: false`, with "resend": the first resend is on its way,
/// and once this window's resends are spent the 429's detail shows.
async fn profile_and_resend(client: &Client, email: &str) {
    let verified = js(
        client,
        "return [document.getElementById('profile-verified').dataset.verified, document.getElementById('resend-verification').hidden]",
    )
    .await;
    assert_eq!(verified, json!(["false", false]), "{email} is unverified");
    let click = "document.getElementById('resend-verification').click()";
    let first = click_and_read(client, click, "profile-status", "profile-error").await;
    assert_eq!(first, json!(["a verification e-mail is on its way", ""]));
    let mut answer = first;
    for _ in 0..5 {
        answer = click_and_read(client, click, "profile-status", "profile-error").await;
        if answer[1] != "" {
            break;
        }
    }
    let refused = answer[1].as_str().unwrap();
    assert!(refused.ends_with("(429)"), "{answer}");
}

/// A second session (a login through the API) is listed beside this one;
/// "End" on it makes its refresh token fail.
async fn end_another_session(app: &TestApp, client: &Client, email: &str) {
    let login = app.login(email, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    let other: helpers::Tokens = login.json().await.unwrap();
    let listed = sessions(app, &other.access_token).await;
    let id = listed.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    js(
        client,
        "document.getElementById('sessions-refresh').click(); return true",
    )
    .await;
    let rows = until(
        client,
        WAIT,
        "two sessions listed",
        "const rows = [...document.querySelectorAll('#sessions-body tr')];
         return rows.length === 2 && rows.map(r => [r.dataset.session, r.classList.contains('current')]);",
    )
    .await;
    let rows: Vec<(String, bool)> = serde_json::from_value(rows).unwrap();
    assert!(rows.contains(&(id.clone(), false)), "{rows:?}");
    assert_eq!(rows.iter().filter(|(_, current)| *current).count(), 1);

    let end =
        format!("document.querySelector(\"tr[data-session='{id}'] button.end-session\").click()");
    let answer = click_and_read(client, &end, "sessions-status", "sessions-error").await;
    assert_eq!(answer[1], "", "{answer}");
    until_only_this_session(client).await;
    let refreshed = app.refresh(&other.refresh_token).await;
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
}

/// Two more sessions through the API; "End all other sessions" ends both
/// (their refresh tokens fail) and keeps this one.
async fn end_all_other_sessions(app: &TestApp, client: &Client, email: &str) {
    let mut others = Vec::new();
    for _ in 0..2 {
        let login = app.login(email, PASSWORD).await;
        others.push(login.json::<helpers::Tokens>().await.unwrap());
    }
    js(
        client,
        "document.getElementById('sessions-refresh').click(); return true",
    )
    .await;
    until(
        client,
        WAIT,
        "three sessions listed",
        "return document.querySelectorAll('#sessions-body tr').length === 3",
    )
    .await;
    let click = "document.getElementById('end-others').click()";
    let answer = click_and_read(client, click, "sessions-status", "sessions-error").await;
    assert_eq!(answer, json!(["Ended 2 other sessions.", ""]));
    until_only_this_session(client).await;
    for other in others {
        let refreshed = app.refresh(&other.refresh_token).await;
        assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    }
}

/// Submit the password form with `current` and `new`; the texts of the
/// current-password, new-password, form error and status lines.
async fn submit_password(client: &Client, current: &str, new: &str) -> Value {
    type_into(client, "current-password", current).await;
    type_into(client, "new-password", new).await;
    js(
        client,
        "document.querySelector('#password-form button[type=submit]').click(); return true",
    )
    .await;
    until(
        client,
        WAIT,
        "the password form's answer",
        "const t = ['current-password-error', 'new-password-error', 'password-error', 'password-status']
           .map(id => document.getElementById(id).textContent);
         return (t[2] || t[3]) ? t : null;",
    )
    .await
}

/// A wrong current password shows the problem's message; a common new
/// password its reason beside the field; then the change goes through and
/// the old password no longer logs in.
async fn change_password(app: &TestApp, client: &Client, email: &str) {
    let wrong = submit_password(client, "not the password at all", NEW_PASSWORD).await;
    assert_eq!(wrong[2], "invalid e-mail or password (401)", "{wrong}");

    let common = submit_password(client, PASSWORD, "password123").await;
    assert!(common[2].as_str().unwrap().ends_with("(400)"), "{common}");
    assert!(
        !common[1].as_str().unwrap().is_empty(),
        "the reason beside the new password: {common}"
    );

    let done = submit_password(client, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(
        done,
        json!([
            "",
            "",
            "",
            "password changed; every other session has ended"
        ])
    );
    assert_eq!(
        app.login(email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(email, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

/// No token in web storage or a cookie: the pair lives in a module variable.
async fn tokens_stay_in_memory(client: &Client) {
    let stored = js(
        client,
        "return [localStorage.length, sessionStorage.length, document.cookie]",
    )
    .await;
    assert_eq!(stored, json!([0, 0, ""]));
    let url = client.current_url().await.unwrap();
    assert!(!url.as_str().contains("eyJ"), "{url}");
}

/// At 390 px the view does not scroll sideways (the sessions table scrolls
/// inside its panel).
async fn fits_a_phone(client: &Client) {
    client.set_window_size(390, 844).await.unwrap();
    until(
        client,
        WAIT,
        "the narrow viewport",
        "return window.innerWidth <= 400",
    )
    .await;
    let (overflow, wide) = browser::horizontal_overflow(client).await;
    assert_eq!(
        overflow, 0,
        "horizontal overflow at phone width, by: {wide}"
    );
    screenshot(client, "account-390.png").await;
    browser::viewport(client, 1280, 800).await;
}

/// The Ops view gains nothing from the account: still its own sign-in.
async fn ops_views_stay_signed_out(client: &Client) {
    js(
        client,
        "document.getElementById('view-ops').click(); return true",
    )
    .await;
    let shown = js(
        client,
        "return [document.getElementById('sign-in').hidden, document.getElementById('console').hidden, document.getElementById('account').hidden]",
    )
    .await;
    assert_eq!(shown, json!([false, true, true]));
    js(
        client,
        "document.getElementById('view-account').click(); return true",
    )
    .await;
}

/// Sign out: the sign-in form again, and the view's session has ended (the
/// API lists only the session of the last login there).
async fn sign_out(app: &TestApp, client: &Client, email: &str) {
    js(
        client,
        "document.getElementById('account-sign-out').click(); return true",
    )
    .await;
    until(
        client,
        WAIT,
        "the account sign-in form",
        "return !document.getElementById('account-sign-in').hidden && document.getElementById('account-sign-in-error').textContent === 'Signed out.'",
    )
    .await;
    let rows = js(
        client,
        "return document.querySelectorAll('#sessions-body tr, #profile dd').length",
    )
    .await;
    assert_eq!(rows, 0, "the signed-out view keeps no data");
    let login = app.login(email, NEW_PASSWORD).await;
    let last: helpers::Tokens = login.json().await.unwrap();
    let listed = sessions(app, &last.access_token).await;
    // The view's session is gone; the API logins of change_password and this one remain.
    assert!(listed.iter().all(|s| s["userAgent"]
        .as_str()
        .is_none_or(|agent| !agent.contains("Chrome"))));
}

/// Signed out, "Forgot password?" asks for a reset e-mail and shows the
/// uniform answer.
async fn forgot_password(client: &Client, email: &str) {
    js(
        client,
        "document.querySelector('details.forgot').open = true; return true",
    )
    .await;
    type_into(client, "forgot-email", email).await;
    let submit = "document.querySelector('#forgot-form button[type=submit]').click()";
    js(client, &format!("{submit}; return true")).await;
    let answer = until(
        client,
        WAIT,
        "the forgot-password answer",
        "return document.getElementById('forgot-status').textContent",
    )
    .await;
    assert_eq!(
        answer,
        "if the address has an account, a reset e-mail is on its way"
    );
}

/// Wait until an access token issued now has expired: then every access
/// token the view holds from before has too (a condition, not a sleep).
async fn access_tokens_of_now_expire(app: &TestApp, email: &str, password: &str) {
    let login = app.login(email, password).await;
    let probe: helpers::Tokens = login.json().await.unwrap();
    helpers::eventually(WAIT, "an access token to expire", || async {
        let answer = app
            .client
            .get(app.url("/users/profile"))
            .bearer_auth(&probe.access_token)
            .send()
            .await
            .unwrap();
        (answer.status() == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

/// End the browser's session from a session of the API's (with a 1 s
/// access token, a fresh login for each try).
async fn end_the_views_session_through_the_api(app: &TestApp, email: &str) {
    helpers::eventually(WAIT, "the view's session ended", || async {
        let login = app.login(email, PASSWORD).await;
        let api: helpers::Tokens = login.json().await.unwrap();
        let listed = app
            .client
            .get(app.url("/users/sessions"))
            .bearer_auth(&api.access_token)
            .send()
            .await
            .unwrap();
        let listed: Vec<Value> = listed.json().await.ok()?;
        let chrome = |s: &&Value| {
            s["userAgent"]
                .as_str()
                .is_some_and(|a| a.contains("Chrome"))
        };
        let view = listed.iter().find(chrome).expect("the view's session")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ended = app
            .client
            .delete(app.url(&format!("/users/sessions/{view}")))
            .bearer_auth(&api.access_token)
            .send()
            .await
            .unwrap();
        (ended.status() == StatusCode::NO_CONTENT).then_some(())
    })
    .await;
}

/// With a 1 s `auth.access_ttl`: an expired access token is refreshed with
/// the refresh token and the calls go through (the session shows a refresh);
/// once the session is ended elsewhere, the refused refresh signs the view
/// out with a message.
#[tokio::test]
async fn the_account_view_refreshes_its_token_and_leaves_when_its_session_ends() {
    let _browser = ONE_BROWSER.lock().await;
    let app =
        helpers::spawn_app_with(|s| s.auth.access_ttl = std::time::Duration::from_secs(1)).await;
    let email = unique_email();
    app.signup(&email).await;
    let (app, email) = (&app, email.as_str());
    browser::drive_allowing(&[401], |client| async move {
        // The fragment opens the Account view.
        client.goto(&app.url("/ops/console#account")).await.unwrap();
        sign_in(&client, email).await;

        access_tokens_of_now_expire(app, email, PASSWORD).await;
        js(&client, "document.getElementById('sessions-refresh').click(); return true").await;
        let refreshed = until(
            &client,
            WAIT,
            "this session shown refreshed",
            "const cell = document.querySelector('#sessions-body tr.current td:nth-child(2)');
             return cell && cell.textContent !== 'never' && cell.textContent;",
        )
        .await;
        assert_ne!(refreshed, "never");
        let errors = js(&client, "return document.getElementById('sessions-error').textContent + document.getElementById('profile-error').textContent").await;
        assert_eq!(errors, "");

        end_the_views_session_through_the_api(app, email).await;
        access_tokens_of_now_expire(app, email, PASSWORD).await;
        js(&client, "document.getElementById('sessions-refresh').click(); return true").await;
        until(
            &client,
            WAIT,
            "the sign-in form, with why",
            "return !document.getElementById('account-sign-in').hidden
               && document.getElementById('account-sign-in-error').textContent === 'Your session has ended. Sign in again.'",
        )
        .await;
    })
    .await;
}

/// Until the sessions table lists this session alone.
async fn until_only_this_session(client: &Client) {
    until(
        client,
        WAIT,
        "only this session listed",
        "const rows = document.querySelectorAll('#sessions-body tr');
         return rows.length === 1 && rows[0].classList.contains('current');",
    )
    .await;
}
