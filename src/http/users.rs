//! `/users/*`: sign-up, login, refresh, logout and profiles. Handlers parse and validate, call
//! the [`Users`] handle and map its [`UserError`]s (here); the documented API views of what it
//! answers ([`TokenPair`], [`PublicProfile`], [`OwnerProfile`]) live here too (no schema in the domain).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Json;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use troupe_actors::cache::ProfileJson;
use troupe_actors::users::email::Email;
use troupe_actors::users::idempotency::{self, IdempotencyKey};
use troupe_actors::users::password::Password;
use troupe_actors::users::{self as domain, NewUser, ProfileChanges, UserError, UserId, Users};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AuthUser, RefreshBearer};
use super::client_addr::ClientAddr;
use super::error::{ApiError, Problem};
use super::extract::{Fields, FromJson, PathId, Valid};
use super::sessions::SessionClient;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(profile, update_profile))
        .routes(routes!(user_by_id))
}

/// Sign-up body.
#[derive(ToSchema)]
#[schema(example = json!({"name": "Ada Lovelace", "email": "ada@example.com", "password": "correct horse battery", "age": 36}))]
pub struct SignupRequest {
    /// 1 to 100 characters (trimmed); no control or format characters
    /// (zero-width, bidirectional overrides); at least one letter, digit,
    /// punctuation mark or symbol.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// A bare ASCII address (`name@example.com`: dot-atom local part, DNS
    /// host name; no display name, comment, quotes or IP literal), at most
    /// 254 characters. Stored trimmed and lower-cased; unique in that form.
    #[schema(value_type = String, format = "email", max_length = 254)]
    pub email: Email,
    /// 8 characters to 72 bytes after Unicode NFKC normalisation. With
    /// `auth.reject_common_passwords` (the default), not a common or easily
    /// guessed password, and not containing the name or the e-mail
    /// address's local part; the 400 names the reason.
    #[schema(value_type = String, min_length = 8, format = "password")]
    pub password: Password,
    #[schema(minimum = 0, maximum = 150)]
    pub age: Option<u8>,
}

/// Login body.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
pub struct LoginRequest {
    #[schema(format = "email")]
    pub email: String,
    #[schema(format = "password")]
    pub password: String,
}

/// Profile changes; at least one field.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Ada King", "age": 37}))]
pub struct ProfileUpdate {
    /// As at sign-up: 1 to 100 characters, no control or format characters,
    /// something visible.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(minimum = 0, maximum = 150)]
    pub age: Option<u8>,
}

/// Acknowledgement of a logout.
#[derive(Serialize, ToSchema)]
pub struct LoggedOut {
    #[schema(example = "logged out")]
    pub message: &'static str,
}

/// What every successful sign-up, login or refresh answers.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJhbGciOiJIUzI1NiJ9...", "refresh_token": "eyJhbGciOiJIUzI1NiJ9..."}))]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

impl From<domain::TokenPair> for TokenPair {
    fn from(pair: domain::TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
        }
    }
}

/// The profile anyone may see (`GET /users/{id}`): never the e-mail address or the age.
// Documents the JSON the cache holds and answers: the domain's `PublicProfile` serialises to it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "65f1c0ffee0000000000beef", "name": "Ada Lovelace", "createdAt": "2026-11-29T06:30:00Z"}))]
pub struct PublicProfile {
    pub id: String,
    pub name: String,
    #[serde(rename = "createdAt")]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<domain::PublicProfile> for PublicProfile {
    fn from(profile: domain::PublicProfile) -> Self {
        Self {
            id: profile.id.to_string(),
            name: profile.name,
            created_at: profile.created_at,
        }
    }
}

/// The profile its owner sees (`GET`/`PATCH /users/profile`): the public
/// profile with the e-mail address and the age.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "65f1c0ffee0000000000beef", "name": "Ada Lovelace", "email": "ada@example.com", "age": 36, "createdAt": "2026-11-29T06:30:00Z", "emailVerified": true}))]
pub struct OwnerProfile {
    pub id: String,
    pub name: String,
    pub email: String,
    pub age: Option<u8>,
    #[serde(rename = "createdAt")]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(rename = "emailVerified")]
    pub email_verified: bool,
}

