//! `GET /.well-known/jwks.json`: the public keys access tokens are signed
//! with (RFC 7517), for services that verify them on their own.
//!
//! Anonymous and O(1): the document is the one the last key reload built
//! (`users::keys`), served from memory (no store; one copy of its few
//! hundred bytes), with a `Cache-Control` a verifier may cache it for (a
//! new key is published longer ahead than that). With `auth.signing = "HS256"`
//! the set is empty: a shared secret is never published.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use troupe_actors::users::keys::JWKS_MAX_AGE;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]}))]
pub struct JwkSet {
    pub keys: Vec<JwkView>,
}

/// One public key (RFC 7517 §4; Ed25519 keys as RFC 8037 says, P-256 with
/// `y`). `kid` is its RFC 7638 thumbprint, as access tokens name it.
#[derive(Serialize, ToSchema)]
pub struct JwkView {
    /// `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// `Ed25519` or `P-256`.
    pub crv: String,
    pub x: String,
    /// P-256 only.
    pub y: Option<String>,
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// The access tokens' public keys: the one signing now, the next (published
/// ahead of signing) and the previous (while tokens it signed may live).
/// Empty with HS256 signing.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "Auth",
    responses((status = 200, description = "The key set (cacheable for 5 minutes)", body = JwkSet, content_type = "application/json"))
)]
#[tracing::instrument(skip_all)]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.actors.users.jwks();
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={}", JWKS_MAX_AGE.as_secs()),
            ),
        ],
        body.to_string(),
    )
}
