//! [`ValidQuery<T>`]: the query string, checked parameter by parameter.
//!
//! One rule set for every query: a parameter given twice, an unknown
//! parameter, a missing required one and a value its parser refuses are each
//! an error, and *every* error is listed (sorted by parameter name), answered
//! as [`ApiError::InvalidQuery`]. A repeated parameter is refused rather than
//! resolved (first or last wins) because a check made on one copy must not be
//! bypassed by another: the JSON side refuses duplicate keys for the same
//! reason.
//!
//! `T` is the very struct the handler gets *and* the one the OpenAPI document
//! lists (`#[derive(IntoParams)]`, named in `#[utoipa::path(params(T))]`), so
//! the document cannot describe parameters that are not parsed.
//!
//! Hand-written rather than serde (`serde_html_form`, `serde_qs` with
//! `deny_unknown_fields`): a deserializer stops at the first error, and a
//! client is owed the whole list at once, as [`super::Valid`] gives for bodies.

use std::collections::BTreeMap;
use std::fmt::Display;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use utoipa::IntoParams;

use crate::http::error::{ApiError, FieldError};

/// A query-parameter type that can be built from a query string.
pub trait FromQuery: Sized {
    /// Take the parameters from `params`, recording problems there. Return
    /// `None` when something was missing; [`Params::finish`] reports why.
    fn from_query(params: &mut Params) -> Option<Self>;
}

/// A query string being taken apart parameter by parameter.
pub struct Params {
    /// Each parameter's value, `None` once it was given more than once.
    values: BTreeMap<String, Option<String>>,
    errors: Vec<FieldError>,
}

impl Params {
    /// Split and percent-decode `query` (without its `?`), recording each
    /// repeated parameter once.
    pub fn parse(query: &str) -> Self {
        let mut params = Self {
            values: BTreeMap::new(),
            errors: Vec::new(),
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match params.values.get_mut(name.as_ref()) {
                None => {
                    params
                        .values
                        .insert(name.into_owned(), Some(value.into_owned()));
                }
                Some(slot @ Some(_)) => {
                    *slot = None;
                    params.error(&name, "is given more than once");
                }
                Some(None) => {}
            }
        }
        params
    }

    /// Record a problem with parameter `name`.
    pub fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    /// A parameter that must be given: `parse` turns its value into a `T` or
    /// says what is wrong with it.
    pub fn required<T, E: Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        if !self.values.contains_key(name) {
            self.error(name, "is required");
            return None;
        }
        self.optional(name, parse)
    }

    /// A parameter that may be left out.
    pub fn optional<T, E: Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        // A repeated parameter was reported when it was found.
        let value = self.values.remove(name)??;
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                self.error(name, problem.to_string());
                None
            }
        }
    }

    /// Parameters nobody took are unknown; then either the value or every
    /// problem found, by parameter name.
    pub fn finish<T>(mut self, value: Option<T>) -> Result<T, ApiError> {
        let unknown: Vec<String> = std::mem::take(&mut self.values).into_keys().collect();
        for name in unknown {
            self.error(&name, "is not a known parameter");
        }
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => {
                // Stable: a parameter's own problems keep their order.
                self.errors.sort_by(|a, b| a.field.cmp(&b.field));
                Err(ApiError::InvalidQuery(self.errors))
            }
        }
    }
}

/// Parse `query` (without its `?`) as a `T`.
pub fn parse_query<T: FromQuery>(query: &str) -> Result<T, ApiError> {
    let mut params = Params::parse(query);
    let value = T::from_query(&mut params);
    params.finish(value)
}

/// Validated query parameters. `T` is also the document's description of
/// them ([`IntoParams`]), so the two cannot drift apart.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: FromQuery + IntoParams> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ValidQuery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One required parameter, one optional with a range, one free text.
    #[derive(Debug, PartialEq)]
    struct Search {
        kind: String,
        limit: Option<u32>,
        text: Option<String>,
    }

    impl FromQuery for Search {
        fn from_query(q: &mut Params) -> Option<Self> {
            let kind = q.required("type", |v| match v {
                "a" | "b" => Ok(v.to_owned()),
                _ => Err("must be a or b"),
            });
            let limit = q.optional("limit", |v| {
                v.parse()
                    .ok()
                    .filter(|n| (1..=10).contains(n))
                    .ok_or("must be an integer from 1 to 10")
            });
            let text = q.optional("text", |v| Ok::<_, &str>(v.to_owned()));
            Some(Self {
                kind: kind?,
                limit,
                text,
            })
        }
    }

    fn search(query: &str) -> Result<Search, Vec<FieldError>> {
        parse_query(query).map_err(|err| match err {
            ApiError::InvalidQuery(errors) => errors,
            other => panic!("not a query error: {other}"),
        })
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_valid_query_is_parsed_and_percent_decoded() {
        assert_eq!(
            search("type=a&limit=3&text=two+words%2C%20%C3%A9"),
            Ok(Search {
                kind: "a".into(),
                limit: Some(3),
                text: Some("two words, é".into()),
            })
        );
        assert_eq!(search("type=b").unwrap().limit, None);
    }

    #[test]
    fn a_missing_required_parameter_is_named() {
        assert_eq!(
            search("").unwrap_err(),
            [FieldError::new("type", "is required")]
        );
    }

    #[test]
    fn a_parameter_given_twice_is_refused_once_even_if_both_values_are_valid() {
        assert_eq!(
            search("type=a&limit=1&limit=2&limit=3").unwrap_err(),
            [FieldError::new("limit", "is given more than once")]
        );
        // Not also "is required": it was given, twice.
        assert_eq!(
            search("type=a&type=a").unwrap_err(),
            [FieldError::new("type", "is given more than once")]
        );
        // Percent-encoding does not make a name a different one.
        assert_eq!(
            fields(&search("type=a&%6Cimit=1&limit=2").unwrap_err()),
            ["limit"]
        );
    }

    #[test]
    fn unknown_parameters_are_refused_by_name() {
        assert_eq!(
            search("type=a&path=/etc/passwd&=x").unwrap_err(),
            [
                FieldError::new("", "is not a known parameter"),
                FieldError::new("path", "is not a known parameter"),
            ]
        );
    }

    #[test]
    fn every_problem_is_listed_sorted_by_name() {
        let errors = search("zeta=1&limit=0&extra&extra&type=c").unwrap_err();
        assert_eq!(
            errors,
            [
                FieldError::new("extra", "is given more than once"),
                FieldError::new("extra", "is not a known parameter"),
                FieldError::new("limit", "must be an integer from 1 to 10"),
                FieldError::new("type", "must be a or b"),
                FieldError::new("zeta", "is not a known parameter"),
            ]
        );
    }

    #[test]
    fn the_rejection_says_the_query_string_is_invalid() {
        let err = parse_query::<Search>("limit=x").unwrap_err();
        assert_eq!(err.to_string(), "the query string has invalid parameters");
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn empty_pairs_are_ignored_and_an_empty_value_is_parsed_as_given() {
        assert_eq!(search("&&type=a&&").unwrap().kind, "a");
        assert_eq!(
            search("type=").unwrap_err(),
            [FieldError::new("type", "must be a or b")]
        );
    }
}
