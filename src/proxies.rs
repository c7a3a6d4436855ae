//! Who the client is behind reverse proxies: the trusted proxies
//! (`server.trusted_proxies`), the header they write (`server.proxy_header`)
//! and the walk of that header that finds the client's address. A model
//! below both the settings (which name these types) and the HTTP layer
//! (whose [`ClientAddr`](crate::http::client_addr::ClientAddr) extractor
//! runs the walk for each request).
//!
//! The TCP peer is the client unless it is one of `server.trusted_proxies`.
//! Only then is the forwarding header read (`server.proxy_header`:
//! `X-Forwarded-For`, or RFC 7239 `Forwarded`'s `for=`), walking its hops
//! from the right — each proxy appends the address it received the request
//! from — and skipping trusted proxies: the first untrusted address is the
//! client. Everything left of it was written by the client and is ignored,
//! so a forged header changes nothing; from an untrusted peer the header is
//! not read at all. An unparsable hop (garbage, `unknown`, an obfuscated
//! identifier) ends the walk at the last address known: the nearest proxy.
//!
//! Only one header is read, the one the proxy is configured to write: were
//! both read, a client could forge the other one past a proxy that only
//! appends to its own.
//!
//! (`axum-client-ip` only takes the rightmost address, i.e. assumes exactly
//! one proxy; walking several trusted hops needs the CIDR list, hence this.)

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// What the client-address walk needs from the application's state: which
/// peers may speak for a client, and in which header. (A trait rather than
/// the state itself, so the settings that name these types need not know
/// the state.)
pub trait ProxySettings {
    fn trusted_proxies(&self) -> &TrustedProxies;
    fn proxy_header(&self) -> ProxyHeader;
}

/// Which forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:443"`.
    Forwarded,
}

impl ProxyHeader {
    fn name(self) -> HeaderName {
        match self {
            Self::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            Self::Forwarded => HeaderName::from_static("forwarded"),
        }
    }
}

/// `server.trusted_proxies`: networks (CIDR) or single addresses of the
/// reverse proxies whose forwarding headers are believed. In TOML a list;
/// from the environment a comma-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// An entry of `server.trusted_proxies` that is neither a network nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR network or an IP address")]
pub struct NotANetwork(String);

impl FromStr for TrustedProxies {
    type Err = NotANetwork;

    /// `"10.0.0.0/8, 2001:db8::/32, 192.0.2.7"`; an empty string is no proxy.
    fn from_str(s: &str) -> Result<Self, NotANetwork> {
        s.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_network)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// `10.0.0.0/8`, or one address (`192.0.2.7` is `192.0.2.7/32`).
fn parse_network(entry: &str) -> Result<IpNet, NotANetwork> {
    let parsed = if entry.contains('/') {
        entry.parse::<IpNet>().ok()
    } else {
        entry.parse::<IpAddr>().ok().map(IpNet::from)
    };
    parsed.ok_or_else(|| NotANetwork(entry.to_owned()))
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Joined(String),
        }
        let joined = match Raw::deserialize(deserializer)? {
            Raw::List(entries) => entries.join(","),
            Raw::Joined(joined) => joined,
        };
        joined.parse().map_err(serde::de::Error::custom)
    }
}

/// The client address of a request from `peer` with `headers`.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    header: ProxyHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    // Header lines in order, each line's hops in order: one list, leftmost
    // (the farthest hop) first. Lines are read as bytes: a byte that is not
    // ASCII spoils the hop it is in, never a proxy's hop beside it.
    let lines = headers.get_all(header.name());
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    for line in &lines {
        let line = line.as_bytes();
        match header {
            ProxyHeader::XForwardedFor => {
                hops.extend(line.split(|&b| b == b',').map(parse_node_bytes));
            }
            ProxyHeader::Forwarded => hops.extend(forwarded_for(line)),
        }
    }
    walk_from_the_right(peer, &hops, trusted)
}

