//! [`ClientAddr`]: the address a request comes from, for rate limits and the
//! login throttle, found by walking the trusted proxies' forwarding header
//! ([`crate::proxies`] has the model and the walk).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::proxies::{client_address, ProxySettings};

/// The client's address (IPv4-mapped IPv6 addresses as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: ProxySettings + Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "the request has no peer address (serve with connect info)"
                ))
            })?;
        Ok(Self(client_address(
            peer,
            &parts.headers,
            state.trusted_proxies(),
            state.proxy_header(),
        )))
    }
}
