//! The signed-in user's account security: `POST /users/password` (change
//! the password) and `/users/sessions` (list the sessions, end one, end the
//! others). Errors map as in [`super::users`]; the API views live here.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use axum::Json;
use secrecy::SecretString;
use serde::Serialize;
use troupe_actors::users::password::Password;
use troupe_actors::users::{Client, SessionInfo, UserError, Users};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AuthUser;
use super::client_addr::ClientAddr;
use super::error::{ApiError, Problem};
use super::extract::{Fields, FromJson, Valid};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(change_password))
        .routes(routes!(list_sessions, end_other_sessions))
        .routes(routes!(end_session))
}

/// The client a session records: its address (through the trusted
/// proxies) and its `User-Agent`, bounded (see [`Client`]).
pub struct SessionClient(pub Client);

impl FromRequestParts<AppState> for SessionClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ClientAddr(addr) = ClientAddr::from_request_parts(parts, state).await?;
        // A User-Agent that is not visible ASCII is recorded as none.
        let agent = parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
        Ok(Self(Client::new(addr, agent)))
    }
}

/// Password change body.
#[derive(ToSchema)]
#[schema(example = json!({"currentPassword": "correct horse battery", "newPassword": "staple gun orbit lantern"}))]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    /// The password now, as typed.
    #[schema(value_type = String, format = "password")]
    pub current_password: String,
    /// As at sign-up: 8 characters to 72 bytes after NFKC normalisation;
    /// with `auth.reject_common_passwords`, not common or easily guessed
    /// and not containing the name or the e-mail address's local part.
    #[schema(value_type = String, min_length = 8, format = "password")]
    pub new_password: Password,
}

impl FromJson for PasswordChange {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let current: Option<String> = f.required("currentPassword", "a string");
        let new: Option<String> = f.required("newPassword", "a string");
        let new = match Password::new(&new?) {
            Ok(password) => Some(password),
            Err(problems) => {
                for problem in problems {
                    f.error("newPassword", problem.to_string());
                }
                None
            }
        };
        Some(Self {
            current_password: current?,
            new_password: new?,
        })
    }
}

/// Acknowledgement of a password change.
#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    #[schema(example = "password changed; every other session has ended")]
    pub message: &'static str,
}

/// One of the user's sessions: no token material.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"id": "9f1c2d3e4b5a69788796a5b4c3d2e1f0", "createdAt": "2026-11-29T06:30:00Z", "lastRefreshedAt": "2026-11-29T07:10:00Z", "clientAddress": "203.0.113.9", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "current": true}))]
pub struct Session {
    pub id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The last refresh; null if never refreshed.
    pub last_refreshed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The client address of the last login or refresh, as seen through
    /// the trusted proxies.
    pub client_address: Option<String>,
    /// The client's `User-Agent`, at most 200 characters.
    pub user_agent: Option<String>,
    /// Whether this is the session of the access token that asked.
    pub current: bool,
}

impl From<SessionInfo> for Session {
    fn from(info: SessionInfo) -> Self {
        Self {
            id: info.id,
            created_at: info.created_at,
            last_refreshed_at: info.refreshed_at,
            client_address: info.client_addr,
            user_agent: info.user_agent,
            current: info.current,
        }
    }
}

/// How many sessions `DELETE /users/sessions` ended.
#[derive(Serialize, ToSchema)]
pub struct SessionsEnded {
    #[schema(example = 2)]
    pub ended: u64,
}

/// Change the password. A wrong current password is answered, and counted
/// by the login throttle, exactly like a failed login. Every other session
/// ends (its refresh token fails at once; its access token within
/// `auth.access_ttl`); this one stays signed in. The owner is told by
/// e-mail.
#[utoipa::path(post, path = "/users/password", tag = "Auth", security(("access-token" = [])), request_body = PasswordChange, responses(
    (status = 200, description = "Changed; every other session has ended", body = PasswordChanged),
    (status = 400, description = "Malformed JSON or invalid fields: a new password too short, too long, common or containing the name or e-mail address (the reason under `newPassword`)", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Missing or invalid access token, or a wrong current password (as a failed login)", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "The user no longer exists", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The stored account cannot be read (a foreign document shape): run `troupe migrate`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many failed password checks (the login throttle); see Retry-After", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn change_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    user: AuthUser,
    Valid(body): Valid<PasswordChange>,
) -> Result<Json<PasswordChanged>, ApiError> {
    let current = SecretString::from(body.current_password);
    users(&state)
        .change_password(user.0, current, body.new_password, client)
        .await
        .map_err(|err| match err {
            // The rules' reason belongs to this body's field.
            UserError::WeakPassword(why) => ApiError::field("newPassword", &why.to_string()),
            other => other.into(),
        })?;
    Ok(Json(PasswordChanged {
        message: "password changed; every other session has ended",
    }))
}

/// The signed-in user's live sessions, newest first; the one asking is
/// marked `current`.
#[utoipa::path(get, path = "/users/sessions", tag = "Auth", security(("access-token" = [])), responses(
    (status = 200, body = Vec<Session>),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn list_sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<Session>>, ApiError> {
    let sessions = users(&state).sessions(user.0).await?;
    Ok(Json(sessions.into_iter().map(Session::from).collect()))
}

/// End every session of the signed-in user but this one.
#[utoipa::path(delete, path = "/users/sessions", tag = "Auth", security(("access-token" = [])), responses(
    (status = 200, description = "Ended; how many", body = SessionsEnded),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn end_other_sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SessionsEnded>, ApiError> {
    let ended = users(&state).end_other_sessions(user.0).await?;
    Ok(Json(SessionsEnded { ended }))
}

/// The most characters a session id has (32 hex digits; room to spare).
const MAX_SESSION_ID: usize = 64;

/// End one of the signed-in user's sessions (this one too, like a
/// logout): its refresh token fails at once, its access token within
/// `auth.access_ttl`. Another user's session id is answered like an
/// unknown one.
#[utoipa::path(delete, path = "/users/sessions/{id}", tag = "Auth", security(("access-token" = [])),
    params(("id" = String, Path, description = "A session id from `GET /users/sessions`", example = "9f1c2d3e4b5a69788796a5b4c3d2e1f0")),
    responses(
    (status = 204, description = "Ended"),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No live session of yours has this id (unknown, ended, or another user's)", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn end_session(
    State(state): State<AppState>,
    user: AuthUser,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::http::StatusCode, ApiError> {
    // What cannot be a session id (a segment that is not UTF-8 once
    // decoded, too long, not hex) is unknown: no store round trip.
    let id = id
        .ok()
        .map(|Path(id)| id)
        .filter(|id| id.len() <= MAX_SESSION_ID && id.bytes().all(|b| b.is_ascii_hexdigit()));
    let id = id.ok_or(UserError::NoSuchSession)?;
    users(&state).end_session(user.0, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The users capability.
fn users(state: &AppState) -> &Users {
    &state.actors.users
}
