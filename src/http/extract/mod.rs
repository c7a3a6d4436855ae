//! Request extractors whose rejections are problem+json ([`ApiError`]):
//!
//! - [`Valid<T>`] ([`json`]): a JSON body, every bad field listed ([`ValidOrEmpty<T>`]: or none, read as `{}`);
//! - [`ValidQuery<T>`] ([`query`]): the query string, every bad parameter
//!   listed, `T` also describing the parameters in the OpenAPI document;
//! - [`PathId<T>`] ([`path`]): a resource id from the path.
//!
//! Credentials are extracted in [`super::auth`].
//!
//! [`ApiError`]: super::error::ApiError

pub mod json;
pub mod path;
pub mod query;

pub use json::{Fields, FromJson, Valid, ValidOrEmpty};
pub use path::PathId;
pub use query::{FromQuery, Params, ValidQuery};
