//! `GET /.well-known/jwks.json` and access tokens as another service sees
//! them: verified by an independent JWT library (Python's PyJWT with
//! `cryptography`, fetching the JWKS itself) before and after a rotation,
//! which logs no one out; unknown `kid`s and algorithm switches refused.
//!
//! PyJWT lives in `.services/pyjwt` (`scripts/services tools` installs it
//! from PyPI); without it the PyJWT tests skip, saying so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use troupe::config::Settings;
use troupe_actors::queue::clock::Clock;
use troupe_actors::users::keys::{SigningAlg, PUBLISH_AHEAD};

use crate::helpers::{assert_problem, spawn_app_with, unique_email, TestApp, Tokens, PASSWORD};
use crate::keys::kid_of;

/// PyJWT fetches the JWKS at argv[1] and verifies the access token argv[2]
/// with the key its `kid` names; prints the key's id and the claims.
const VERIFY: &str = r#"
import json, sys, jwt
url, token = sys.argv[1], sys.argv[2]
key = jwt.PyJWKClient(url, cache_jwk_set=False).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name],
                    options={"require": ["exp", "iat", "nbf", "sub"]})
print(json.dumps({"kid": key.key_id, "alg": key.algorithm_name, "claims": claims}))
"#;

/// The venv's python, or `None` (and a line saying why the test skips).
fn pyjwt() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/pyjwt/bin/python");
    if python.exists() {
        return Some(python);
    }
    eprintln!(
        "SKIPPED: PyJWT is not installed at {} — run `scripts/services tools` to install it",
        python.display()
    );
    None
}

/// What PyJWT makes of `token`, verified against `app`'s JWKS.
async fn verified_by_pyjwt(python: &Path, app: &TestApp, token: &str) -> Value {
    let (python, url, token) = (
        python.to_path_buf(),
        app.url("/.well-known/jwks.json"),
        token.to_owned(),
    );
    // A child process: blocking, so off the async workers.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", VERIFY, &url, &token])
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn app_signing(alg: SigningAlg) -> TestApp {
    spawn_app_with(|s: &mut Settings| {
        s.auth.signing = alg;
        s.auth.key_clock = Clock::manual_from_now();
    })
    .await
}

/// Move the app's key clock by `by` and reload its keys now (what its
/// reload task does every 30 s).
async fn advance_keys(app: &TestApp, by: Duration) {
    app.settings.auth.key_clock.advance(by);
    let keys = app
        .state
        .actors
        .signing_keys
        .as_ref()
        .expect("asymmetric signing");
    keys.reload().await.expect("reload");
}

async fn jwks(app: &TestApp) -> Value {
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("cache-control"), "public, max-age=300");
    response.json().await.unwrap()
}

fn kids(set: &Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_jwks_publishes_the_signing_key_as_rfc_7517_says() {
    for (alg, kty, crv) in [
        (SigningAlg::EdDSA, "OKP", "Ed25519"),
        (SigningAlg::ES256, "EC", "P-256"),
    ] {
        let app = app_signing(alg).await;
        let tokens = app.signup(&unique_email()).await;
        let set = jwks(&app).await;
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{set}");
        let key = &keys[0];
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some(kty), Some(crv))
        );
        assert_eq!(
            (key["alg"].as_str(), key["use"].as_str()),
            (Some(alg.as_str()), Some("sig"))
        );
        assert_eq!(key["y"].is_string(), alg == SigningAlg::ES256, "{key}");
        assert!(key.get("d").is_none(), "no private part: {key}");
        assert_eq!(kid_of(&tokens.access_token), key["kid"].as_str().unwrap());
    }
}

#[tokio::test]
async fn with_hs256_the_jwks_is_empty_and_tokens_name_the_shared_key() {
    let app = spawn_app_with(|s| s.auth.signing = SigningAlg::HS256).await;
    assert_eq!(jwks(&app).await, serde_json::json!({ "keys": [] }));
    let tokens = app.signup(&unique_email()).await;
    assert_eq!(kid_of(&tokens.access_token), "hs256");
    let response = app.get_bearer("/users/profile", &tokens.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_naming_an_unknown_kid_or_switching_algorithm_is_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let app = app_signing(SigningAlg::EdDSA).await;
    let tokens = app.signup(&unique_email()).await;
    let (_, rest) = tokens.access_token.split_once('.').unwrap();
    let kid = kid_of(&tokens.access_token);
    let forged = |header: Value| {
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        format!("{header}.{rest}")
    };
    for token in [
        // The right signature under a kid nobody published.
        forged(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "unknown"})),
        // No kid at all.
        forged(serde_json::json!({"alg": "EdDSA", "typ": "JWT"})),
        // The published key's kid, another algorithm.
        forged(serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid})),
        forged(serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid})),
    ] {
        let response = app.get_bearer("/users/profile", &token).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // auth.access_secret signs nothing any more, whatever the kid says.
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(rest.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let secret = app.settings.auth.access_secret.expose_secret().as_bytes();
    for kid in ["hs256", kid.as_str()] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap();
        let response = app.get_bearer("/users/profile", &token).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let response = app.get_bearer("/users/profile", &tokens.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn pyjwt_verifies_access_tokens_with_the_jwks_across_a_rotation() {
    let Some(python) = pyjwt() else { return };
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
        let app = app_signing(alg).await;
        let email = unique_email();
        let before = app.signup(&email).await;
        let user = app.user_id(&before.access_token).await;
        let seen = verified_by_pyjwt(&python, &app, &before.access_token).await;
        assert_eq!(seen["claims"]["sub"], user.as_str());
        assert_eq!(seen["alg"], alg.as_str());
        let first = kid_of(&before.access_token);
        assert_eq!(seen["kid"], first.as_str());

        // Rotation: the next key is published ahead, then signs.
        advance_keys(&app, app.settings.auth.key_rotation - PUBLISH_AHEAD).await;
        assert_eq!(kids(&jwks(&app).await).len(), 2);
        advance_keys(&app, PUBLISH_AHEAD).await;
        let after: Tokens = app.login(&email, PASSWORD).await.json().await.unwrap();
        let second = kid_of(&after.access_token);
        assert_ne!(second, first);
        assert_eq!(kids(&jwks(&app).await).len(), 2, "the previous key stays");

        // Both verify, for PyJWT and for the service: no one logged out.
        for (token, kid) in [
            (&before.access_token, &first),
            (&after.access_token, &second),
        ] {
            let seen = verified_by_pyjwt(&python, &app, token).await;
            assert_eq!(
                (&seen["kid"], &seen["claims"]["sub"]),
                (&Value::from(kid.as_str()), &Value::from(user.as_str()))
            );
            let response = app.get_bearer("/users/profile", token).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        // The refresh token issued before the rotation still refreshes,
        // into an access token of the new key.
        let refreshed: Tokens = app
            .refresh(&before.refresh_token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(kid_of(&refreshed.access_token), second);
    }
}
