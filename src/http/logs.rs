//! `GET /logs`: one day's log file of one category (ops token).
//!
//! The category must be one of the known ones and the date a real calendar
//! date; the file name is built from those two validated values only, so no
//! request can name a path outside `LOG_DIR`. The file is streamed with
//! tokio's file I/O (on the blocking pool, never an async worker thread), and
//! `tail` is found by reading backwards from the end ([`super::log_tail`]), so
//! a request holds one block in memory whatever the file's size.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use chrono::NaiveDate;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::error::{ApiError, FieldError, Problem};
use super::log_tail;
use crate::state::AppState;
use crate::telemetry::{log_file_name, CATEGORIES};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(logs))
}

/// Longest `tail` accepted.
const MAX_TAIL: usize = 10_000;

/// Query parameters of `GET /logs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LogParams {
    /// `system`, `requests`, `cache`, `worker`, `auth` or `user`.
    #[param(rename = "type")]
    kind: String,
    /// `YYYY-MM-DD` (UTC).
    date: String,
    /// Only the last N lines (1 to 10,000).
    tail: Option<usize>,
}

struct LogQuery {
    category: &'static str,
    date: NaiveDate,
    tail: Option<usize>,
}

fn parse(raw: Option<String>) -> Result<LogQuery, ApiError> {
    let (mut category, mut date, mut tail, mut errors) = (None, None, None, Vec::new());
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "type" => match CATEGORIES.iter().find(|c| **c == value) {
                Some(c) => category = Some(*c),
                None => errors.push(FieldError::new(
                    "type",
                    format!("must be one of {}", CATEGORIES.join(", ")),
                )),
            },
            "date" => match NaiveDate::parse_from_str(&value, "%Y-%m-%d") {
                Ok(d) if value.len() == 10 => date = Some(d),
                _ => errors.push(FieldError::new("date", "must be a real date, YYYY-MM-DD")),
            },
            "tail" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_TAIL).contains(&n) => tail = Some(n),
                _ => errors.push(FieldError::new(
                    "tail",
                    "must be an integer from 1 to 10000",
                )),
            },
            other => errors.push(FieldError::new(other, "is not a known parameter")),
        }
    }
    if category.is_none() && !errors.iter().any(|e| e.field == "type") {
        errors.push(FieldError::new("type", "is required"));
    }
    if date.is_none() && !errors.iter().any(|e| e.field == "date") {
        errors.push(FieldError::new("date", "is required"));
    }
    match (category, date) {
        (Some(category), Some(date)) if errors.is_empty() => Ok(LogQuery {
            category,
            date,
            tail,
        }),
        _ => Err(ApiError::InvalidQuery(errors)),
    }
}

/// That day's log file for the category, as text (optionally its last lines).
#[utoipa::path(get, path = "/logs", tag = "Logs", security(("ops-token" = [])), params(LogParams), responses(
    (status = 200, description = "The log file", content_type = "text/plain", body = String),
    (status = 400, description = "Unknown category, bad date or tail", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No log file for that day", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn logs(
    State(state): State<AppState>,
    _operator: Operator,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let query = parse(raw)?;
    let date = query.date.format("%Y-%m-%d").to_string();
    let path = state
        .settings
        .log
        .dir
        .join(log_file_name(query.category, &date));
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!(
                "no {} log for {date}",
                query.category
            )))
        }
        Err(err) => return Err(unreadable(&path, err)),
    };
    // The length now: lines written while the response streams are left for
    // the next request, so the answer is the file as it was, and ends.
    let len = file
        .metadata()
        .await
        .map_err(|err| unreadable(&path, err))?
        .len();
    let start = match query.tail {
        Some(lines) => log_tail::tail_start(&mut file, len, lines, log_tail::BLOCK)
            .await
            .map_err(|err| unreadable(&path, err))?,
        None => 0,
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|err| unreadable(&path, err))?;
    let body = Body::from_stream(ReaderStream::with_capacity(
        file.take(len - start),
        log_tail::BLOCK,
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body))
}

fn unreadable(path: &std::path::Path, err: std::io::Error) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("reading {}: {err}", path.display()))
}