impl From<domain::OwnerProfile> for OwnerProfile {
    fn from(profile: domain::OwnerProfile) -> Self {
        Self {
            id: profile.id.to_string(),
            name: profile.name,
            email: profile.email,
            age: profile.age,
            created_at: profile.created_at,
            email_verified: profile.email_verified,
        }
    }
}

/// The status and detail of each way the users capability fails.
impl From<UserError> for ApiError {
    fn from(err: UserError) -> Self {
        // An unreadable user, met directly or behind the profile cache: 409
        // naming the migration (no retry helps).
        if err.is_unreadable() {
            return Self::Conflict(UserError::Unreadable.to_string());
        }
        match err {
            UserError::EmailTaken => Self::Conflict(err.to_string()),
            UserError::InvalidCredentials => Self::Unauthorized("invalid e-mail or password"),
            UserError::WeakPassword(why) => Self::field("password", &why.to_string()),
            UserError::InvalidToken => Self::Unauthorized("invalid or expired token"),
            UserError::TokenReused => {
                Self::Unauthorized("refresh token already used; all sessions were revoked")
            }
            UserError::TokenSpent => Self::Unauthorized("refresh token already used"),
            UserError::SessionRevoked => Self::Unauthorized("the session has ended; log in again"),
            UserError::SignupInProgress => Self::Conflict(err.to_string()),
            UserError::NotFound => Self::NotFound("no such user".into()),
            UserError::BadMailToken => Self::field("token", &err.to_string()),
            UserError::EmailNotVerified => Self::Forbidden(err.to_string()),
            UserError::AlreadyVerified => Self::Conflict(err.to_string()),
            UserError::NoSuchSession => Self::NotFound("no such session".into()),
            UserError::Throttled(wait) => Self::throttled(wait),
            UserError::Unavailable(call) => call.into(),
            UserError::NoSigningKey => Self::Unavailable(format!("{err}; retry shortly")),
            UserError::Unreadable
            | UserError::NoRandom
            | UserError::Store(_)
            | UserError::Jobs(_)
            | UserError::Hashing(_)
            | UserError::ProfileLoad(_) => {
                // Almost always MongoDB being unreachable: worth a retry.
                let cause: &dyn std::error::Error = &err;
                tracing::error!(error = cause, "user store failed");
                Self::Unavailable("the user store is temporarily unavailable; retry shortly".into())
            }
        }
    }
}

/// The canonical e-mail address (see [`Email`]).
fn email(fields: &mut Fields, raw: Option<String>) -> Option<Email> {
    match Email::parse(&raw?) {
        Ok(email) => Some(email),
        Err(why) => {
            fields.error("email", format!("must be a valid e-mail address: {why}"));
            None
        }
    }
}

/// The NFKC-normalised password, checked (see [`Password`]).
fn password(fields: &mut Fields, raw: Option<String>) -> Option<Password> {
    match Password::new(&raw?) {
        Ok(password) => Some(password),
        Err(problems) => {
            for problem in problems {
                fields.error("password", problem.to_string());
            }
            None
        }
    }
}

/// Trimmed name, checked (see [`domain::name`]): 1 to 100 characters, no
/// control or format characters, something visible.
fn name(f: &mut Fields, raw: Option<String>) -> Option<String> {
    match domain::name::parse(&raw?) {
        Ok(name) => Some(name),
        Err(problems) => {
            for problem in problems {
                f.error("name", problem.to_string());
            }
            None
        }
    }
}

/// Age from 0 to [`domain::model::MAX_AGE`].
fn age(f: &mut Fields, raw: Option<i64>) -> Option<u8> {
    let age = raw?;
    f.check(
        (0..=i64::from(domain::model::MAX_AGE)).contains(&age),
        "age",
        "must be an integer from 0 to 150",
    );
    u8::try_from(age).ok()
}

impl FromJson for SignupRequest {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let name_raw: Option<String> = f.required("name", "a string");
        let email_raw: Option<String> = f.required("email", "a string");
        let password_raw: Option<String> = f.required("password", "a string");
        let age_raw: Option<i64> = f.optional("age", "an integer");

