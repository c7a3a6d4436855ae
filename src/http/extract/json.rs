//! [`Valid<T>`]: a JSON request body, checked field by field.
//!
//! [`Valid<T>`] reads a JSON object and hands its fields to `T`'s [`FromJson`]
//! impl through [`Fields`], which collects *every* bad field (missing, unknown,
//! wrong type, failed rule) instead of stopping at the first, so a client can
//! fix its request in one go.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::http::error::{ApiError, FieldError};
use crate::http::middleware::BodyDeadline;

/// A request body type that can be built from a JSON object.
pub trait FromJson: Sized {
    /// Take the fields from `fields`, recording problems there. Return `None`
    /// when something was missing; [`Fields::finish`] reports why.
    fn from_json(fields: &mut Fields) -> Option<Self>;
}

/// A JSON object being taken apart field by field.
pub struct Fields {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    pub fn new(object: Map<String, Value>) -> Self {
        Self {
            object,
            errors: Vec::new(),
        }
    }

    /// Record a problem with `field`.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Record `message` for `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, message: &str) {
        if !ok {
            self.error(field, message);
        }
    }

    /// A field that must be present and not null.
    pub fn required<T: DeserializeOwned>(&mut self, field: &str, expected: &str) -> Option<T> {
        match self.object.remove(field) {
            None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            Some(value) => self.convert(field, value, expected),
        }
    }

    /// A field that may be absent or null.
    pub fn optional<T: DeserializeOwned>(&mut self, field: &str, expected: &str) -> Option<T> {
        match self.object.remove(field) {
            None | Some(Value::Null) => None,
            Some(value) => self.convert(field, value, expected),
        }
    }

    /// Whether a problem was recorded so far.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Like [`object`](Self::object), but absent or null is `None` (and
    /// `read` is not called).
    pub fn optional_object<T>(
        &mut self,
        field: &str,
        read: impl FnOnce(&mut Fields) -> Option<T>,
    ) -> Option<T> {
        match self.object.get(field) {
            None | Some(Value::Null) => {
                self.object.remove(field);
                None
            }
            Some(_) => self.object(field, read),
        }
    }

    /// An optional object field read field by field by `read`, as a body
    /// is: its problems (unknown keys too) are listed as `field.key`. Absent
    /// or null, `read` sees an empty object.
    pub fn object<T>(
        &mut self,
        field: &str,
        read: impl FnOnce(&mut Fields) -> Option<T>,
    ) -> Option<T> {
        let object = match self.object.remove(field) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(object)) => object,
            Some(_) => {
                self.error(field, "must be a JSON object");
                return None;
            }
        };
        let mut inner = Fields::new(object);
        let value = read(&mut inner);
        inner.report_unknown();
        for error in inner.errors {
            self.error(&format!("{field}.{}", error.field), error.message);
        }
        value
    }

    fn convert<T: DeserializeOwned>(
        &mut self,
        field: &str,
        value: Value,
        expected: &str,
    ) -> Option<T> {
        match serde_json::from_value(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(field, format!("must be {expected}"));
                None
            }
        }
    }

    /// Unknown fields are errors; then either the value or every problem found.
    pub fn finish<T>(mut self, value: Option<T>) -> Result<T, ApiError> {
        self.report_unknown();
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Validation(self.errors)),
        }
    }
}

impl Fields {
    /// Every field left unread is an error, in name order.
    fn report_unknown(&mut self) {
        let mut unknown: Vec<String> = self.object.keys().cloned().collect();
        unknown.sort();
        for field in unknown {
            self.error(&field, "is not a known field");
        }
    }
}

/// A validated JSON body.
pub struct Valid<T>(pub T);

impl<S: Send + Sync, T: FromJson> FromRequest<S> for Valid<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let object = json_object(req, state).await?;
        let mut fields = Fields::new(object);
        let value = T::from_json(&mut fields);
        fields.finish(value).map(Valid)
    }
}

/// Read the body as a JSON object, mapping each rejection to its status.
/// A validated JSON body that may be left out: a request with no body at
/// all (no `Content-Type`, no length or a length of 0, no chunked body) reads
/// as `{}`. For `DELETE`s, which clients often send without one.
pub struct ValidOrEmpty<T>(pub T);

impl<S: Send + Sync, T: FromJson> FromRequest<S> for ValidOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let object = if has_no_body(req.headers()) {
            Map::new()
        } else {
            json_object(req, state).await?
        };
        let mut fields = Fields::new(object);
        let value = T::from_json(&mut fields);
        fields.finish(value).map(ValidOrEmpty)
    }
}

