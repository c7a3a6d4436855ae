//! `/users/*`: sign-up, login, refresh, logout and the caller's profile.
//! Handlers parse and validate, send one message to the UserActor, and map
//! the reply.

use axum::extract::{Path, State};
use axum::http::header;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use mongodb::bson::oid::ObjectId;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use troupe_actors::user::{
    NewUser, OwnerProfile, ProfileChanges, PublicProfile, TokenPair, UserMsg,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AuthUser, RefreshBearer};
use super::client_addr::ClientAddr;
use super::error::{ApiError, Problem};
use super::extract::{Fields, FromJson, Valid};
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

/// bcrypt reads only the first 72 bytes of a password; longer ones are refused.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Sign-up body.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Ada Lovelace", "email": "ada@example.com", "password": "correct horse battery", "age": 36}))]
pub struct SignupRequest {
    /// 1 to 100 characters (trimmed), no control characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// A valid ASCII e-mail address; trimmed and lower-cased before use.
    #[schema(format = "email")]
    pub email: String,
    /// 8 characters to 72 bytes.
    #[schema(min_length = 8, format = "password")]
    pub password: String,
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

/// Trimmed, lower-cased, checked e-mail (ASCII only, so look-alike letters
/// from other scripts cannot make a second account for the "same" address).
fn email(fields: &mut Fields, raw: Option<String>) -> Option<String> {
    let email = raw?.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.is_ascii()
        && email_address::EmailAddress::is_valid(&email)
        && email
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domain.contains('.'));
    fields.check(valid, "email", "must be a valid e-mail address");
    Some(email)
}

/// Trimmed name, 1 to 100 characters, no control characters.
fn name(f: &mut Fields, raw: Option<String>) -> Option<String> {
    let name = raw?.trim().to_owned();
    let chars = name.chars().count();
    f.check(
        (1..=100).contains(&chars),
        "name",
        "must be 1 to 100 characters",
    );
    f.check(
        !name.chars().any(char::is_control),
        "name",
        "must not contain control characters",
    );
    Some(name)
}

/// Age from 0 to 150.
fn age(f: &mut Fields, raw: Option<i64>) -> Option<u8> {
    let age = raw?;
    f.check(
        (0..=150).contains(&age),
        "age",
        "must be an integer from 0 to 150",
    );
    u8::try_from(age).ok()
}

impl FromJson for SignupRequest {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let name_raw: Option<String> = f.required("name", "a string");
        let email_raw: Option<String> = f.required("email", "a string");
        let password: Option<String> = f.required("password", "a string");
        let age_raw: Option<i64> = f.optional("age", "an integer");

        let name = name(f, name_raw);
        let email = email(f, email_raw);
        if let Some(password) = &password {
            f.check(
                password.chars().count() >= 8,
                "password",
                "must be at least 8 characters",
            );
            f.check(
                password.len() <= MAX_PASSWORD_BYTES,
                "password",
                "must be at most 72 bytes (bcrypt reads no further)",
            );
        }
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
        Some(Self {
            email: email?.trim().to_lowercase(),
            password: password?,
        })
    }
}

/// Create an account; answers a token pair. Queues the welcome e-mail.
/// Limited per client address (`limits.signups`).
#[utoipa::path(post, path = "/users/signup", tag = "Auth", request_body = SignupRequest, responses(
    (status = 201, description = "Created; signed in", body = TokenPair),
    (status = 400, description = "Malformed JSON or invalid fields (each listed)", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The e-mail address is taken", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many sign-ups from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Temporarily unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Valid(body): Valid<SignupRequest>,
) -> Result<(StatusCode, Json<TokenPair>), ApiError> {
    // Before any hashing: a refused sign-up costs one Redis round trip.
    if let Some(wait) = state.actors.limits.signups.hit(client).await {
        tracing::warn!(target: "auth", %client, "sign-up refused: too many from this address");
        return Err(ApiError::throttled(wait));
    }
    let new = NewUser {
        name: body.name,
        email: body.email,
        password: SecretString::from(body.password),
        age: body.age,
    };
    let pair = state
        .actors
        .users
        .call(|reply| UserMsg::Signup(new, reply), state.call_timeout())
        .await??;
    Ok((StatusCode::CREATED, Json(pair)))
}

