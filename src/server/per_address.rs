//! The per-address connection cap (`server.max_connections_per_address`).
//!
//! Counted by TCP peer: an IPv4 address, or the /64 of an IPv6 address (one
//! host usually owns a whole /64, as the rate limits count it). Trusted
//! proxies are exempt: behind a proxy every client's connections come from
//! the proxy's address. The count is a map with an entry per address that
//! has a connection open, removed when its last one closes, so it never
//! holds more than `max_connections` entries.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::proxies::TrustedProxies;

/// Open connections per address, and the cap.
#[derive(Debug)]
pub struct AddressCounts {
    cap: usize,
    exempt: TrustedProxies,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's place in its address's count, given back when
/// dropped (with the connection's task).
#[derive(Debug)]
pub struct AddressSlot {
    counts: Arc<AddressCounts>,
    /// `None` for an exempt peer (never counted).
    key: Option<IpAddr>,
}

impl AddressCounts {
    pub fn new(cap: usize, exempt: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            cap,
            exempt,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `peer`, or `None` if its address has
    /// `cap` connections open already (the caller closes it).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<AddressSlot> {
        let peer = peer.to_canonical();
        let key = (!self.exempt.contains(peer)).then(|| counted_as(peer));
        if let Some(key) = key {
            let mut open = self.open.lock().expect("address counts lock");
            let count = open.entry(key).or_insert(0);
            if *count >= self.cap {
                // The entry exists with a positive count: nothing to undo.
                return None;
            }
            *count += 1;
        }
        Some(AddressSlot {
            counts: Arc::clone(self),
            key,
        })
    }

    /// Addresses with a connection open (the map's size).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open.lock().expect("address counts lock").len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.counts.open.lock().expect("address counts lock");
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

/// What a peer counts as: IPv4 itself, IPv6 its /64.
fn counted_as(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_gets_cap_slots_and_another_is_unaffected() {
        let counts = AddressCounts::new(2, TrustedProxies::default());
        let held: Vec<_> = (0..2)
            .map(|_| counts.admit(ip("192.0.2.1")).expect("under the cap"))
            .collect();
        assert!(counts.admit(ip("192.0.2.1")).is_none());
        assert!(counts.admit(ip("192.0.2.2")).is_some());
        drop(held);
        assert!(counts.admit(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn an_address_leaves_the_map_with_its_last_connection() {
        let counts = AddressCounts::new(3, TrustedProxies::default());
        let first = counts.admit(ip("192.0.2.1")).unwrap();
        let second = counts.admit(ip("192.0.2.1")).unwrap();
        let other = counts.admit(ip("192.0.2.9")).unwrap();
        assert_eq!(counts.addresses(), 2);
        drop((first, other));
        assert_eq!(counts.addresses(), 1);
        drop(second);
        assert_eq!(counts.addresses(), 0);
        // A refusal leaves nothing behind either.
        let cap_one = AddressCounts::new(1, TrustedProxies::default());
        let held = cap_one.admit(ip("192.0.2.1")).unwrap();
        assert!(cap_one.admit(ip("192.0.2.1")).is_none());
        drop(held);
        assert_eq!(cap_one.addresses(), 0);
    }

    #[test]
    fn trusted_proxies_are_never_counted() {
        let counts = AddressCounts::new(1, "10.0.0.0/8".parse().unwrap());
        let held: Vec<_> = (0..5)
            .map(|_| counts.admit(ip("10.0.0.2")).expect("exempt"))
            .collect();
        assert_eq!(counts.addresses(), 0);
        drop(held);
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let counts = AddressCounts::new(1, TrustedProxies::default());
        let _held = counts.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(counts.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(counts.admit(ip("2001:db8:1:3::1")).is_some());
        let _v4 = counts.admit(ip("192.0.2.1")).unwrap();
        assert!(counts.admit(ip("::ffff:192.0.2.1")).is_none());
    }
}