        let name = name(f, name_raw);
        let email = email(f, email_raw);
        let password = password(f, password_raw);
        let age = age(f, age_raw);
        Some(Self {
            name: name?,
            email: email?,
            password: password?,
            age,
        })
    }
}

impl FromJson for ProfileUpdate {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let name_raw: Option<String> = f.optional("name", "a string");
        let age_raw: Option<i64> = f.optional("age", "an integer");
        let empty = name_raw.is_none() && age_raw.is_none();
        let update = Self {
            name: name(f, name_raw),
            age: age(f, age_raw),
        };
        f.check(!empty, "name", "give at least one of name and age");
        Some(update)
    }
}

impl FromJson for LoginRequest {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let email: Option<String> = f.required("email", "a string");
        let password: Option<String> = f.required("password", "a string");
        // Not checked here: an address that does not parse is answered
        // like an unknown account (401), so login tells nothing new.
        Some(Self {
            email: email?,
            password: password?,
        })
    }
}

/// The optional `Idempotency-Key` request header, checked.
pub struct SignupKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for SignupKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(idempotency::HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(Self(None));
        };
        let bad = |e: idempotency::KeyError| ApiError::BadRequest(e.to_string());
        if values.next().is_some() {
            return Err(bad(idempotency::KeyError));
        }
        IdempotencyKey::parse(value.as_bytes())
            .map(|key| Self(Some(key)))
            .map_err(bad)
    }
}

/// Create an account; answers a token pair. Queues the welcome e-mail.
///
/// With an `Idempotency-Key` (IETF httpapi draft), a retry with the same key
/// and body gets the sign-up's outcome — 201 with a new session of the
/// account the first request created, never 409 for its own account — for
/// `auth.idempotency.ttl` (24 h by default). A key is scoped to its body:
/// with another body it is another sign-up, so nobody can block a sign-up by
/// using its key first. Limited per client address (`limits.signups`).
#[utoipa::path(post, path = "/users/signup", tag = "Auth", request_body = SignupRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes a retry safe: 1 to 255 visible ASCII characters (a UUID, say), sent unchanged with the same body on every retry of one sign-up. Scoped to the body: another body with the same key is another sign-up.",
        example = "8e03978e-40d5-43e8-bc93-6894a57f9324")),
    responses(
    (status = 201, description = "Created (or, for a repeated Idempotency-Key and body, the account that request created); signed in", body = TokenPair),
    (status = 400, description = "Malformed JSON, invalid fields (each listed: a common or guessable password too) or a malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The e-mail address is taken, or the first request with this Idempotency-Key is still in progress (retry)", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many sign-ups from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Temporarily unavailable (retry with the same Idempotency-Key to learn the outcome)", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn signup(
    State(state): State<AppState>,
    SessionClient(client): SessionClient,
    SignupKey(key): SignupKey,
    Valid(body): Valid<SignupRequest>,
) -> Result<(StatusCode, Json<TokenPair>), ApiError> {
    // Before any hashing; decided in-process (no round trip).
    if let Some(wait) = state.actors.limits.signups.check(client.addr) {
        tracing::warn!(target: "auth", client = %client.addr, "sign-up refused: too many from this address");
        return Err(ApiError::throttled(wait));
    }
    let new = NewUser {
        name: body.name,
        email: body.email,
        password: body.password,
        age: body.age,
        client,
    };
    let pair = users(&state).signup(new, key).await?;
    Ok((StatusCode::CREATED, Json(pair.into())))
}

/// Exchange e-mail and password for a token pair.
#[utoipa::path(post, path = "/users/login", tag = "Auth", request_body = LoginRequest, responses(
    (status = 200, description = "Signed in", body = TokenPair),
    (status = 400, description = "Malformed JSON or invalid fields", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Unknown e-mail or wrong password (indistinguishable)", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The stored account cannot be read (a foreign document shape): run `troupe migrate`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many failed logins for this account from this address, for this account, or from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn login(
    State(state): State<AppState>,
    SessionClient(client): SessionClient,
    Valid(body): Valid<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let password = SecretString::from(body.password);
    let pair = users(&state).login(&body.email, password, client).await?;
    Ok(Json(pair.into()))
}

/// Rotate: a new pair for a valid refresh token, which stops working.
/// Presented again within `auth.refresh_reuse_grace` (5 s) of its first use
/// while its session has not moved on (a retry, two tabs at once), it gets
/// the same pair and revokes nothing. Otherwise a spent refresh token revokes
/// all the user's sessions the first time; later replays of that token are
/// refused and revoke nothing, so sessions opened since survive.
#[utoipa::path(post, path = "/users/refresh", tag = "Auth", security(("refresh-token" = [])), responses(
    (status = 200, description = "A new pair; the presented refresh token is spent (a retry within the grace window: the same pair)", body = TokenPair),
    (status = 401, description = "Invalid, expired, spent or revoked refresh token, or the account no longer exists", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The stored account cannot be read (a foreign document shape): run `troupe migrate`", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(state): State<AppState>,
    SessionClient(client): SessionClient,
    RefreshBearer(token): RefreshBearer,
) -> Result<Json<TokenPair>, ApiError> {
    let pair = users(&state).refresh(token, client).await?;
    Ok(Json(pair.into()))
}

/// End the current session: its refresh token stops working.
#[utoipa::path(post, path = "/users/logout", tag = "Auth", security(("access-token" = [])), responses(
    (status = 200, description = "Logged out", body = LoggedOut),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<LoggedOut>, ApiError> {
    users(&state).logout(user.0).await?;
    Ok(Json(LoggedOut {
        message: "logged out",
    }))
}

/// The signed-in user's own profile, with the e-mail address and age.
#[utoipa::path(get, path = "/users/profile", tag = "Users", security(("access-token" = [])), responses(
    (status = 200, body = OwnerProfile),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "The user no longer exists", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The stored account cannot be read (a foreign document shape): run `troupe migrate`", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn profile(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<OwnerProfile>, ApiError> {
    let profile = users(&state).profile(user.id()?).await?;
    Ok(Json(profile.into()))
}

