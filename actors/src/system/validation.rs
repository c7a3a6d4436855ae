//! What [`ActorSystem::start`](super::ActorSystem::start) refuses before it
//! starts anything: every section's own rules (each type's [`Validate`],
//! beside its definition) and the rules across sections, every field error
//! named by its key in the service's settings (`config/default.toml`), so a
//! library user and `troupe config check` read the same words.

use super::SystemConfig;
use crate::validate::{ConfigErrors, Validate};

impl Validate for SystemConfig {
    fn check(&self, errors: &mut ConfigErrors) {
        errors.nest("auth", &self.auth);
        errors.nest("queue", &self.queue);
        errors.nest("events", &self.events);
        errors.nest("fleet", &self.fleet);
        errors.nest("limits", &self.limits);
        errors.nest("cache", &self.cache);
        errors.nest("mail", &self.mail);
        errors.nest("actors.restart", &self.restart);
        let call = self.call_timeout;
        errors.ensure(!call.is_zero(), "actors.call_timeout", "must be positive");
        // Across sections: each of these waits on an actor's reply.
        // A key must outlive the requests that use it (a repeat may take a
        // sign-up over once it is older than the call timeout).
        errors.ensure(
            self.auth.idempotency.ttl > call,
            "auth.idempotency.ttl",
            "must be longer than actors.call_timeout",
        );
        // A held job must stay held while its producer may still be writing
        // its precondition: at least as long as the producer's caller waits.
        errors.ensure(
            self.queue.hold >= call,
            "queue.hold",
            "must be at least actors.call_timeout",
        );
        // A load may store what it read only within half the fence's life,
        // and a load takes up to the call timeout (the source is called
        // through an actor): a shorter fence would make every slow load
        // store nothing.
        errors.ensure(
            self.cache.fence_ttl > call * 2,
            "cache.fence_ttl",
            "must be more than twice actors.call_timeout",
        );
        // A write's call to the cache waits for its invalidation's
        // acknowledgements at most one lease (and a margin) after the fence:
        // that must end before the caller gives up on the call.
        errors.ensure(
            self.cache.ack_bound() < call,
            "cache.lease",
            "one lease and its margin (an eighth) must be shorter than actors.call_timeout",
        );
    }
}