/// Exchange e-mail and password for a token pair.
#[utoipa::path(post, path = "/users/login", tag = "Auth", request_body = LoginRequest, responses(
    (status = 200, description = "Signed in", body = TokenPair),
    (status = 400, description = "Malformed JSON or invalid fields", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Unknown e-mail or wrong password (indistinguishable)", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many failed logins for this account from this address, for this account, or from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Valid(body): Valid<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let password = SecretString::from(body.password);
    let pair = state
        .actors
        .users
        .call(
            |reply| UserMsg::Login {
                email: body.email,
                password,
                client,
                reply,
            },
            state.call_timeout(),
        )
        .await??;
    Ok(Json(pair))
}

/// Rotate: a new pair for a valid refresh token, which stops working.
/// Presenting a refresh token a second time revokes all the user's sessions.
#[utoipa::path(post, path = "/users/refresh", tag = "Auth", security(("refresh-token" = [])), responses(
    (status = 200, description = "A new pair; the presented refresh token is spent", body = TokenPair),
    (status = 401, description = "Invalid, expired, spent or revoked refresh token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(state): State<AppState>,
    bearer: RefreshBearer,
) -> Result<Json<TokenPair>, ApiError> {
    let pair = state
        .actors
        .users
        .call(
            |reply| UserMsg::Refresh {
                token: bearer.token,
                claims: bearer.claims,
                reply,
            },
            state.call_timeout(),
        )
        .await??;
    Ok(Json(pair))
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
    state
        .actors
        .users
        .call(
            |reply| UserMsg::Logout {
                claims: user.0,
                reply,
            },
            state.call_timeout(),
        )
        .await??;
    Ok(Json(LoggedOut {
        message: "logged out",
    }))
}

/// The signed-in user's own profile, with the e-mail address and age.
#[utoipa::path(get, path = "/users/profile", tag = "Users", security(("access-token" = [])), responses(
    (status = 200, body = OwnerProfile),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "The user no longer exists", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn profile(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<OwnerProfile>, ApiError> {
    let id = mongodb::bson::oid::ObjectId::parse_str(&user.0.sub)
        .map_err(|_| ApiError::Unauthorized("invalid or expired access token"))?;
    state
        .actors
        .users
        .call(|reply| UserMsg::Profile { id, reply }, state.call_timeout())
        .await??
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no such user".into()))
}

/// Change the signed-in user's name or age. The cached copy of the profile is
/// dropped before this answers, so no reader sees the old one afterwards.
#[utoipa::path(patch, path = "/users/profile", tag = "Users", security(("access-token" = [])), request_body = ProfileUpdate, responses(
    (status = 200, description = "The updated profile", body = OwnerProfile),
    (status = 400, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "The user no longer exists", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn update_profile(
    State(state): State<AppState>,
    user: AuthUser,
    Valid(body): Valid<ProfileUpdate>,
) -> Result<Json<OwnerProfile>, ApiError> {
    let id = user.id()?;
    let changes = ProfileChanges {
        name: body.name,
        age: body.age,
    };
    state
        .actors
        .users
        .call(
            |reply| UserMsg::UpdateProfile { id, changes, reply },
            state.call_timeout(),
        )
        .await??
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no such user".into()))
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
        (status = 429, description = "Too many lookups from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(id = %id))]
async fn user_by_id(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = ObjectId::parse_str(&id)
        .map_err(|_| ApiError::BadRequest("the id must be 24 hexadecimal digits".into()))?;
    // The limit is counted in the same Redis round trip as the cache read.
    let json = state
        .actors
        .profiles
        .get_limited(id, &state.actors.limits.profile_lookups, client)
        .await??
        .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    // The cached JSON as it is: no parse and re-serialise per hit.
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        json.0.to_string(),
    ))
}
