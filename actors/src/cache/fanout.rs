//! The fleet's invalidations: what a write publishes, what an instance
//! acknowledges, and the lease registry that says who must (see
//! `docs/cache.md`).
//!
//! Under the key prefix, on one Redis node:
//! - `cache:invalidations`, a channel every instance subscribes to; a
//!   message is `<writer> <seq> <id>`;
//! - `cache:acks:<token>`, one channel per subscription (its random token):
//!   where the writer `<token>` hears `<seq> <acker>`;
//! - `cache:leases`, a sorted set: each subscriber that serves a tier, by
//!   the Redis time its last renewal's lease ends. Members not renewed for
//!   two leases are pruned by the renewals; the key expires when the whole
//!   fleet is gone.
//!
//! **Who must acknowledge.** Every token whose lease, as Redis registered it,
//! ended less than one lease before the invalidation (the slack covers a
//! step of Redis's wall clock): the fence, the publish and that read run in
//! one script, so a renewal is either before them (its instance is named and
//! its lease ends before the writer stops waiting) or after them on the same
//! connection as the message (the message is applied before that renewal
//! grants anything). A subscriber that holds no lease need not acknowledge:
//! it serves nothing from its tier, and drops what the message names.
//! `PUBLISH`'s own count is not used: it names connections, not leases, and
//! misses an instance whose connection Redis already closed but whose lease
//! has not yet run out.

use std::sync::{Arc, Mutex};

use mongodb::bson::oid::ObjectId;

use super::acks::Acks;
use crate::store::RedisStore;

/// Fence `KEYS[1]` (`ARGV[1]` for `ARGV[2]` ms), publish `ARGV[4]` on
/// `ARGV[3]`, answer the tokens of `KEYS[2]` whose lease ended less than
/// `ARGV[5]` ms ago (or has not yet).
const INVALIDATE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[2], now - tonumber(ARGV[5]), '+inf')
";

/// Register `ARGV[1]`'s lease of `ARGV[2]` ms (if `ARGV[3]` = 1: it serves
/// a tier) and prune the tokens silent for two leases.
pub(super) const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[1], now + lease, ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - lease)
redis.call('PEXPIRE', KEYS[1], 10 * lease)
return 1
";

/// The names under the key prefix.
#[derive(Debug, Clone)]
pub(super) struct Channels {
    pub(super) invalidations: String,
    pub(super) leases: String,
    acks: String,
}

impl Channels {
    pub(super) fn new(redis: &RedisStore) -> Self {
        Self {
            invalidations: redis.key("cache:invalidations"),
            leases: redis.key("cache:leases"),
            acks: redis.key("cache:acks:"),
        }
    }

    /// Where the subscriber `token` hears acknowledgements.
    pub(super) fn acks(&self, token: &str) -> String {
        format!("{}{token}", self.acks)
    }

    /// Which subscriber an acknowledgement channel belongs to.
    fn acks_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.acks)
    }
}

/// A message on one of this instance's channels.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Message {
    /// Drop `id` (`None`: an id this service would not send: drop all),
    /// then acknowledge `seq` to `writer`.
    Invalidate {
        writer: String,
        seq: u64,
        id: Option<ObjectId>,
    },
    /// `from` acknowledged this instance's round `seq`.
    Ack { seq: u64, from: String },
    /// Not for the cache, or unreadable.
    Other,
}

impl Message {
    /// Read `payload`, received on `channel`.
    pub(super) fn parse(channels: &Channels, channel: &str, payload: &str) -> Self {
        let mut words = payload.split(' ');
        let (first, second) = (words.next(), words.next());
        if channel == channels.invalidations {
            let third = words.next();
            let (Some(writer), Some(Ok(seq))) = (first, second.map(str::parse)) else {
                return Self::Other;
            };
            let id = third.and_then(|id| ObjectId::parse_str(id).ok());
            let writer = writer.to_owned();
            return Self::Invalidate { writer, seq, id };
        }
        match (channels.acks_of(channel), first.map(str::parse), second) {
            (Some(_), Some(Ok(seq)), Some(from)) => Self::Ack {
                seq,
                from: from.to_owned(),
            },
            _ => Self::Other,
        }
    }
}

/// What writers and the subscription task share: the rounds waiting for
/// acknowledgements, and the token of the subscription that hears them.
#[derive(Default)]
pub(crate) struct Fanout {
    pub(super) acks: Acks,
    token: Mutex<Option<Arc<str>>>,
}

impl Fanout {
    /// The subscription's token now (`None`: not subscribed, so no
    /// acknowledgement can reach this instance).
    pub(super) fn token(&self) -> Option<Arc<str>> {
        self.token.lock().map_or(None, |token| token.clone())
    }

    pub(super) fn set_token(&self, token: Option<Arc<str>>) {
        if let Ok(mut slot) = self.token.lock() {
            *slot = token;
        }
    }

    /// The script that fences `key` with `fence` for `fence_ms`, publishes
    /// round `seq` of `id` and names who must acknowledge it.
    pub(super) fn invalidation(
        &self,
        channels: &Channels,
        (key, fence, fence_ms): (&str, &str, u64),
        (seq, id): (u64, &ObjectId),
        lease_ms: u64,
    ) -> redis::Cmd {
        let writer = self.token().unwrap_or_else(|| "-".into());
        redis::cmd("EVAL")
            .arg(INVALIDATE)
            .arg(2)
            .arg(key)
            .arg(&channels.leases)
            .arg(fence)
            .arg(fence_ms)
            .arg(&channels.invalidations)
            .arg(format!("{writer} {seq} {id}"))
            .arg(lease_ms)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> Channels {
        let redis = RedisStore::new("redis://127.0.0.1:1", "p:", Default::default()).unwrap();
        Channels::new(&redis)
    }

    #[test]
    fn an_invalidation_names_its_writer_round_and_id() {
        let (c, id) = (channels(), ObjectId::new());
        assert_eq!(
            Message::parse(&c, "p:cache:invalidations", &format!("w1 7 {id}")),
            Message::Invalidate {
                writer: "w1".into(),
                seq: 7,
                id: Some(id)
            }
        );
        // An id this service would not send: still acknowledged (drop all).
        assert_eq!(
            Message::parse(&c, "p:cache:invalidations", "w1 8 nope"),
            Message::Invalidate {
                writer: "w1".into(),
                seq: 8,
                id: None
            }
        );
        assert_eq!(
            Message::parse(&c, "p:cache:invalidations", "w1 x"),
            Message::Other
        );
    }

    #[test]
    fn an_ack_is_read_only_on_an_ack_channel() {
        let c = channels();
        assert_eq!(c.acks("t9"), "p:cache:acks:t9");
        assert_eq!(
            Message::parse(&c, &c.acks("t9"), "12 t3"),
            Message::Ack {
                seq: 12,
                from: "t3".into()
            }
        );
        assert_eq!(Message::parse(&c, "p:other", "12 t3"), Message::Other);
        assert_eq!(Message::parse(&c, &c.acks("t9"), "12"), Message::Other);
    }
}
