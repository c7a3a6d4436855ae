//! The fleet's signing keys against the real store (users::keys): the
//! first key made exactly once by instances starting together, rotation
//! driven by a manual clock, a wrong key-encryption secret, a change of
//! algorithm. Each "instance" is a `SigningKeys` of its own on the test's
//! database, as every instance of a fleet has.

use std::time::Duration;

use futures::future::join_all;
use mongodb::bson::{doc, Document};
use secrecy::SecretString;
use troupe::config::Settings;
use troupe_actors::queue::clock::Clock;
use troupe_actors::users::keys::{
    KeysError, SigningAlg, SigningKeys, COLLECTION, PUBLISH_AHEAD, RETAIN_MARGIN,
};
use troupe_actors::users::tokens::{TokenType, Tokens};

use crate::helpers::{observer, remove_stores, test_settings};

/// `n` instances' key managers on one database, sharing `settings.auth`.
async fn instances(settings: &Settings, n: usize) -> Vec<SigningKeys> {
    let db = observer(settings).await;
    (0..n)
        .map(|_| SigningKeys::new(&db, &settings.auth))
        .collect()
}

fn manual(alg: SigningAlg) -> Settings {
    let mut settings = test_settings();
    settings.auth.signing = alg;
    settings.auth.key_clock = Clock::manual_from_now();
    settings
}

/// The stored keys, oldest generation first.
async fn stored(settings: &Settings) -> Vec<Document> {
    let db = observer(settings).await;
    let mut docs = crate::helpers::find_documents(&db, COLLECTION, doc! {}).await;
    docs.sort_by_key(|d| d.get_i64("_id").unwrap());
    docs
}

/// The signing kid and the verifying kids of one instance.
fn kids(keys: &SigningKeys) -> (String, Vec<String>) {
    let ring = keys.ring().current();
    let signing = ring.signing.as_ref().expect("a signing key").kid.clone();
    (
        signing,
        ring.verifying.iter().map(|v| v.kid.clone()).collect(),
    )
}

async fn reload_all(all: &[SigningKeys]) {
    for result in join_all(all.iter().map(SigningKeys::reload)).await {
        result.expect("reload");
    }
}

#[tokio::test]
async fn instances_starting_together_create_exactly_one_first_key() {
    let settings = manual(SigningAlg::EdDSA);
    let all = instances(&settings, 8).await;
    reload_all(&all).await;
    let docs = stored(&settings).await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].get_i64("_id").unwrap(), 1);
    let kid = docs[0].get_str("kid").unwrap();
    for keys in &all {
        assert_eq!(kids(keys), (kid.to_owned(), vec![kid.to_owned()]));
    }
    // The private key is stored sealed: no PKCS#8 prefix in the clear.
    let sealed = docs[0].get_binary_generic("sealed").unwrap();
    assert!(sealed.len() > 48 + 16, "nonce, key, tag");
    assert!(docs[0].get("private").is_none());
    remove_stores(&settings).await;
}

#[tokio::test]
async fn the_next_key_is_made_once_published_ahead_and_the_previous_verifies_until_its_tokens_expire(
) {
    let settings = manual(SigningAlg::EdDSA);
    let clock = settings.auth.key_clock.clone();
    let all = instances(&settings, 4).await;
    reload_all(&all).await;
    let (first, _) = kids(&all[0]);
    let tokens = Tokens::new(&settings.auth, all[0].ring().clone());
    let verifier = Tokens::new(&settings.auth, all[3].ring().clone());
    let old = tokens.issue_pair("u", "e@x.co", "s").unwrap().access_token;

    // Not yet due: nothing new.
    clock.advance(settings.auth.key_rotation - PUBLISH_AHEAD - Duration::from_secs(1));
    reload_all(&all).await;
    assert_eq!(stored(&settings).await.len(), 1);

    // Due: the next key is made once, published (verifying) but not signing.
    clock.advance(Duration::from_secs(1));
    reload_all(&all).await;
    assert_eq!(stored(&settings).await.len(), 2);
    let (signing, verifying) = kids(&all[1]);
    assert_eq!(signing, first);
    assert_eq!(verifying.len(), 2);
    let next = verifying.iter().find(|k| **k != first).unwrap().clone();
    for keys in &all {
        assert_eq!(kids(keys), (first.clone(), verifying.clone()));
    }

    // Its time comes: it signs; the old key's tokens still verify.
    clock.advance(PUBLISH_AHEAD);
    reload_all(&all).await;
    assert_eq!(stored(&settings).await.len(), 2);
    assert_eq!(kids(&all[2]).0, next);
    let new = tokens.issue_pair("u", "e@x.co", "s").unwrap().access_token;
    assert_eq!(kid_of(&new), next);
    for token in [&old, &new] {
        verifier.verify(token, TokenType::Access).expect("verifies");
    }

    // Once the old key's last token has expired, it leaves the ring.
    clock.advance(settings.auth.access_ttl + RETAIN_MARGIN - Duration::from_secs(1));
    reload_all(&all).await;
    assert_eq!(kids(&all[3]).1.len(), 2);
    clock.advance(Duration::from_secs(1));
    reload_all(&all).await;
    assert_eq!(kids(&all[3]), (next.clone(), vec![next.clone()]));
    assert!(verifier.verify(&old, TokenType::Access).is_err());
    verifier.verify(&new, TokenType::Access).expect("verifies");
    assert_eq!(stored(&settings).await.len(), 2);
    remove_stores(&settings).await;
}

#[tokio::test]
async fn another_key_encryption_secret_cannot_open_the_fleets_keys() {
    let settings = manual(SigningAlg::EdDSA);
    instances(&settings, 1).await[0].reload().await.unwrap();
    let mut other = settings.clone();
    other.auth.key_encryption_secret = SecretString::from("another-secret-0123456789abcdef-xyz");
    let stranger = &instances(&other, 1).await[0];
    assert!(matches!(stranger.reload().await, Err(KeysError::Sealed)));
    assert!(stranger.ring().current().signing.is_none());
    // Its Debug names no key material.
    assert!(!format!("{:?}", stranger.ring()).contains("sealed"));
    remove_stores(&settings).await;
}

#[tokio::test]
async fn a_new_algorithm_is_published_ahead_then_signs_es256() {
    let settings = manual(SigningAlg::EdDSA);
    instances(&settings, 1).await[0].reload().await.unwrap();
    let mut es256 = settings.clone();
    es256.auth.signing = SigningAlg::ES256;
    let all = instances(&es256, 3).await;
    reload_all(&all).await;
    let docs = stored(&settings).await;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].get_str("alg").unwrap(), "ES256");
    es256.auth.key_clock.advance(PUBLISH_AHEAD);
    reload_all(&all).await;
    let tokens = Tokens::new(&es256.auth, all[0].ring().clone());
    let token = tokens.issue_pair("u", "e@x.co", "s").unwrap().access_token;
    assert_eq!(header_of(&token)["alg"], "ES256");
    Tokens::new(&es256.auth, all[2].ring().clone())
        .verify(&token, TokenType::Access)
        .expect("verifies");
    remove_stores(&settings).await;
}

fn header_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn kid_of(token: &str) -> String {
    header_of(token)["kid"].as_str().unwrap().to_owned()
}