/// Whether the request says it carries no body.
fn has_no_body(headers: &header::HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH);
    !headers.contains_key(header::CONTENT_TYPE)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && length.is_none_or(|l| l.as_bytes() == b"0")
}

async fn json_object<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Map<String, Value>, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(is_json) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // No deadline only where the router's body guard did not run (never in
    // the service; it stamps every request).
    let deadline = req.extensions().get::<BodyDeadline>().copied();
    let read = Bytes::from_request(req, state);
    let read = match deadline {
        Some(BodyDeadline(at)) => tokio::time::timeout_at(at, read)
            .await
            .map_err(|_| ApiError::RequestTimeout)?,
        None => read.await,
    };
    let bytes = read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    parse_object(&bytes)
}

/// `application/json` or any `application/…+json`, whatever its parameters.
fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or_default();
    let mime = mime.trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The body as a JSON object, refusing duplicate keys at any depth.
fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let Strict(value) = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        )),
    }
}

/// A JSON value that refuses duplicate object keys at any depth (serde_json
/// would silently keep the last one, so `{"age": 1, "age": 200}` could slip
/// past a check made on the first). Nesting depth is bounded by serde_json's
/// recursion limit (128).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {key:?}"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strict(text: &str) -> serde_json::Result<Value> {
        serde_json::from_str::<Strict>(text).map(|Strict(value)| value)
    }

    fn detail(err: ApiError) -> String {
        err.to_string()
    }

    #[test]
    fn a_duplicate_key_is_refused_at_the_top_level() {
        let err = strict(r#"{"age": 1, "age": 200}"#).unwrap_err().to_string();
        assert!(err.contains(r#"duplicate key "age""#), "{err}");
    }

    #[test]
    fn a_duplicate_key_is_refused_at_any_depth_and_inside_arrays() {
        for text in [
            r#"{"a": {"b": {"c": 1, "c": 2}}}"#,
            r#"{"list": [1, {"x": true, "x": false}]}"#,
            r#"[[{"k": null, "k": null}]]"#,
        ] {
            let err = strict(text).unwrap_err().to_string();
            assert!(err.contains("duplicate key"), "{text}: {err}");
        }
    }

    #[test]
    fn equal_keys_in_different_objects_are_fine() {
        let value =
            strict(r#"{"a": {"id": 1}, "b": {"id": 2}, "list": [{"id": 3}, {"id": 4}]}"#).unwrap();
        assert_eq!(
            value,
            json!({"a": {"id": 1}, "b": {"id": 2}, "list": [{"id": 3}, {"id": 4}]})
        );
    }

    #[test]
    fn every_value_keeps_its_json_type() {
        let text = r#"{"neg": -5, "big": 18446744073709551615, "ratio": 0.25, "exp": 1e3,
            "s": "x\u00e9", "t": true, "f": false, "n": null, "empty": [], "obj": {}}"#;
        let value = strict(text).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(text).unwrap());
        assert_eq!(value["neg"].as_i64(), Some(-5));
        assert_eq!(value["big"].as_u64(), Some(u64::MAX));
        assert_eq!(value["ratio"].as_f64(), Some(0.25));
        assert_eq!(value["exp"].as_f64(), Some(1000.0));
        assert_eq!(value["s"], "xé");
    }

    #[test]
    fn nesting_past_the_recursion_limit_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(strict(&deep)
            .unwrap_err()
            .to_string()
            .contains("recursion limit"));
    }

    #[test]
    fn only_a_json_object_is_a_body() {
        assert!(parse_object(br#"{"a": 1}"#).is_ok());
        for text in ["[]", "1", "\"s\"", "null"] {
            let err = detail(parse_object(text.as_bytes()).unwrap_err());
            assert_eq!(err, "the request body must be a JSON object", "{text}");
        }
        let err = detail(parse_object(b"{\"a\": ").unwrap_err());
        assert!(err.starts_with("malformed JSON body"), "{err}");
    }

    #[test]
    fn only_a_request_without_type_length_or_chunks_has_no_body() {
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut map = header::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(name.clone(), value.parse().unwrap());
            }
            map
        };
        assert!(has_no_body(&headers(&[])));
        assert!(has_no_body(&headers(&[(header::CONTENT_LENGTH, "0")])));
        assert!(!has_no_body(&headers(&[(header::CONTENT_LENGTH, "2")])));
        assert!(!has_no_body(&headers(&[(
            header::CONTENT_TYPE,
            "application/json"
        )])));
        assert!(!has_no_body(&headers(&[(
            header::TRANSFER_ENCODING,
            "chunked"
        )])));
    }

    #[test]
    fn json_media_types_are_recognised_whatever_their_parameters() {
        for accepted in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;x=y",
            "application/problem+json",
            "application/merge-patch+json",
        ] {
            assert!(is_json(accepted), "{accepted}");
        }
        for refused in [
            "text/plain",
            "text/json",
            "application/jsonx",
            "application/xml",
            "",
        ] {
            assert!(!is_json(refused), "{refused}");
        }
    }

    /// A body type with one required, one optional and one checked field.
    #[derive(Debug, PartialEq)]
    struct Signup {
        name: String,
        age: Option<u8>,
    }

    impl FromJson for Signup {
        fn from_json(f: &mut Fields) -> Option<Self> {
            let name: Option<String> = f.required("name", "a string");
            let age: Option<u8> = f.optional("age", "an integer from 0 to 255");
            if let Some(name) = &name {
                f.check(!name.is_empty(), "name", "must not be empty");
            }
            Some(Self { name: name?, age })
        }
    }

    fn from_json(value: Value) -> Result<Signup, Vec<FieldError>> {
        let Value::Object(object) = value else {
            panic!("not an object")
        };
        let mut fields = Fields::new(object);
        let value = Signup::from_json(&mut fields);
        fields.finish(value).map_err(|err| match err {
            ApiError::Validation(errors) => errors,
            other => panic!("not a validation error: {other}"),
        })
    }

    #[test]
    fn fields_build_the_value_when_all_is_well() {
        assert_eq!(
            from_json(json!({"name": "N", "age": null})),
            Ok(Signup {
                name: "N".into(),
                age: None
            })
        );
        assert_eq!(
            from_json(json!({"name": "N", "age": 7})).unwrap().age,
            Some(7)
        );
    }

    #[test]
    fn fields_list_every_problem_with_unknown_fields_sorted_last() {
        let errors = from_json(json!({"age": 300, "zeta": 1, "alpha": 2})).unwrap_err();
        assert_eq!(
            errors,
            [
                FieldError::new("name", "is required"),
                FieldError::new("age", "must be an integer from 0 to 255"),
                FieldError::new("alpha", "is not a known field"),
                FieldError::new("zeta", "is not a known field"),
            ]
        );
    }

    #[test]
    fn a_null_required_field_is_missing_and_a_failed_rule_is_listed() {
        assert_eq!(
            from_json(json!({"name": null})).unwrap_err(),
            [FieldError::new("name", "is required")]
        );
        assert_eq!(
            from_json(json!({"name": ""})).unwrap_err(),
            [FieldError::new("name", "must not be empty")]
        );
    }

    /// A body with a nested object: its problems are named by their path.
    #[derive(Debug, PartialEq)]
    struct Search {
        limit: Option<u8>,
        name: Option<String>,
    }

    impl FromJson for Search {
        fn from_json(f: &mut Fields) -> Option<Self> {
            let limit = f.optional("limit", "an integer");
            let name = f.object("filter", |inner| {
                let name: Option<String> = inner.optional("name", "a string");
                Some(name)
            });
            Some(Self { limit, name: name? })
        }
    }

    fn search(value: Value) -> Result<Search, Vec<FieldError>> {
        let Value::Object(object) = value else {
            panic!("not an object")
        };
        let mut fields = Fields::new(object);
        let value = Search::from_json(&mut fields);
        fields.finish(value).map_err(|err| match err {
            ApiError::Validation(errors) => errors,
            other => panic!("not a validation error: {other}"),
        })
    }

    #[test]
    fn a_nested_object_is_read_like_a_body_and_its_problems_carry_their_path() {
        assert_eq!(
            search(json!({"filter": {"name": "n"}})),
            Ok(Search {
                limit: None,
                name: Some("n".into())
            })
        );
        assert_eq!(search(json!({})).unwrap().name, None, "absent: empty");
        assert_eq!(
            search(json!({"limit": "x", "filter": {"name": 1, "nmae": "n"}})).unwrap_err(),
            [
                FieldError::new("limit", "must be an integer"),
                FieldError::new("filter.name", "must be a string"),
                FieldError::new("filter.nmae", "is not a known field"),
            ]
        );
        assert_eq!(
            search(json!({"filter": [1]})).unwrap_err(),
            [FieldError::new("filter", "must be a JSON object")]
        );
    }
}
