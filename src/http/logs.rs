//! `GET /logs`: one day's log file of one category (ops token).
//!
//! The category must be one of the known ones and the date a real calendar
//! date; the file name is built from those two validated values only, so no
//! request can name a path outside `LOG_DIR`. The file is streamed with
//! tokio's file I/O (on the blocking pool, never an async worker thread), and
//! `tail` is found by reading backwards from the end ([`super::log_tail`]), so
//! a request holds one block in memory whatever the file's size. `traceId`
//! keeps only the lines written inside that trace ([`super::log_trace`]),
//! picked as the file streams.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::NaiveDate;
use tokio::io::{AsyncReadExt, AsyncSeekExt, BufReader};
use tokio_util::io::ReaderStream;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::error::{ApiError, Problem};
use super::extract::{FromQuery, Params, ValidQuery};
use super::{log_tail, log_trace};
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
pub struct LogParams {
    /// `system`, `requests`, `cache`, `worker`, `auth` or `user`.
    #[param(rename = "type", value_type = String)]
    category: &'static str,
    /// `YYYY-MM-DD` (UTC).
    #[param(value_type = String)]
    date: NaiveDate,
    /// Only the last N lines (1 to 10,000).
    tail: Option<usize>,
    /// Only the lines written inside this trace (of the last `tail` lines
    /// when both are given): its trace id, 32 lower-case hex digits, as
    /// `traceresponse` and a job's `traceId` show it.
    #[param(rename = "traceId", value_type = Option<String>, example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    trace_id: Option<String>,
}

impl FromQuery for LogParams {
    fn from_query(q: &mut Params) -> Option<Self> {
        let category = q.required("type", |value| {
            CATEGORIES
                .iter()
                .find(|c| **c == value)
                .copied()
                .ok_or_else(|| format!("must be one of {}", CATEGORIES.join(", ")))
        });
        let date = q.required("date", parse_date);
        let tail = q.optional("tail", |value| {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_TAIL).contains(n))
                .ok_or("must be an integer from 1 to 10000")
        });
        let trace_id = q.optional("traceId", |value| {
            log_trace::is_trace_id(value)
                .then(|| value.to_owned())
                .ok_or("must be a trace id: 32 lower-case hex digits, not all zero")
        });
        Some(Self {
            category: category?,
            date: date?,
            tail,
            trace_id,
        })
    }
}

/// A real calendar date written in full (`2026-2-3` is refused: the file
/// name is built from it).
fn parse_date(value: &str) -> Result<NaiveDate, &'static str> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or("must be a real date, YYYY-MM-DD")
}

/// That day's log file for the category, as text (optionally its last
/// lines, optionally only one trace's lines).
#[utoipa::path(get, path = "/logs", tag = "Logs", security(("ops-token" = [])), params(LogParams), responses(
    (status = 200, description = "The log file", content_type = "text/plain", body = String),
    (status = 400, description = "Unknown category, bad date, tail or trace id", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "Missing or wrong ops token", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "No log file for that day", body = Problem, content_type = "application/problem+json"),
))]
#[tracing::instrument(skip_all)]
async fn logs(
    State(state): State<AppState>,
    _operator: Operator,
    ValidQuery(query): ValidQuery<LogParams>,
) -> Result<impl IntoResponse, ApiError> {
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
    let file = file.take(len - start);
    let body = match &query.trace_id {
        Some(trace_id) => Body::from_stream(log_trace::trace_lines(
            BufReader::with_capacity(log_tail::BLOCK, file),
            trace_id,
        )),
        None => Body::from_stream(ReaderStream::with_capacity(file, log_tail::BLOCK)),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body))
}

fn unreadable(path: &std::path::Path, err: std::io::Error) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("reading {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::FieldError;
    use crate::http::extract::query::parse_query;

    fn errors(query: &str) -> Vec<FieldError> {
        match parse_query::<LogParams>(query) {
            Err(ApiError::InvalidQuery(errors)) => errors,
            Err(other) => panic!("{query}: {other}"),
            Ok(_) => panic!("{query}: accepted"),
        }
    }

    #[test]
    fn a_category_a_date_and_a_tail_are_parsed() {
        let params = parse_query::<LogParams>("type=auth&date=2026-11-29&tail=10000").unwrap();
        assert_eq!(params.trace_id, None);
        assert_eq!(params.category, "auth");
        assert_eq!(params.date, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
        assert_eq!(params.tail, Some(10_000));
    }

    #[test]
    fn only_known_categories_and_real_full_dates_can_name_a_file() {
        for (query, field) in [
            ("type=../../etc/passwd&date=2026-11-29", "type"),
            ("type=secrets&date=2026-11-29", "type"),
            ("type=requests&date=2026-02-30", "date"),
            ("type=requests&date=2026-2-3", "date"),
            ("type=requests&date=../../x", "date"),
            ("type=requests&date=+2026-11-29", "date"),
        ] {
            let errors = errors(query);
            assert_eq!(errors.len(), 1, "{query}: {errors:?}");
            assert_eq!(errors[0].field, field, "{query}");
        }
    }

    #[test]
    fn a_trace_id_is_32_lower_case_hex_digits() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let params = parse_query::<LogParams>(&format!("type=user&date=2026-11-29&traceId={id}"));
        assert_eq!(params.unwrap().trace_id.as_deref(), Some(id));
        for bad in [
            "",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "x",
            "../../etc/passwd",
        ] {
            let errors = errors(&format!("type=user&date=2026-11-29&traceId={bad}"));
            assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
            assert_eq!(errors[0].field, "traceId", "{bad:?}");
        }
    }

    #[test]
    fn tail_is_bounded_and_type_and_date_are_required() {
        for tail in ["0", "10001", "-1", "x", ""] {
            let errors = errors(&format!("type=user&date=2026-11-29&tail={tail}"));
            assert_eq!(
                errors,
                [FieldError::new(
                    "tail",
                    "must be an integer from 1 to 10000"
                )]
            );
        }
        assert_eq!(
            errors("extra=1"),
            [
                FieldError::new("date", "is required"),
                FieldError::new("extra", "is not a known parameter"),
                FieldError::new("type", "is required"),
            ]
        );
    }
}
