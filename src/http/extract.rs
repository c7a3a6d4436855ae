//! Request extractors whose rejections are problem+json.
//!
//! [`Valid<T>`] reads a JSON object and hands its fields to `T`'s [`FromJson`]
//! impl through [`Fields`], which collects *every* bad field (missing, unknown,
//! wrong type, failed rule) instead of stopping at the first, so a client can
//! fix its request in one go.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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
    let axum::Json(value) = axum::Json::<Value>::from_request(req, state)
        .await
        .map_err(|rejection| match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge
            }
            JsonRejection::JsonSyntaxError(r) => {
                ApiError::BadRequest(format!("malformed JSON body: {}", r.body_text()))
            }
            other => ApiError::BadRequest(other.body_text()),
        })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        )),
    }
}