/// The first untrusted hop from the right; at an unparsable hop, the last
/// address walked (a trusted proxy); if every hop is trusted, the leftmost.
fn walk_from_the_right(peer: IpAddr, hops: &[Option<IpAddr>], trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = *hop else {
            return client;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// [`parse_node`] of bytes that must be ASCII.
fn parse_node_bytes(node: &[u8]) -> Option<IpAddr> {
    parse_node(std::str::from_utf8(node).ok().filter(|s| s.is_ascii())?)
}

/// One node of a forwarding header: `192.0.2.7`, `192.0.2.7:4711`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`, with surrounding
/// spaces. Anything else (`unknown`, `_hidden`, garbage) is `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let ip = if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || is_port(after.strip_prefix(':')?)) {
            return None;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = node.parse::<IpAddr>() {
        ip
    } else {
        // IPv4 with a port (a bare IPv6 address has more than one colon).
        let (host, port) = node.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok()
}

/// The `for=` node of each element of a `Forwarded` line, in order; `None`
/// for an element without a usable one.
///
/// The line is split **from the right**: a proxy appends its element after
/// whatever the client wrote, and a right-to-left scan's state at any byte
/// depends only on the bytes right of it. So the proxy's well-formed element
/// is read the same whatever precedes it: a quote the client left open
/// (`for=203.0.113.9;x="`) spoils the client's own element, never swallows
/// the proxy's `, for=<client>`. (Read left to right, that quote would.)
fn forwarded_for(line: &[u8]) -> Vec<Option<IpAddr>> {
    let mut elements: Vec<Option<IpAddr>> = split_from_the_right(line, b',')
        .into_iter()
        .map(|element| {
            split_from_the_right(element, b';')
                .into_iter()
                .find_map(|pair| {
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    let (name, value) = (&pair[..eq], &pair[eq + 1..]);
                    name.trim_ascii()
                        .eq_ignore_ascii_case(b"for")
                        .then(|| unquote(value.trim_ascii()).and_then(|v| parse_node(&v)))
                })
                .flatten()
        })
        .collect();
    elements.reverse();
    elements
}

/// `s` split at `separator` outside double-quoted strings (RFC 9110
/// quoted-string, with backslash escapes), scanning from the right: the
/// parts come rightmost first. A `"` closes a quoted string (read from the
/// right: opens its left end) unless an odd run of backslashes precedes
/// it; outside quotes a backslash is an ordinary byte.
fn split_from_the_right(s: &[u8], separator: u8) -> Vec<&[u8]> {
    let (mut parts, mut end) = (Vec::new(), s.len());
    let mut quoted = false;
    for i in (0..s.len()).rev() {
        match s[i] {
            b'"' if !quoted => quoted = true,
            b'"' => {
                let backslashes = s[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                if backslashes % 2 == 0 {
                    quoted = false;
                }
            }
            b if b == separator && !quoted => {
                parts.push(&s[i + 1..end]);
                end = i;
            }
            _ => {}
        }
    }
    parts.push(&s[..end]);
    parts
}

/// A token as it is, or a quoted-string's content unescaped; `None` for an
/// unterminated quote or a byte that is not ASCII.
fn unquote(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok().filter(|s| s.is_ascii())?;
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    /// The client of a request from `peer` carrying `lines` of `header`.
    fn client(peer: &str, trusted: &str, header: ProxyHeader, lines: &[&str]) -> IpAddr {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header.name(), HeaderValue::from_str(line).unwrap());
        }
        client_address(ip(peer), &headers, &proxies(trusted), header)
    }

    fn xff(peer: &str, trusted: &str, lines: &[&str]) -> IpAddr {
        client(peer, trusted, ProxyHeader::XForwardedFor, lines)
    }

    fn fwd(peer: &str, trusted: &str, lines: &[&str]) -> IpAddr {
        client(peer, trusted, ProxyHeader::Forwarded, lines)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(xff("198.51.100.9", "", &["1.2.3.4"]), ip("198.51.100.9"));
        assert_eq!(
            xff("198.51.100.9", "10.0.0.0/8", &["10.0.0.1, 1.2.3.4"]),
            ip("198.51.100.9")
        );
        assert_eq!(
            fwd("198.51.100.9", "", &["for=1.2.3.4"]),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
        assert_eq!(
            xff("10.0.0.2", "10.0.0.0/8", &["203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            fwd("10.0.0.2", "10.0.0.0/8", &["for=203.0.113.7"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right_and_forged_hops_left_of_the_client_ignored() {
        // The client forged "6.6.6.6"; the outer proxy appended the client's
        // real address, the inner proxy the outer proxy's.
        let line = "6.6.6.6, 203.0.113.7, 10.0.0.5";
        assert_eq!(xff("10.0.0.2", "10.0.0.0/8", &[line]), ip("203.0.113.7"));
        // The same hops over several header lines.
        assert_eq!(
            xff(
                "10.0.0.2",
                "10.0.0.0/8",
                &["6.6.6.6", "203.0.113.7", "10.0.0.5"]
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            fwd(
                "10.0.0.2",
                "10.0.0.0/8",
                &["for=6.6.6.6, for=203.0.113.7;proto=https, for=10.0.0.5"]
            ),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_forged_trusted_looking_hop_does_not_reach_further_left() {
        // The client wrote "10.9.9.9, 6.6.6.6": the walk stops at the real
        // client (203.0.113.7), never reaching the forged hops.
        assert_eq!(
            xff(
                "10.0.0.2",
                "10.0.0.0/8",
                &["6.6.6.6, 10.9.9.9, 203.0.113.7"]
            ),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        assert_eq!(
            xff("10.0.0.2", "10.0.0.0/8", &["10.1.1.1, 10.0.0.5"]),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn no_header_from_a_trusted_proxy_leaves_the_proxy_as_the_client() {
        assert_eq!(xff("10.0.0.2", "10.0.0.0/8", &[]), ip("10.0.0.2"));
    }

    #[test]
    fn ports_are_dropped() {
        assert_eq!(
            xff("10.0.0.2", "10.0.0.0/8", &["203.0.113.7:51234"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            xff("10.0.0.2", "10.0.0.0/8", &["[2001:db8::7]:443"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            fwd("10.0.0.2", "10.0.0.0/8", &[r#"for="203.0.113.7:4711""#]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn ipv6_clients_and_proxies() {
        assert_eq!(
            xff(
                "2001:db8:ffff::1",
                "2001:db8:ffff::/48",
                &["2001:db8:1:2::7"]
            ),
            ip("2001:db8:1:2::7")
        );
        assert_eq!(
            fwd(
                "10.0.0.2",
                "10.0.0.0/8",
                &[r#"For="[2001:db8:cafe::17]:4711""#]
            ),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            fwd("10.0.0.2", "10.0.0.0/8", &[r#"for="[2001:db8:cafe::17]""#]),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        assert_eq!(
            xff("::ffff:10.0.0.2", "10.0.0.0/8", &["::ffff:203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(xff("::ffff:198.51.100.9", "", &[]), ip("198.51.100.9"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_nearest_known_address() {
        for line in [
            "garbage",
            "",
            "unknown",
            "203.0.113.7, not-an-ip",
            "1.2.3.4:99999999",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "1.2.3.4:",
            "1.2.3.4:-1",
            "999.1.1.1",
        ] {
            assert_eq!(
                xff("10.0.0.2", "10.0.0.0/8", &[line]),
                ip("10.0.0.2"),
                "{line:?}"
            );
        }
        // Garbage left of the client is never reached.
        assert_eq!(
            xff("10.0.0.2", "10.0.0.0/8", &["garbage, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Behind two proxies: garbage from the outer one stops at it.
        assert_eq!(
            xff("10.0.0.2", "10.0.0.0/8", &["junk, 10.0.0.5"]),
            ip("10.0.0.5")
        );
        for line in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            r#"for="203.0.113.7"#,
            "for=",
            "garbage",
            r#"for="[2001:db8::1]:x""#,
        ] {
            assert_eq!(
                fwd("10.0.0.2", "10.0.0.0/8", &[line]),
                ip("10.0.0.2"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn quoted_commas_and_semicolons_do_not_split_forwarded_elements() {
        assert_eq!(
            fwd(
                "10.0.0.2",
                "10.0.0.0/8",
                &[r#"for="x,y;z", for=203.0.113.7;by="a,b";proto=http"#]
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            split_from_the_right(br#"a="1,2",b"#, b','),
            [&b"b"[..], br#"a="1,2""#]
        );
        assert_eq!(
            split_from_the_right(br#"a="x\",y",b"#, b','),
            [&b"b"[..], br#"a="x\",y""#]
        );
        assert_eq!(
            split_from_the_right(br#"a="x\\",b"#, b','),
            [&b"b"[..], br#"a="x\\""#]
        );
        assert_eq!(unquote(br#""a\"b""#).as_deref(), Some(r#"a"b"#));
        assert_eq!(unquote(br#""open"#), None);
    }

    #[test]
    fn a_quote_the_client_leaves_open_does_not_swallow_the_proxys_entry() {
        // The client sent `Forwarded: for=203.0.113.9;x="`; the proxy
        // appended its entry to that line, or added a line of its own.
        for lines in [
            &[r#"for=203.0.113.9;x=", for=198.51.100.7"#][..],
            &[r#"for=203.0.113.9;x="#, "for=198.51.100.7"],
            &[r#"for="203.0.113.9, for=198.51.100.7"#],
            &[r#"for=203.0.113.9;x="\", for=198.51.100.7"#],
        ] {
            assert_eq!(
                fwd("10.0.0.2", "10.0.0.0/8", lines),
                ip("198.51.100.7"),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_ascii_spoil_only_their_own_hop() {
        let mut headers = HeaderMap::new();
        headers.append(
            "forwarded",
            HeaderValue::from_bytes(b"for=\"6.6.6.6\xff, for=198.51.100.7").unwrap(),
        );
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"6.6.6.\xff, 198.51.100.7").unwrap(),
        );
        for header in [ProxyHeader::Forwarded, ProxyHeader::XForwardedFor] {
            let got = client_address(ip("10.0.0.2"), &headers, &proxies("10.0.0.0/8"), header);
            assert_eq!(got, ip("198.51.100.7"), "{header:?}");
        }
    }

    #[test]
    fn a_header_that_is_not_text_is_a_bad_hop() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.\xff").unwrap(),
        );
        let got = client_address(
            ip("10.0.0.2"),
            &headers,
            &proxies("10.0.0.0/8"),
            ProxyHeader::XForwardedFor,
        );
        assert_eq!(got, ip("10.0.0.2"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let mut headers = HeaderMap::new();
        headers.append("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let trusted = proxies("10.0.0.0/8");
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                &headers,
                &trusted,
                ProxyHeader::XForwardedFor
            ),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn trusted_proxies_parse_from_cidrs_addresses_lists_and_strings() {
        let list = proxies("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32");
        assert!(list.contains(ip("10.200.0.1")));
        assert!(list.contains(ip("192.0.2.7")));
        assert!(!list.contains(ip("192.0.2.8")));
        assert!(list.contains(ip("2001:db8:1::1")));
        assert!(!list.contains(ip("2001:db9::1")));
        assert_eq!(proxies(""), TrustedProxies::default());

        let from_toml: TrustedProxies =
            serde_json::from_value(serde_json::json!(["10.0.0.0/8", "192.0.2.7"])).unwrap();
        assert_eq!(from_toml, proxies("10.0.0.0/8,192.0.2.7"));
        let from_env: TrustedProxies =
            serde_json::from_value(serde_json::json!("10.0.0.0/8,192.0.2.7")).unwrap();
        assert_eq!(from_env, from_toml);

        for bad in ["10.0.0.0/33", "localhost", "10.0.0.0/8/8", "1.2.3"] {
            let err = bad.parse::<TrustedProxies>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// Any byte a header value may hold, the quoting ones often.
        fn header_byte() -> impl Strategy<Value = u8> {
            prop_oneof![
                3 => prop::sample::select(&b"\"\\,;= \t"[..]),
                3 => 0x21u8..=0x7e,
                1 => 0x80u8..=0xff,
            ]
        }

        /// The client's address as a proxy writes it in `for=`.
        fn proxy_node() -> impl Strategy<Value = (IpAddr, String)> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(|b| {
                    let ip = IpAddr::from([198, 51, b[2], b[3]]);
                    (ip, ip.to_string())
                }),
                (any::<[u8; 4]>(), any::<u16>()).prop_map(|(b, port)| {
                    let ip = IpAddr::from([203, 0, b[2], b[3]]);
                    (ip, format!("\"{ip}:{port}\""))
                }),
                (any::<u64>(), any::<u16>()).prop_map(|(low, port)| {
                    let ip = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(low)));
                    (ip, format!("\"[{ip}]:{port}\""))
                }),
            ]
        }

        proptest! {
            /// Whatever the client prefixes, the entry the trusted proxy
            /// appended (to the client's line or as a line of its own,
            /// maybe followed by an inner trusted proxy's) is the client.
            #[test]
            fn the_proxys_appended_entry_is_read_whatever_the_client_wrote(
                prefix in prop::collection::vec(header_byte(), 0..48),
                (real, node) in proxy_node(),
                own_line in any::<bool>(),
                inner_proxy in any::<bool>(),
            ) {
                let entry = format!("for={node};proto=https");
                let mut lines: Vec<Vec<u8>> = if own_line {
                    vec![prefix, entry.into_bytes()]
                } else {
                    let mut line = prefix;
                    line.extend_from_slice(format!(", {entry}").as_bytes());
                    vec![line]
                };
                if inner_proxy {
                    lines.last_mut().unwrap().extend_from_slice(b", for=10.0.0.5");
                }
                let mut headers = HeaderMap::new();
                for line in &lines {
                    headers.append("forwarded", HeaderValue::from_bytes(line).unwrap());
                }
                let got = client_address(
                    "10.0.0.2".parse().unwrap(),
                    &headers,
                    &"10.0.0.0/8".parse().unwrap(),
                    ProxyHeader::Forwarded,
                );
                prop_assert_eq!(got, real);
            }

            /// The same for `X-Forwarded-For`.
            #[test]
            fn the_proxys_appended_address_is_read_whatever_the_client_wrote(
                prefix in prop::collection::vec(header_byte(), 0..48),
                (real, _) in proxy_node(),
            ) {
                let mut line = prefix;
                line.extend_from_slice(format!(", {real}").as_bytes());
                let mut headers = HeaderMap::new();
                headers.append("x-forwarded-for", HeaderValue::from_bytes(&line).unwrap());
                let got = client_address(
                    "10.0.0.2".parse().unwrap(),
                    &headers,
                    &"10.0.0.0/8".parse().unwrap(),
                    ProxyHeader::XForwardedFor,
                );
                prop_assert_eq!(got, real);
            }
        }
    }
}
