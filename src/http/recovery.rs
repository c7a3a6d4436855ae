//! What a mailed single-use token does: `POST /users/password/forgot` and
//! `/users/password/reset` (a forgotten password), `POST
//! /users/email/verify` and `/users/email/verify/resend` (proving the
//! address). Errors map as in [`super::users`]; the API views live here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use secrecy::SecretString;
use serde::Serialize;
use troupe_actors::users::email::Email;
use troupe_actors::users::password::Password;
use troupe_actors::users::{Recovery, Users};
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
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
}

/// Forgot-password body.
#[derive(ToSchema)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub struct ForgotPassword {
    /// The account's address, as at sign-up.
    #[schema(value_type = String, format = "email", max_length = 254)]
    pub email: Email,
}

impl FromJson for ForgotPassword {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let raw: Option<String> = f.required("email", "a string");
        match Email::parse(&raw?) {
            Ok(email) => Some(Self { email }),
            Err(why) => {
                f.error("email", format!("must be a valid e-mail address: {why}"));
                None
            }
        }
    }
}

/// Password-reset body.
#[derive(ToSchema)]
#[schema(example = json!({"token": "Qm9ndXMtZXhhbXBsZS10b2tlbi1ub3QtYS1yZWFsLW9uZQ", "password": "staple gun orbit lantern"}))]
pub struct PasswordReset {
    /// The token of the reset e-mail (43 characters).
    #[schema(value_type = String)]
    pub token: SecretString,
    /// As at sign-up: 8 characters to 72 bytes after NFKC normalisation;
    /// with `auth.reject_common_passwords`, not common or easily guessed and
    /// not containing the name or the e-mail address's local part.
    #[schema(value_type = String, min_length = 8, format = "password")]
    pub password: Password,
}

impl FromJson for PasswordReset {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let token: Option<String> = f.required("token", "a string");
        let password: Option<String> = f.required("password", "a string");
        let password = match Password::new(&password?) {
            Ok(password) => Some(password),
            Err(problems) => {
                for problem in problems {
                    f.error("password", problem.to_string());
                }
                None
            }
        };
        Some(Self {
            token: SecretString::from(token?),
            password: password?,
        })
    }
}

/// E-mail verification body.
#[derive(ToSchema)]
#[schema(example = json!({"token": "Qm9ndXMtZXhhbXBsZS10b2tlbi1ub3QtYS1yZWFsLW9uZQ"}))]
pub struct EmailVerification {
    /// The token of the verification e-mail (43 characters).
    #[schema(value_type = String)]
    pub token: SecretString,
}

impl FromJson for EmailVerification {
    fn from_json(f: &mut Fields) -> Option<Self> {
        let token: Option<String> = f.required("token", "a string");
        Some(Self {
            token: SecretString::from(token?),
        })
    }
}

/// What these routes answer.
#[derive(Serialize, ToSchema)]
pub struct Acknowledged {
    #[schema(example = "if the address has an account, a reset e-mail is on its way")]
    pub message: &'static str,
}

fn ack(message: &'static str) -> Json<Acknowledged> {
    Json(Acknowledged { message })
}

/// The limit the anonymous token routes share, for `client`.
fn limited(state: &AppState, client: std::net::IpAddr) -> Result<(), ApiError> {
    match state.actors.limits.email_tokens.check(client) {
        Some(wait) => Err(ApiError::throttled(wait)),
        None => Ok(()),
    }
}

/// Ask for a password-reset e-mail. Always 202 with the same body, answered
/// before the address is looked at, so neither the answer nor its timing
/// tells whether the address has an account. If it has, a single-use token
/// valid for `auth.reset_ttl` (30 min) is mailed to it — at most
/// `auth.account_mails.per_window` mails a window (more requests are
/// answered the same, and send nothing). Limited per client address
/// (`limits.email_tokens`).
#[utoipa::path(post, path = "/users/password/forgot", tag = "Auth", request_body = ForgotPassword, responses(
    (status = 202, description = "Accepted (whether or not the address has an account)", body = Acknowledged),
    (status = 400, description = "Malformed JSON or not an e-mail address", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many requests from this address (`limits.email_tokens`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Temporarily unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn forgot_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Valid(body): Valid<ForgotPassword>,
) -> Result<(StatusCode, Json<Acknowledged>), ApiError> {
    limited(&state, client)?;
    users(&state).recover(Recovery::Forgot(body.email)).await?;
    Ok((
        StatusCode::ACCEPTED,
        ack("if the address has an account, a reset e-mail is on its way"),
    ))
}

/// Set a new password with the token of a reset e-mail. The token works
/// once; every session of the account ends (refresh tokens at once, access
/// tokens within `auth.access_ttl`), and the owner is told by e-mail.
/// Used, expired, replayed, malformed or unknown tokens get one answer.
#[utoipa::path(post, path = "/users/password/reset", tag = "Auth", request_body = PasswordReset, responses(
    (status = 200, description = "The password is set; every session has ended", body = Acknowledged),
    (status = 400, description = "Malformed JSON; a token that is invalid, expired or already used (under `token`, one answer for all); or a new password too short, too long, common or containing the name or e-mail address (under `password`; the token stays usable)", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many requests from this address (`limits.email_tokens`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Temporarily unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn reset_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Valid(body): Valid<PasswordReset>,
) -> Result<Json<Acknowledged>, ApiError> {
    limited(&state, client)?;
    let (token, new) = (body.token, body.password);
    users(&state)
        .recover(Recovery::Reset { token, new })
        .await?;
    Ok(ack("password reset; every session has ended"))
}

/// Verify the account's e-mail address with the token of its verification
/// e-mail (the welcome e-mail, or a resend). The token works once; the
/// profile then shows `emailVerified: true`.
#[utoipa::path(post, path = "/users/email/verify", tag = "Auth", request_body = EmailVerification, responses(
    (status = 200, description = "The address is verified", body = Acknowledged),
    (status = 400, description = "Malformed JSON, or a token that is invalid, expired or already used (under `token`, one answer for all)", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "Too many requests from this address (`limits.email_tokens`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Temporarily unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn verify_email(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Valid(body): Valid<EmailVerification>,
) -> Result<Json<Acknowledged>, ApiError> {
    limited(&state, client)?;
    users(&state).recover(Recovery::Verify(body.token)).await?;
    Ok(ack("e-mail address verified"))
}

/// Mail the signed-in user a new verification token (valid for
/// `auth.verify_ttl`), at most `auth.account_mails.per_window` a window.
#[utoipa::path(post, path = "/users/email/verify/resend", tag = "Auth", security(("access-token" = [])), responses(
    (status = 202, description = "A verification e-mail is on its way", body = Acknowledged),
    (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "The user no longer exists", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "The address is verified already", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "This account's verification e-mails for the window are spent; see Retry-After", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "Temporarily unavailable", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all, fields(user = %user.0.sub))]
async fn resend_verification(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<(StatusCode, Json<Acknowledged>), ApiError> {
    users(&state).recover(Recovery::Resend(user.0)).await?;
    Ok((
        StatusCode::ACCEPTED,
        ack("a verification e-mail is on its way"),
    ))
}

/// The users capability.
fn users(state: &AppState) -> &Users {
    &state.actors.users
}