/// Change the signed-in user's name or age. The cached copy of the profile is
/// dropped before this answers, so no reader sees the old one afterwards.
#[utoipa::path(patch, path = "/users/profile", tag = "Users", security(("access-token" = [])), request_body = ProfileUpdate, responses(
    (status = 200, description = "The updated profile", body = OwnerProfile),
    (status = 400, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "The user no longer exists", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The stored account cannot be read (a foreign document shape): run `troupe migrate`", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn update_profile(
    State(state): State<AppState>,
    user: AuthUser,
    Valid(body): Valid<ProfileUpdate>,
) -> Result<Json<OwnerProfile>, ApiError> {
    let changes = ProfileChanges {
        name: body.name,
        age: body.age,
    };
    let profile = users(&state).update_profile(user.id()?, changes).await?;
    Ok(Json(profile.into()))
}

/// The users capability.
fn users(state: &AppState) -> &Users {
    &state.actors.users
}

/// Any user's public profile (no e-mail, no age), read through the Redis
/// cache. Unauthenticated and ids are guessable, so lookups are limited per
/// client address (`limits.profile_lookups`).
#[utoipa::path(get, path = "/users/{id}", tag = "Users",
    params(("id" = String, Path, description = "The user's id (24 hex digits)", example = "65f1c0ffee0000000000beef")),
    responses(
        (status = 200, body = PublicProfile),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The stored account cannot be read (a foreign document shape): run `troupe migrate`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many lookups from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
))]
async fn user_by_id(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    PathId(id): PathId<UserId>,
) -> Result<Response, ApiError> {
    // The limit is decided in-process, before the cache is asked.
    let json = users(&state).public_profile(id, client).await?;
    // The hottest route does nothing per hit it need not do
    // (docs/performance.md): no span of its own (the request's span names
    // the path), the body is the cached JSON itself (shared, not copied),
    // the header a static value (not parsed).
    let mut response = Response::new(Body::from(Bytes::from_owner(CachedJson(json))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A cached profile as a response body: the bytes the cache holds, shared.
struct CachedJson(ProfileJson);

impl AsRef<[u8]> for CachedJson {
    fn as_ref(&self) -> &[u8] {
        self.0 .0.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use troupe_actors::cache::LoadError;
    use troupe_actors::queue::QueueError;
    use troupe_actors::store::StoreError;
    use troupe_actors::users::password::{self, Password};
    use troupe_actors::users::strength::Guessable;
    use troupe_actors::CallError;

    use super::*;

    #[tokio::test]
    async fn every_user_error_has_its_status() {
        let hashing = password::hash(Password::new("long enough").unwrap(), 3)
            .await
            .unwrap_err();
        let store = StoreError::Timeout("mongodb", Duration::from_secs(1));
        let cases = [
            (UserError::EmailTaken, StatusCode::CONFLICT),
            (UserError::SignupInProgress, StatusCode::CONFLICT),
            (UserError::InvalidCredentials, StatusCode::UNAUTHORIZED),
            (
                UserError::WeakPassword(Guessable::ContainsName),
                StatusCode::BAD_REQUEST,
            ),
            (UserError::InvalidToken, StatusCode::UNAUTHORIZED),
            (UserError::TokenReused, StatusCode::UNAUTHORIZED),
            (UserError::TokenSpent, StatusCode::UNAUTHORIZED),
            (UserError::SessionRevoked, StatusCode::UNAUTHORIZED),
            (UserError::NotFound, StatusCode::NOT_FOUND),
            (UserError::NoSuchSession, StatusCode::NOT_FOUND),
            (UserError::NoSigningKey, StatusCode::SERVICE_UNAVAILABLE),
            (UserError::NoRandom, StatusCode::SERVICE_UNAVAILABLE),
            (UserError::BadMailToken, StatusCode::BAD_REQUEST),
            (UserError::EmailNotVerified, StatusCode::FORBIDDEN),
            (UserError::AlreadyVerified, StatusCode::CONFLICT),
            (
                UserError::Throttled(Duration::from_millis(1_500)),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                UserError::Unavailable(CallError::Timeout("user")),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                UserError::Store(std::sync::Arc::new(store)),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                UserError::Jobs(QueueError::Unavailable(CallError::Timeout("poller"))),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (UserError::from(hashing), StatusCode::SERVICE_UNAVAILABLE),
            (
                UserError::ProfileLoad(LoadError::new(UserError::NotFound)),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (UserError::Unreadable, StatusCode::CONFLICT),
            (
                UserError::ProfileLoad(LoadError::new(UserError::Unreadable)),
                StatusCode::CONFLICT,
            ),
        ];
        for (err, status) in cases {
            let shown = format!("{err:?}");
            assert_eq!(ApiError::from(err).status(), status, "{shown}");
        }
    }

    #[test]
    fn a_throttled_answer_rounds_its_wait_up() {
        let err = ApiError::from(UserError::Throttled(Duration::from_millis(1_500)));
        assert!(matches!(err, ApiError::TooManyRequests(2)), "{err:?}");
    }

    #[test]
    fn causes_stay_in_the_logs_not_in_the_answer() {
        let store = StoreError::Timeout("mongodb", Duration::from_secs(1));
        let err = ApiError::from(UserError::Store(std::sync::Arc::new(store)));
        assert!(!err.to_string().contains("mongodb"), "{err}");
        let down = ApiError::from(UserError::Unavailable(CallError::Unavailable("user")));
        assert!(!down.to_string().contains("user actor"), "{down}");
    }

    fn owner() -> domain::OwnerProfile {
        domain::OwnerProfile {
            id: "65f1c0ffee0000000000beef".parse().unwrap(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            age: Some(36),
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            email_verified: true,
        }
    }

    #[test]
    fn the_documented_public_profile_is_what_the_cache_serves() {
        let served = serde_json::to_value(owner().public()).unwrap();
        let documented = serde_json::to_value(PublicProfile::from(owner().public())).unwrap();
        assert_eq!(served, documented);
    }

    #[test]
    fn the_owner_view_shows_every_field_with_the_id_as_hex() {
        let view = serde_json::to_value(OwnerProfile::from(owner())).unwrap();
        assert_eq!(
            view,
            serde_json::json!({
                "id": "65f1c0ffee0000000000beef",
                "name": "Ada",
                "email": "ada@example.com",
                "age": 36,
                "createdAt": "2023-11-14T22:13:20Z",
                "emailVerified": true,
            })
        );
    }
}
