//! Request extractors whose rejections are problem+json.
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

use super::body::BodyDeadline;
use super::error::{ApiError, FieldError};

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
        let mut unknown: Vec<String> = self.object.keys().cloned().collect();
        unknown.sort();
        for field in unknown {
            self.error(&field, "is not a known field");
        }
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Validation(self.errors)),
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
async fn json_object<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Map<String, Value>, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
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
    let Strict(value) = serde_json::from_slice(&bytes)
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
