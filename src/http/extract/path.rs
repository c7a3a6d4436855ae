//! [`PathId<T>`]: a resource id from the path, parsed before the handler runs.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::http::error::ApiError;

/// The one 400 for a malformed id: every id the API hands out is a MongoDB
/// ObjectId written as hex.
pub const MALFORMED_ID: &str = "the id must be 24 hexadecimal digits";

/// The route's single path parameter as a `T` (an ObjectId, or an id
/// newtype whose `FromStr` accepts the same 24 hex digits); anything else is
/// 400 [`MALFORMED_ID`] before the handler runs. Parsed straight from the
/// percent-decoded segment axum holds: no `String` in between.
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: FromStr + Send> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Fails on a segment that is not UTF-8 once percent-decoded, or that
        // does not parse.
        let Path(Parsed(id)) = Path::<Parsed<T>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest(MALFORMED_ID.into()))?;
        Ok(PathId(id))
    }
}

/// A `T` deserialised from a borrowed string by its `FromStr`.
struct Parsed<T>(T);

impl<'de, T: FromStr> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Segment<T>(PhantomData<T>);

        impl<T: FromStr> Visitor<'_> for Segment<T> {
            type Value = Parsed<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(MALFORMED_ID)
            }

            fn visit_str<E: de::Error>(self, raw: &str) -> Result<Parsed<T>, E> {
                raw.parse().map(Parsed).map_err(|_| E::custom(MALFORMED_ID))
            }
        }

        deserializer.deserialize_str(Segment(PhantomData))
    }
}

/// `raw` as a `T`, or the malformed-id 400.
pub fn parse_id<T: FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(MALFORMED_ID.into()))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;

    use super::*;

    #[test]
    fn an_object_id_is_24_hex_digits_of_either_case() {
        for raw in ["65f1c0ffee0000000000beef", "65F1C0FFEE0000000000BEEF"] {
            let id: ObjectId = parse_id(raw).unwrap();
            assert_eq!(id.to_hex(), "65f1c0ffee0000000000beef");
        }
    }

    #[tokio::test]
    async fn the_extractor_parses_the_decoded_segment_and_refuses_anything_else() {
        use axum::body::Body;
        use axum::http::Request;
        use axum::routing::get;
        use tower::ServiceExt;

        let app = axum::Router::new().route(
            "/x/{id}",
            get(|PathId(id): PathId<ObjectId>| async move { id.to_hex() }),
        );
        for (path, status) in [
            ("/x/65f1c0ffee0000000000beef", 200),
            ("/x/%36%35F1c0ffee0000000000beef", 200),
            ("/x/65f1c0ffee0000000000bee", 400),
            ("/x/65f1c0ffee0000000000beeg", 400),
            ("/x/%FF%FE%FD", 400),
        ] {
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{path}");
            if status == 200 {
                let body = axum::body::to_bytes(response.into_body(), 100)
                    .await
                    .unwrap();
                assert_eq!(&body[..], b"65f1c0ffee0000000000beef", "{path}");
            }
        }
    }

    #[test]
    fn anything_else_is_the_malformed_id_400() {
        for raw in [
            "",
            "not-an-id",
            "65f1c0ffee0000000000bee",
            "65f1c0ffee0000000000beef0",
            "65f1c0ffee0000000000beeg",
            " 65f1c0ffee0000000000beef",
        ] {
            let err = parse_id::<ObjectId>(raw).expect_err(raw);
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST, "{raw:?}");
            assert_eq!(err.to_string(), MALFORMED_ID, "{raw:?}");
        }
    }
}
